"""Style transformer network (Ghiasi/Johnson layout) as a functional Keras model.

Inputs: content (B, H, W, 3) in [0, 1] of any H/W, and the flat style parameters
(B or 1, P) from the style heads. Output: (B, H, W, 3) in [0, 1], same H and W.
"""

from __future__ import annotations

import keras

from imfuse.networks.config import VariantConfig
from imfuse.networks.layers import ConditionalInstanceNorm, CropLike, InstanceNorm, PadToMultiple, ReflectPad

# Two stride-2 convs: H and W must be multiples of 4 inside the network.
STRIDE = 4


def _conv(x, filters: int, kernel: int, stride: int, separable: bool, name: str):
    """Reflect-padded conv without bias (every conv here is followed by a normaliser)."""
    x = ReflectPad(kernel // 2, name=f"{name}_pad")(x)
    if separable:
        return keras.layers.SeparableConv2D(
            filters, kernel, strides=stride, padding="valid", use_bias=False, name=name
        )(x)
    return keras.layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False, name=name)(x)


class _CinCounter:
    """Hands out consecutive slices of the style parameter vector in layer order."""

    def __init__(self) -> None:
        self.offset = 0
        self.index = 0

    def __call__(self, x, params, depth: int):
        layer = ConditionalInstanceNorm(self.offset, depth, name=f"cin_{self.index}")
        self.offset += 2 * depth
        self.index += 1
        return layer([x, params])


def build_transformer(cfg: VariantConfig) -> keras.Model:
    """Builds the transformer for `cfg`; its CIN layers consume exactly cfg.style_param_count values."""
    content = keras.Input(shape=(None, None, 3), name="content")
    params = keras.Input(shape=(cfg.style_param_count,), name="style_params")
    cin = _CinCounter()
    c32, c64, c128 = cfg.channels(32), cfg.channels(64), cfg.channels(128)

    x = PadToMultiple(STRIDE, name="pad_to_multiple")(content)
    # Contract: plain instance norm (style-independent features).
    for i, (filters, kernel, stride) in enumerate(
        [(c32, cfg.outer_kernel, 1), (c64, 3, 2), (c128, 3, 2)]
    ):
        separable = cfg.separable_outer if i == 0 else False
        x = _conv(x, filters, kernel, stride, separable, name=f"contract_{i}")
        x = InstanceNorm(name=f"contract_{i}_norm")(x)
        x = keras.layers.ReLU(name=f"contract_{i}_relu")(x)

    for b in range(cfg.residual_blocks):
        y = _conv(x, c128, 3, 1, cfg.separable, name=f"residual_{b}_a")
        y = keras.layers.ReLU(name=f"residual_{b}_relu")(cin(y, params, c128))
        y = _conv(y, c128, 3, 1, cfg.separable, name=f"residual_{b}_b")
        x = keras.layers.Add(name=f"residual_{b}_add")([x, cin(y, params, c128)])

    # Expand: nearest upsampling + conv (no transposed conv, so no checkerboard).
    for i, filters in enumerate([c64, c32]):
        x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"expand_{i}_up")(x)
        x = _conv(x, filters, 3, 1, cfg.separable, name=f"expand_{i}")
        x = keras.layers.ReLU(name=f"expand_{i}_relu")(cin(x, params, filters))
    x = _conv(x, 3, cfg.outer_kernel, 1, cfg.separable_outer, name="output_conv")
    x = keras.layers.Activation("sigmoid", name="output_sigmoid")(cin(x, params, 3))
    out = CropLike(name="crop_to_input")([x, content])
    assert cin.offset == cfg.style_param_count, "style parameter layout out of sync with norm_depths"
    return keras.Model([content, params], out, name="transformer")
