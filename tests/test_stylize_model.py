"""Feed-forward stylisation: any size, strength, style mixing, masks, colour, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from imfuse.color import rgb_to_yiq
from imfuse.errors import ConfigError, ImageError
from imfuse.images import load_image, resize_to
from imfuse.networks import build_model
from imfuse.stylize import mix_style_embeddings, stylize_with_model


@pytest.fixture(scope="module")
def model():
    return build_model("reduced", predictor_weights="none")


@pytest.fixture(scope="module")
def pictures(shared_data):
    content = resize_to(load_image(shared_data / "content" / "stata.jpg").rgb, (45, 59))
    styles = [
        load_image(shared_data / "styles" / name).rgb
        for name in ("piano-keyboard-sketch_sq.jpg", "red_texture_sq.jpg")
    ]
    return content, [resize_to(s, (64, 64)) for s in styles]


def test_any_size_output(model, pictures):
    content, (style, _) = pictures
    out = stylize_with_model(model, content, [(style, 1.0)])
    assert out.shape == content.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(out - content).mean() > 1e-3  # the network really ran


def test_strength_zero_uses_content_embedding(model, pictures):
    content, (style, _) = pictures
    at_zero = stylize_with_model(model, content, [(style, 1.0)], strength=0.0)
    own = model.stylize_with_embedding(content[None], model.embed_style(content[None])).numpy()[0]
    np.testing.assert_allclose(at_zero, own, atol=1e-6)
    at_one = stylize_with_model(model, content, [(style, 1.0)], strength=1.0)
    assert np.abs(at_one - at_zero).max() > 1e-4


def test_style_mixing_is_weighted_embedding_average(model, pictures):
    content, (a, b) = pictures
    only_a = stylize_with_model(model, content, [(a, 2.0), (b, 0.0)])
    np.testing.assert_allclose(only_a, stylize_with_model(model, content, [(a, 1.0)]), atol=1e-6)
    mixed = mix_style_embeddings(model, [(a, 0.25), (b, 0.75)])
    expected = 0.25 * model.embed_style(a[None]).numpy() + 0.75 * model.embed_style(b[None]).numpy()
    np.testing.assert_allclose(mixed, expected, atol=1e-5)
    both = stylize_with_model(model, content, [(a, 0.25), (b, 0.75)])
    np.testing.assert_allclose(both, model.stylize_with_embedding(content[None], expected).numpy()[0], atol=1e-5)


@pytest.mark.parametrize("as_uint8", [False, True])
def test_compiled_calls_give_the_eager_pictures(model, pictures, as_uint8):
    """`compiled` (the studio's) runs the same computation traced: a mix at strength 0.6,
    through the float path and the uint8 one."""
    content, (a, b) = pictures
    args = (model, content, [(a, 0.3), (b, 0.7)], 0.6)
    eager = stylize_with_model(*args, as_uint8=as_uint8)
    compiled = stylize_with_model(*args, as_uint8=as_uint8, compiled=True)
    assert compiled.dtype == eager.dtype
    np.testing.assert_allclose(compiled.astype(np.float32), eager.astype(np.float32), atol=1 if as_uint8 else 2e-5)


def test_mask_leaves_unmasked_pixels_exactly_unchanged(model, pictures):
    content, (style, _) = pictures
    mask = np.zeros(content.shape[:2], np.float32)
    mask[10:30, 20:50] = 1.0
    mask[30:35, 20:50] = 0.5
    full = stylize_with_model(model, content, [(style, 1.0)])
    out = stylize_with_model(model, content, [(style, 1.0)], mask=mask)
    outside = mask == 0
    np.testing.assert_array_equal(out[outside], content[outside])
    np.testing.assert_allclose(out[mask == 1], full[mask == 1], atol=1e-6)
    np.testing.assert_allclose(out[mask == 0.5], 0.5 * (full + content)[mask == 0.5], atol=1e-6)


def test_preserve_color_keeps_content_chroma(model, pictures):
    content, (style, _) = pictures
    out = stylize_with_model(model, content, [(style, 1.0)], preserve_color=True)
    plain = stylize_with_model(model, content, [(style, 1.0)])
    chroma_err = np.abs(rgb_to_yiq(out)[..., 1:] - rgb_to_yiq(content)[..., 1:]).mean()
    plain_err = np.abs(rgb_to_yiq(plain)[..., 1:] - rgb_to_yiq(content)[..., 1:]).mean()
    assert chroma_err < 0.5 * plain_err


def test_bad_inputs(model, pictures):
    content, (style, _) = pictures
    with pytest.raises(ConfigError, match="strength"):
        stylize_with_model(model, content, [(style, 1.0)], strength=1.5)
    with pytest.raises(ConfigError, match="at least one style"):
        stylize_with_model(model, content, [])
    with pytest.raises(ConfigError, match="non-negative"):
        stylize_with_model(model, content, [(style, -1.0)])
    with pytest.raises(ImageError, match="mask shape"):
        stylize_with_model(model, content, [(style, 1.0)], mask=np.ones((5, 5), np.float32))
    with pytest.raises(ImageError, match="content image"):
        stylize_with_model(model, content[..., :2], [(style, 1.0)])
