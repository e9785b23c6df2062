"""Style predictor weights: ImageNet offline error, weights from a PATH, bad combinations."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from imfuse.errors import ConfigError, ModelError, WeightsUnavailableError
from imfuse.networks import build_model
from imfuse.networks import predictor as predictor_module


def _block_network(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise OSError("network disabled by test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_imagenet_weights_offline_raise_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty Keras cache
    _block_network(monkeypatch)
    with pytest.raises(WeightsUnavailableError) as info:
        build_model("full", predictor_weights="imagenet")
    message = str(info.value)
    assert str(tmp_path / "models" / predictor_module.INCEPTION_WEIGHTS_FILE) in message
    assert "--predictor-weights none" in message


def test_weights_from_path_reproduce_the_trunk(tmp_path):
    trunk = predictor_module._inception_trunk("none")
    path = tmp_path / "trunk.weights.h5"
    trunk.save_weights(path)
    loaded = predictor_module._inception_trunk(str(path))
    style = np.random.default_rng(0).random((1, 80, 80, 3), dtype=np.float32) * 2 - 1
    np.testing.assert_array_equal(loaded(style).numpy(), trunk(style).numpy())


def test_missing_weights_path_and_bad_combination(tmp_path):
    missing = tmp_path / "absent.h5"
    with pytest.raises(WeightsUnavailableError, match="absent.h5"):
        build_model("full", predictor_weights=str(missing))
    with pytest.raises(ConfigError, match="InceptionV3 predictor only"):
        build_model("reduced", predictor_weights="imagenet")


def test_mismatched_weights_file_is_refused(tmp_path):
    other = build_model("reduced").predictor
    path = tmp_path / "small.weights.h5"
    other.save_weights(path)
    with pytest.raises(ModelError, match="small.weights.h5"):
        predictor_module._inception_trunk(str(path))


def test_imagenet_weights_come_from_the_keras_cache(monkeypatch, tmp_path):
    """A file in the Keras cache is used without touching the network (legacy .h5 layout)."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    base = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(None, None, 3))
    cache = tmp_path / "models"
    cache.mkdir()
    with h5py.File(cache / predictor_module.INCEPTION_WEIGHTS_FILE, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, base)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    _block_network(monkeypatch)
    model = build_model("full", predictor_weights="imagenet")
    assert model.predictor_init == "imagenet"
    style = np.random.default_rng(1).random((1, 80, 80, 3), dtype=np.float32) * 2 - 1
    want = keras.Model(base.input, base.get_layer("mixed7").output)(style).numpy()
    got = model.predictor.get_layer("inception_v3_mixed7")(style).numpy()
    assert np.abs(want).max() > 0
    np.testing.assert_array_equal(got, want)
