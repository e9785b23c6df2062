"""Style transformer network (Ghiasi/Johnson layout) as a functional Keras model.

Inputs: content (B, H, W, 3) in [0, 1] of any H/W, and the flat style parameters
(B or 1, P) from the style heads. Output: (B, H, W, 3) in [0, 1], same H and W.
"""

from __future__ import annotations

import keras

from imfuse.errors import ConfigError
from imfuse.networks.config import VariantConfig
from imfuse.networks.layers import (
    ConditionalInstanceNorm,
    CropLike,
    EdgePadUpsample2D,
    InstanceNorm,
    PadToMultiple,
    ReflectPad,
    SpaceToDepthConv2D,
    UpsampleConv2D,
)

# Two stride-2 convs: H and W must be multiples of 4 inside the network.
STRIDE = 4

# Layer layout of the transformer (saved in every model's config). Both compute the same
# function with the same weights; layout 2 runs the dense expand convs as UpsampleConv2D
# and the dense output conv as SpaceToDepthConv2D. Keras keys saved weights by layer
# class, so files saved with layout 1 (before imfuse had layout 2) are rebuilt with it.
LAYOUTS = (1, 2)
LAYOUT = 2
# Normalisation statistics, the style's gamma/beta and the output image stay float32 under
# a mixed (bfloat16/float16) policy: only the convolutions need the faster type.
NORM_DTYPE = "float32"


def _conv(
    x, filters: int, kernel: int, stride: int, separable: bool, name: str, space_to_depth: bool = False,
    bias: bool = False,
):
    """Reflect-padded conv, without bias where a normaliser follows (it would cancel out)."""
    x = ReflectPad(kernel // 2, name=f"{name}_pad")(x)
    if separable:
        return keras.layers.SeparableConv2D(
            filters, kernel, strides=stride, padding="valid", use_bias=bias, name=name
        )(x)
    if space_to_depth:
        return SpaceToDepthConv2D(filters, kernel, name=name)(x)
    return keras.layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=bias, name=name)(x)


def _upsample_conv(x, filters: int, separable: bool, fused: bool, name: str):
    """Nearest 2x upsampling + reflect-padded 3x3 conv (no transposed-conv checkerboard)."""
    if fused and not separable:
        return UpsampleConv2D(filters, name=name)(x)
    if fused:  # the same function, with the padding done on the small image (EdgePadUpsample2D)
        x = EdgePadUpsample2D(name=f"{name}_up")(x)
        x = keras.layers.SeparableConv2D(filters, 3, padding="valid", use_bias=False, name=name)(x)
        return keras.layers.Cropping2D(1, name=f"{name}_crop")(x)
    x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_up")(x)
    return _conv(x, filters, 3, 1, separable, name=name)


class _CinCounter:
    """Hands out consecutive slices of the style parameter vector in layer order."""

    def __init__(self) -> None:
        self.offset = 0
        self.index = 0

    def __call__(self, x, params, depth: int):
        layer = ConditionalInstanceNorm(self.offset, depth, name=f"cin_{self.index}", dtype=NORM_DTYPE)
        self.offset += 2 * depth
        self.index += 1
        return layer([x, params])


def build_transformer(cfg: VariantConfig, layout: int = LAYOUT) -> keras.Model:
    """Builds the transformer for `cfg`; its CIN layers consume exactly cfg.style_param_count values."""
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown transformer layout {layout!r}; this imfuse knows {', '.join(map(str, LAYOUTS))}")
    fused = layout >= 2
    content = keras.Input(shape=(None, None, 3), name="content")
    params = keras.Input(shape=(cfg.style_param_count,), name="style_params")
    cin = _CinCounter()
    c32, c64, c128 = cfg.channels(32), cfg.channels(64), cfg.channels(128)

    x = PadToMultiple(STRIDE, name="pad_to_multiple")(content)
    # Contract: plain instance norm (style-independent features), or biased convs alone.
    contract = [(c32, cfg.outer_kernel, 1, cfg.separable_outer), (c64, 3, 2, False), (c128, 3, 2, False)]
    for i, (filters, kernel, stride, separable) in enumerate(contract):
        x = _conv(x, filters, kernel, stride, separable, name=f"contract_{i}", bias=not cfg.contract_norm)
        if cfg.contract_norm:
            x = InstanceNorm(name=f"contract_{i}_norm", dtype=NORM_DTYPE)(x)
        x = keras.layers.ReLU(name=f"contract_{i}_relu")(x)

    for b in range(cfg.residual_blocks):
        y = _conv(x, c128, 3, 1, cfg.separable, name=f"residual_{b}_a")
        y = keras.layers.ReLU(name=f"residual_{b}_relu")(cin(y, params, c128))
        y = _conv(y, c128, 3, 1, cfg.separable, name=f"residual_{b}_b")
        x = keras.layers.Add(name=f"residual_{b}_add")([x, cin(y, params, c128)])

    # Expand: nearest upsampling + conv (no learned transposed conv, so no checkerboard).
    for i, filters in enumerate([c64, c32]):
        x = _upsample_conv(x, filters, cfg.separable, fused, name=f"expand_{i}")
        x = keras.layers.ReLU(name=f"expand_{i}_relu")(cin(x, params, filters))
    x = _conv(x, 3, cfg.outer_kernel, 1, cfg.separable_outer, name="output_conv", space_to_depth=fused)
    x = keras.layers.Activation("sigmoid", name="output_sigmoid", dtype=NORM_DTYPE)(cin(x, params, 3))
    out = CropLike(name="crop_to_input", dtype=NORM_DTYPE)([x, content])
    assert cin.offset == cfg.style_param_count, "style parameter layout out of sync with norm_depths"
    return keras.Model([content, params], out, name="transformer")
