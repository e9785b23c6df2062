"""Custom Keras layers of the style networks.

Kept in one module so that saved models find every class under one registered package
name ("imfuse"). All layers work with unknown H/W (tf.function tracing, SavedModel export).
"""

from __future__ import annotations

import keras
import tensorflow as tf

_PACKAGE = "imfuse"
_EPSILON = 1e-5


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ReflectPad(keras.layers.Layer):
    """Reflect padding on H and W: zero padding darkens borders of stylised images."""

    def __init__(self, pad: int, **kwargs):
        super().__init__(**kwargs)
        self.pad = int(pad)

    def call(self, x):
        if self.pad == 0:
            return x
        p = self.pad
        return tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        grow = lambda d: None if d is None else d + 2 * self.pad  # noqa: E731
        return (b, grow(h), grow(w), c)

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PadToMultiple(keras.layers.Layer):
    """Reflect-pads bottom/right so H and W are multiples of `multiple` (the network's stride).

    Inside the graph, so any content size works without Python-side shape logic.
    """

    def __init__(self, multiple: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, x):
        shape = tf.shape(x)
        m = self.multiple
        pad_h = (m - shape[1] % m) % m
        pad_w = (m - shape[2] % m) % m
        return tf.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="REFLECT")

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        up = lambda d: None if d is None else -(-d // self.multiple) * self.multiple  # noqa: E731
        return (b, up(h), up(w), c)

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CropLike(keras.layers.Layer):
    """Crops `x` back to the H and W of `reference` (undoes PadToMultiple)."""

    def call(self, inputs):
        x, reference = inputs
        shape = tf.shape(reference)
        return x[:, : shape[1], : shape[2], :]

    def compute_output_shape(self, input_shapes):
        x_shape, ref_shape = input_shapes
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])


def _instance_moments(x):
    return tf.nn.moments(x, axes=[1, 2], keepdims=True)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class InstanceNorm(keras.layers.Layer):
    """Instance normalisation with a learned per-channel scale and offset (contract convs)."""

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")

    def call(self, x):
        mean, var = _instance_moments(x)
        return (x - mean) * tf.math.rsqrt(var + _EPSILON) * self.gamma + self.beta


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConditionalInstanceNorm(keras.layers.Layer):
    """Instance norm whose gamma/beta are a slice of the per-image style parameter vector.

    `params` is (B, P) with, for this layer, gamma at [offset, offset+depth) and beta at
    [offset+depth, offset+2*depth). A batch of 1 broadcasts over the content batch.
    """

    def __init__(self, offset: int, depth: int, **kwargs):
        super().__init__(**kwargs)
        self.offset = int(offset)
        self.depth = int(depth)

    def call(self, inputs):
        x, params = inputs
        start, depth = self.offset, self.depth
        gamma = params[:, start : start + depth][:, None, None, :]
        beta = params[:, start + depth : start + 2 * depth][:, None, None, :]
        mean, var = _instance_moments(x)
        return (x - mean) * tf.math.rsqrt(var + _EPSILON) * gamma + beta

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        return {**super().get_config(), "offset": self.offset, "depth": self.depth}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SpatialMean(keras.layers.Layer):
    """Mean over H and W: the style summary is size-independent."""

    def call(self, x):
        return tf.reduce_mean(x, axis=[1, 2])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Rescale(keras.layers.Layer):
    """Maps [0, 1] images to [-1, 1] (InceptionV3's input range)."""

    def call(self, x):
        return x * 2.0 - 1.0
