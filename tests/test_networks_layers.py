"""Custom layers: the fast forms compute exactly what the plain layer stacks they replace do."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from imfuse.networks.layers import (
    ConditionalInstanceNorm,
    EdgePadUpsample2D,
    InstanceNorm,
    ReflectPad,
    SpaceToDepthConv2D,
    UpsampleConv2D,
    mirror_pad,
)
from conftest import runs_bf16


def _random(shape, seed):
    return tf.constant(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


@pytest.mark.parametrize("mode", ["REFLECT", "SYMMETRIC"])
@pytest.mark.parametrize("pad", [1, 2, 4])
def test_mirror_pad_equals_tf_pad(mode, pad):
    x = _random((2, 6, 9, 3), 7)
    expected = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode=mode)
    got = mirror_pad(x, pad, symmetric=mode == "SYMMETRIC")
    np.testing.assert_array_equal(got.numpy(), expected.numpy())
    fn = tf.function(lambda a: mirror_pad(a, pad, symmetric=mode == "SYMMETRIC"),
                     input_signature=[tf.TensorSpec([None, None, None, 3])])
    np.testing.assert_array_equal(fn(x).numpy(), expected.numpy())
    too_small = x[:, : pad - (mode == "SYMMETRIC"), :, :]  # REFLECT needs pad + 1 pixels, SYMMETRIC pad
    with pytest.raises(tf.errors.InvalidArgumentError, match="mirror padding"):
        fn(too_small)


@pytest.mark.parametrize("shape", [(1, 5, 7, 6), (2, 8, 3, 4), (1, 1, 1, 2)])
def test_upsample_conv_equals_upsampling_reflect_pad_conv(shape):
    x = _random(shape, 0)
    fast = UpsampleConv2D(5)
    y = fast(x)
    plain = keras.layers.Conv2D(5, 3, padding="valid", use_bias=False)
    plain.build((None, None, None, shape[-1]))
    plain.set_weights(fast.get_weights())
    up = keras.layers.UpSampling2D(2, interpolation="nearest")(x)
    expected = plain(ReflectPad(1)(up))
    assert y.shape == (shape[0], 2 * shape[1], 2 * shape[2], 5)
    assert fast.compute_output_shape((None, 4, None, shape[-1])) == (None, 8, None, 5)
    np.testing.assert_allclose(y.numpy(), expected.numpy(), atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 5, 7, 6), (2, 8, 3, 4), (1, 1, 1, 2)])
def test_edge_pad_upsample_then_cropped_valid_conv_equals_upsampling_reflect_pad_conv(shape):
    """The reduced transformer's separable expand convs pad the small image instead of the
    upsampled one: the same numbers, bit for bit, whatever the size (1x1 included)."""
    x = _random(shape, 1)
    conv = keras.layers.SeparableConv2D(5, 3, padding="valid", use_bias=False)
    up = EdgePadUpsample2D()(x)
    got = keras.layers.Cropping2D(1)(conv(up))
    expected = conv(ReflectPad(1)(keras.layers.UpSampling2D(2, interpolation="nearest")(x)))
    assert up.shape == (shape[0], 2 * shape[1] + 4, 2 * shape[2] + 4, shape[-1])
    assert EdgePadUpsample2D().compute_output_shape((None, 4, None, 3)) == (None, 12, None, 3)
    np.testing.assert_array_equal(got.numpy(), expected.numpy())


@pytest.mark.parametrize("kernel,size", [(9, (1, 24, 30)), (9, (2, 13, 16)), (3, (1, 7, 9)), (1, (1, 5, 4))])
def test_space_to_depth_conv_equals_conv(kernel, size):
    x = _random(size + (6,), 1)
    fast = SpaceToDepthConv2D(3, kernel)
    y = fast(x)
    plain = keras.layers.Conv2D(3, kernel, padding="valid", use_bias=False)
    plain.build((None, None, None, 6))
    plain.set_weights(fast.get_weights())
    expected = plain(x)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y.numpy(), expected.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="odd kernel"):
        SpaceToDepthConv2D(3, 4)


def _numpy_instance_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma[:, None, None, :] + beta[:, None, None, :]


def test_conditional_instance_norm_single_image_and_batch_agree_with_numpy():
    """Inference runs the fused batch-norm kernel per image, training the vectorised form: both are instance norm."""
    x = _random((3, 9, 11, 4), 2).numpy() * 3 + 1
    params = _random((3, 8), 3).numpy()
    layer = ConditionalInstanceNorm(0, 4)
    expected = _numpy_instance_norm(x, params[:, :4], params[:, 4:])
    np.testing.assert_allclose(layer([x, params]).numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(layer([x, params], training=True).numpy(), expected, atol=1e-4)
    for i in range(3):
        np.testing.assert_allclose(layer([x[i : i + 1], params[i : i + 1]]).numpy(), expected[i : i + 1], atol=1e-4)
    # Unknown batch size at trace time (serving signatures): the runtime branch picks the path.
    fn = tf.function(lambda a, p: layer([a, p]), input_signature=[
        tf.TensorSpec([None, None, None, 4]), tf.TensorSpec([None, 8])])
    np.testing.assert_allclose(fn(x[:1], params[:1]).numpy(), expected[:1], atol=1e-4)
    np.testing.assert_allclose(fn(x, params).numpy(), expected, atol=1e-4)
    # One style for a batch of contents broadcasts.
    shared = _numpy_instance_norm(x, np.repeat(params[:1, :4], 3, 0), np.repeat(params[:1, 4:], 3, 0))
    np.testing.assert_allclose(fn(x, params[:1]).numpy(), shared, atol=1e-4)


def test_instance_norm_gradients_flow_through_fused_path():
    layer = InstanceNorm()
    x = _random((1, 6, 5, 3), 4)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x) * tf.range(3, dtype=tf.float32))
    grads = tape.gradient(loss, [x, *layer.trainable_variables])
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
    assert np.abs(grads[1].numpy()).max() > 0 and np.abs(grads[0].numpy()).max() > 0


@pytest.mark.parametrize("shape", [(1, 8, 12, 3), (1, 6, 10, 6), (1, 1, 8, 3), (1, 5, 7, 3), (1, 1, 4, 3)])
def test_channel_counts_off_a_multiple_of_4_are_normalised_exactly(shape):
    """3 and 6 channels run on a grouped (W/k, C*k) view when W allows; other sizes use the plain op."""
    x = _random(shape, 6).numpy() * 3 + 1
    params = _random((1, 2 * shape[-1]), 7).numpy()
    gamma, beta = params[:, : shape[-1]], params[:, shape[-1] :]
    expected = _numpy_instance_norm(x, gamma, beta)
    layer = ConditionalInstanceNorm(0, shape[-1])
    fn = tf.function(lambda a, p: layer([a, p]), input_signature=[
        tf.TensorSpec([None, None, None, shape[-1]]), tf.TensorSpec([None, 2 * shape[-1]])])
    np.testing.assert_allclose(fn(x, params).numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(layer([x, params]).numpy(), expected, atol=1e-4)
    traced = tf.function(lambda a, p: layer([a, p]))  # shapes known at trace time: no branch that cannot run
    np.testing.assert_allclose(traced(x, params).numpy(), expected, atol=1e-4)


def test_grouped_norm_gradients_equal_the_plain_formulas():
    """Style fitting differentiates through inference-mode norms: every input's gradient must be exact."""
    x = tf.constant(_random((1, 8, 12, 3), 8).numpy() * 2 + 0.5)
    params = tf.constant(_random((1, 6), 9).numpy())
    weights = tf.constant(_random((1, 8, 12, 3), 10).numpy())
    layer = ConditionalInstanceNorm(0, 3)

    def grads(training):
        with tf.GradientTape() as tape:
            tape.watch([x, params])
            loss = tf.reduce_sum(tf.square(layer([x, params], training=training)) * weights)
        return tape.gradient(loss, [x, params])

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3]), tf.TensorSpec([None, 6])])
    def traced(images, style):  # unknown batch size: the single-image branch sits inside a tf.cond
        with tf.GradientTape() as tape:
            tape.watch([images, style])
            loss = tf.reduce_sum(tf.square(layer([images, style])) * weights)
        return tape.gradient(loss, [images, style])

    for inference, plain, in_cond in zip(grads(None), grads(True), traced(x, params)):
        assert np.abs(plain.numpy()).max() > 0
        np.testing.assert_allclose(inference.numpy(), plain.numpy(), atol=1e-4)
        np.testing.assert_allclose(in_cond.numpy(), plain.numpy(), atol=1e-4)


@runs_bf16
def test_fast_layers_run_in_mixed_bfloat16():
    policy = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        up, s2d, norm = UpsampleConv2D(4), SpaceToDepthConv2D(3, 9), InstanceNorm()
        x = _random((1, 12, 10, 4), 5)
        y = s2d(ReflectPad(4)(norm(up(x))))
    finally:
        keras.mixed_precision.set_dtype_policy(policy)
    assert y.dtype == tf.bfloat16 and y.shape == (1, 24, 20, 3)
    assert np.isfinite(tf.cast(y, tf.float32).numpy()).all()
