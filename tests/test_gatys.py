"""Gatys optimisation on a real content/style pair at tiny size."""

import numpy as np
import pytest

from imfuse.errors import ConfigError
from imfuse.images import load_image, resize_to
from imfuse.lossnet import build_loss_network
from imfuse.gatys import OptimizeConfig, level_sizes, optimize_image, run_optimization, working_size


@pytest.fixture(scope="module")
def lossnet():
    return build_loss_network("vgg16-hed")


@pytest.fixture(scope="module")
def pair(shared_data):
    content = resize_to(load_image(shared_data / "content" / "tubingen.jpg").rgb, (48, 64))
    style = resize_to(load_image(shared_data / "styles" / "starry_night.jpg").rgb, (48, 64))
    return content, style


@pytest.mark.parametrize("optimizer,steps", [("adam", 40), ("lbfgs", 15)])
def test_optimisation_lowers_total_and_style_loss(lossnet, pair, optimizer, steps):
    content, style = pair
    config = OptimizeConfig(steps=steps, size=64, optimizer=optimizer, learning_rate=0.03)
    result = run_optimization(content, [(style, 1.0)], config, lossnet, progress=False)
    first, last = result.history[0], result.history[-1]
    assert len(result.history) >= steps // 2
    assert last["loss"] < 0.6 * first["loss"], (first, last)
    assert last["style_loss"] < 0.5 * first["style_loss"], (first, last)
    assert result.image.shape == (48, 64, 3) and result.image.dtype == np.float32
    assert 0.0 <= result.image.min() and result.image.max() <= 1.0
    assert np.abs(result.image - content).mean() > 0.01  # the pixels really changed


def test_mask_leaves_unmasked_pixels_unchanged(lossnet, pair):
    content, style = pair
    mask = np.zeros(content.shape[:2], np.float32)
    mask[:, 32:] = 1.0
    out = optimize_image(content, [(style, 1.0)], OptimizeConfig(steps=10, size=64, jit_compile=False), lossnet, mask, progress=False)
    np.testing.assert_array_equal(out[:, :32], content[:, :32])
    assert np.abs(out[:, 33:] - content[:, 33:]).mean() > 0.005


def test_preserve_color_keeps_content_chroma(lossnet, pair):
    from imfuse.color import rgb_to_yiq

    content, style = pair
    out = optimize_image(
        content, [(style, 1.0)], OptimizeConfig(steps=10, size=64, preserve_color=True, jit_compile=False), lossnet, progress=False
    )
    chroma_err = np.abs(rgb_to_yiq(out)[..., 1:] - rgb_to_yiq(content)[..., 1:]).mean()
    plain = optimize_image(content, [(style, 1.0)], OptimizeConfig(steps=10, size=64, jit_compile=False), lossnet, progress=False)
    plain_err = np.abs(rgb_to_yiq(plain)[..., 1:] - rgb_to_yiq(content)[..., 1:]).mean()
    assert chroma_err < 0.5 * plain_err


def test_two_styles_mix_between_single_styles(lossnet, pair, shared_data):
    content, style = pair
    other = resize_to(load_image(shared_data / "styles" / "bricks_sq.jpg").rgb, (48, 48))
    config = OptimizeConfig(steps=1, size=64, jit_compile=False)
    a = run_optimization(content, [(style, 1.0)], config, lossnet, progress=False).history[0]["style_loss"]
    b = run_optimization(content, [(other, 1.0)], config, lossnet, progress=False).history[0]["style_loss"]
    mixed = run_optimization(content, [(style, 0.5), (other, 0.5)], config, lossnet, progress=False)
    assert mixed.history[0]["style_loss"] < max(a, b)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"optimizer": "sgd"}, "optimizer"), ({"steps": 0}, "steps"), ({"size": 4}, "size"), ({"init": "x"}, "init"),
     ({"levels": 0}, "levels"), ({"size": 64, "levels": 4}, "levels"), ({"levels": 2, "coarse_steps": 0}, "coarse")],
)
def test_bad_config_is_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        OptimizeConfig(**kwargs).validate()


def test_working_size_keeps_aspect():
    assert working_size((300, 600), 512) == (256, 512)
    assert working_size((1000, 500), 100) == (100, 50)


def test_level_sizes_halve_down_from_the_working_size():
    assert level_sizes(512, 1) == [512]
    assert level_sizes(512, 3) == [128, 256, 512]


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_coarse_to_fine_runs_each_level_and_ends_at_full_size(lossnet, pair, optimizer):
    content, style = pair
    config = OptimizeConfig(steps=6, size=64, optimizer=optimizer, levels=2, coarse_steps=8, learning_rate=0.03)
    result = run_optimization(content, [(style, 1.0)], config, lossnet, progress=False)
    coarse, fine = result.history[: result.final_level_start], result.history[result.final_level_start:]
    assert 0 < len(coarse) <= 8 and 0 < len(fine) <= 6
    assert result.image.shape == (48, 64, 3)
    # The full-size level starts from the upsampled coarse result, not from the photo: its
    # first loss is already below what the photo itself scores at full size.
    photo = run_optimization(content, [(style, 1.0)], OptimizeConfig(steps=1, size=64, optimizer="adam"), lossnet,
                             progress=False)  # adam records the loss of its start: the photo
    assert fine[0]["style_loss"] < 0.7 * photo.history[0]["style_loss"]


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_stop_loss_ends_the_run_once_reached(lossnet, pair, optimizer):
    content, style = pair
    full = run_optimization(content, [(style, 1.0)], OptimizeConfig(steps=30, size=64, optimizer=optimizer,
                            learning_rate=0.03), lossnet, progress=False)
    target = full.history[10]["loss"]
    stopped = run_optimization(content, [(style, 1.0)], OptimizeConfig(steps=30, size=64, optimizer=optimizer,
                               learning_rate=0.03, stop_loss=target), lossnet, progress=False)
    assert stopped.history[-1]["loss"] <= target
    assert all(row["loss"] > target for row in stopped.history[:-1])
    assert len(stopped.history) < len(full.history)
