"""Net2WiderNet widening: the wider model computes what the narrow one computes, yet its
copies of a channel learn apart, and only a change of width is accepted."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from imfuse.errors import ConfigError
from imfuse.networks import build_model
from imfuse.networks.config import VariantConfig
from imfuse.networks.widen import widen_model

NARROW = VariantConfig(name="narrow", predictor="small", predictor_width=8, alpha=0.25, residual_blocks=2,
                       contract_norm=False, style_size=64)
WIDE = VariantConfig(name="wide", predictor="small", predictor_width=8, alpha=0.5, residual_blocks=2,
                     contract_norm=False, style_size=64)


def _randomised(cfg: VariantConfig, seed: int = 0):
    """A model whose every weight is random (a fresh one has zero style heads: too easy a case)."""
    model = build_model(cfg)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.1, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def _inputs(seed: int = 1):
    rng = np.random.default_rng(seed)
    return (tf.constant(rng.uniform(size=(2, 40, 52, 3)), tf.float32),
            tf.constant(rng.uniform(size=(2, 64, 64, 3)), tf.float32))


@pytest.mark.parametrize("contract_norm", [False, True])
def test_wider_model_computes_the_same_pictures(contract_norm):
    import dataclasses

    narrow = _randomised(dataclasses.replace(NARROW, contract_norm=contract_norm))
    wide = widen_model(narrow, dataclasses.replace(WIDE, contract_norm=contract_norm))
    assert wide.transformer.get_layer("residual_0_a").get_weights()[0].shape == (3, 3, 64, 64)
    assert wide.count_params() > 2 * narrow.count_params()
    content, style = _inputs()
    expected, got = narrow([content, style]).numpy(), wide([content, style]).numpy()
    assert expected.std() > 0.02  # a picture, not a constant
    np.testing.assert_allclose(got, expected, atol=1e-4)  # float rounding


def test_copies_of_a_channel_get_different_gradients():
    wide = widen_model(_randomised(NARROW), WIDE)
    content, style = _inputs()
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(wide([content, style]) - 0.5))
    kernel = wide.transformer.get_layer("residual_0_a").kernel
    grad = tape.gradient(loss, kernel).numpy()
    narrow_width = NARROW.channels(128)
    # output channels 0 and 32 both copy narrow channel 0: same value, not the same update
    a, b = grad[..., 0], grad[..., narrow_width]
    assert np.abs(a).max() > 0 and np.abs(a - b).max() > 0.05 * np.abs(a).max()


@pytest.mark.parametrize("change", [{"residual_blocks": 3}, {"predictor_width": 16}, {"alpha": 0.125}])
def test_only_a_wider_same_network_is_accepted(change):
    import dataclasses

    with pytest.raises(ConfigError, match="cannot widen|narrower"):
        widen_model(_randomised(NARROW), dataclasses.replace(WIDE, **change))


def test_separable_convs_cannot_be_widened():
    import dataclasses

    narrow = dataclasses.replace(NARROW, separable=True)
    with pytest.raises(ConfigError, match="dense convs"):
        widen_model(build_model(narrow), dataclasses.replace(WIDE, separable=True))


def test_models_widen_writes_the_wider_model_and_its_record(tmp_path, capsys):
    import json

    from imfuse.base_model import base_model_path
    from imfuse.cli import main
    from imfuse.networks import load_model

    out = tmp_path / "full.keras"
    assert main(["models", "widen", "--model", "base:reduced", "--variant", "full", "--out", str(out)]) == 0
    assert "widened exactly to full (alpha 1.0)" in capsys.readouterr().out
    record = json.loads((tmp_path / "full.widen.json").read_text())["widened"]
    assert (record["from"], record["from_alpha"], record["to_alpha"]) == ("base:reduced", 0.25, 1.0)
    wide, narrow = load_model(out), load_model(base_model_path("reduced"))
    content, style = _inputs()
    style = tf.image.resize(style, (256, 256))
    np.testing.assert_allclose(wide([content, style]).numpy(), narrow([content, style]).numpy(), atol=1e-4)
    # a narrower or different target is one clear error, not a traceback
    assert main(["models", "widen", "--model", "base:reduced", "--variant", "tiny", "--out", str(out)]) != 0
    assert "cannot widen variant 'reduced' to 'tiny'" in capsys.readouterr().err
