"""Tiled feed-forward stylisation: any image size with bounded memory, and no visible seams.

The transformer (imfuse/networks/transformer.py) is fully convolutional except for its
instance normalisation layers (InstanceNorm, ConditionalInstanceNorm), whose per-image
mean and variance would differ from tile to tile and show as a grid of slightly different
colours/contrasts. Tiled inference therefore runs in two passes:

1. **Statistics.** The whole image, downscaled to at most STATS_PIXELS (or as it is when
   smaller), goes once through the transformer; every norm layer's input mean/variance is
   recorded (`norm_statistics`).
2. **Tiles.** Each tile goes through the same layers, but every norm layer normalises with
   the recorded statistics instead of the tile's own (`_run_with_stats`). With the same
   statistics the network is a pure convolution stack, so the tiles of an image agree
   with each other wherever they have enough context.

Context and blending: each tile is read with `margin` pixels of real image around the
part that is used (the reflect padding at a tile's border disturbs the output up to the
receptive-field radius, see `receptive_radius`, but its effect decays quickly; the
default margin is where it falls below 0.5/255), and neighbouring tiles cross-fade over
`blend` pixels with a raised-cosine (Hann) ramp, normalised by the summed weights. Tile
origins are multiples of the network stride (4), so every tile samples the same stride-2
grid as an untiled run would.

Memory: tiles go through the network one at a time; the weighted sums live in a float32
buffer one tile row high (tile x image width), finished rows go into a uint8 output
array. Peak memory grows with the image only through the uint8 input/output arrays and
that strip (bench/tiled.py measures it).

Style scale (`working_size`): the network paints strokes of a fixed size in *pixels*, so
the bigger the output, the smaller the strokes look. `style_scale=s` runs the model at a
working resolution of REFERENCE_PIXELS / s^2 (same aspect ratio) and resizes the result
to the output size: s = 1 gives the strokes-to-image proportion of a 1-megapixel run at
any output size; s = 2 strokes twice as large relative to the image, s = 0.5 half.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from imfuse.errors import ConfigError
from imfuse.images import resize_to, to_float32, to_uint8

STRIDE = 4  # the transformer's total stride (two stride-2 convs)
DEFAULT_TILE = 768
# Context discarded at each interior tile edge (px, multiple of 4) when the variant is not
# known; stylize_with_model uses the variant's receptive-field radius (40 px for the
# reduced model, 56 for the full one). Measured on the reduced model with 192 px tiles:
# 16 px leaves errors up to 1.5/255 near seams, 32 px none above uint8 rounding (0.5/255).
DEFAULT_MARGIN = 40
DEFAULT_BLEND = 32  # raised-cosine cross-fade width (px, multiple of 4)
MIN_TILE = 64
# `tile="auto"` tiles images above this many pixels (untiled float32 activations of the
# reduced model take about 0.6 GB per megapixel).
AUTO_TILE_PIXELS = 4_000_000
# Normalisation statistics come from the whole image downscaled to at most this size.
STATS_PIXELS = 1_000_000
# style_scale = 1 means "strokes as large, relative to the image, as in a run at this size".
REFERENCE_PIXELS = 1_000_000


# ----------------------------------------------------------------------------- geometry


def _ceil_to(x: int, m: int) -> int:
    return -(-int(x) // m) * m


def _floor_to(x: int, m: int) -> int:
    return int(x) // m * m


@dataclass(frozen=True)
class TilePlan:
    """Tile origins along each axis of the image padded to a multiple of STRIDE."""

    height: int  # image size
    width: int
    tile_h: int  # tile size (the same for every tile, so the tf.function traces once)
    tile_w: int
    margin: int
    blend: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)


def _starts(length: int, tile: int, step: int) -> tuple[int, ...]:
    """Evenly spread origins (multiples of STRIDE) of `tile`-long windows covering [0, length)."""
    if length <= tile:
        return (0,)
    n = math.ceil((length - tile) / step) + 1
    span = length - tile  # a multiple of STRIDE (both are)
    return tuple(sorted({min(span, _floor_to(round(i * span / (n - 1)), STRIDE)) for i in range(n)}))


def plan_tiles(height: int, width: int, tile: int = DEFAULT_TILE, margin: int | None = None) -> TilePlan:
    """Tiles of `tile` x `tile` px (clipped to the image) whose used parts overlap by DEFAULT_BLEND.

    `margin` and the blend shrink for small tiles so that a tile keeps at least half of its
    size as step (every pixel then has a tile that sees it with full context).
    """
    tile = int(tile)
    if tile < MIN_TILE:
        raise ConfigError(f"tile size must be at least {MIN_TILE} px (or 0 for no tiling), got {tile}")
    tile = _floor_to(tile, STRIDE)
    margin = DEFAULT_MARGIN if margin is None else int(margin)
    if margin < 0:
        raise ConfigError("tile margin and blend must be >= 0")
    margin, blend = _ceil_to(margin, STRIDE), DEFAULT_BLEND
    # Step = tile - 2 margin - blend must stay >= 2 margin (see _starts' evenly spread origins).
    while margin > 0 and tile - 4 * margin - blend < 0:
        margin -= STRIDE
    blend = min(blend, max(0, tile - 4 * margin))
    step = max(STRIDE, tile - 2 * margin - blend)
    ph, pw = _ceil_to(height, STRIDE), _ceil_to(width, STRIDE)
    th, tw = min(tile, ph), min(tile, pw)
    return TilePlan(height, width, th, tw, margin, blend, _starts(ph, th, step), _starts(pw, tw, step))


def _axis_weights(start: int, size: int, length: int, margin: int, blend: int) -> np.ndarray:
    """1-D weights of one tile: 0 on the `margin` next to interior edges, a raised-cosine
    ramp over the next `blend` px, 1 inside; edges on the image border keep weight 1."""
    w = np.ones(size, np.float32)
    ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(blend, dtype=np.float32) + 0.5) / max(blend, 1))).astype(np.float32)
    if start > 0:
        w[:margin] = 0.0
        w[margin:margin + blend] = ramp
    if start + size < length:
        w[size - margin:] = 0.0
        w[size - margin - blend:size - margin] = np.minimum(w[size - margin - blend:size - margin], ramp[::-1])
    return w


# ------------------------------------------------------------------ network with fixed stats


def _norm_types():
    from imfuse.networks.layers import ConditionalInstanceNorm, InstanceNorm

    return InstanceNorm, ConditionalInstanceNorm


def _norm_inputs(layer, inputs):
    """(x float32, gamma (1|B, C), beta (1|B, C)) of an InstanceNorm/ConditionalInstanceNorm call."""
    import tensorflow as tf

    from imfuse.networks.layers import ConditionalInstanceNorm

    if isinstance(layer, ConditionalInstanceNorm):
        x, params = inputs
        start, depth = layer.offset, layer.depth
        gamma, beta = params[:, start:start + depth], params[:, start + depth:start + 2 * depth]
    else:
        x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        gamma, beta = layer.gamma[None, :], layer.beta[None, :]
    return tf.cast(x, tf.float32), tf.cast(gamma, tf.float32), tf.cast(beta, tf.float32)


def _normalise(x, mean, var, gamma, beta):
    import tensorflow as tf

    from imfuse.networks.layers import _EPSILON

    scale = tf.math.rsqrt(var + _EPSILON) * gamma  # (1, C)
    return x * scale[:, None, None, :] + (beta - mean * scale)[:, None, None, :]


def _run_graph(transformer, content, params, norm_fn):
    """The transformer's functional graph with every norm layer replaced by norm_fn(layer, x, gamma, beta)."""
    norm_types = _norm_types()

    def operation_fn(op):
        if isinstance(op, norm_types):
            return lambda inputs, *args, **kwargs: norm_fn(op, *_norm_inputs(op, inputs))
        return op

    return transformer._run_through_graph([content, params], operation_fn=operation_fn)


def norm_layer_names(transformer) -> list[str]:
    """Names of the transformer's instance-norm layers, in graph order."""
    return [layer.name for layer in transformer.layers if isinstance(layer, _norm_types())]


def norm_statistics(transformer, content, params) -> list:
    """Per-norm-layer (mean (1, C), variance (1, C)) of the transformer's activations on `content` (1, H, W, 3)."""
    import tensorflow as tf

    stats: dict[str, tuple] = {}

    def capture(layer, x, gamma, beta):
        mean, var = tf.nn.moments(x, axes=[1, 2])
        stats[layer.name] = (mean, var)
        return _normalise(x, mean, var, gamma, beta)

    _run_graph(transformer, tf.convert_to_tensor(content, tf.float32), tf.cast(params, tf.float32), capture)
    return [stats[name] for name in norm_layer_names(transformer)]


def _tile_function(transformer):
    """tf.function(tile (1, h, w, 3), params, [(mean, var), ...]) -> (1, h, w, 3), one per transformer."""
    import tensorflow as tf

    from imfuse.networks import cached_on

    def build():
        names = norm_layer_names(transformer)

        @tf.function(reduce_retracing=True)
        def fn(tile, params, stats):
            by_name = dict(zip(names, stats))

            def fixed(layer, x, gamma, beta):
                mean, var = by_name[layer.name]
                return _normalise(x, mean, var, gamma, beta)

            return tf.cast(_run_graph(transformer, tile, params, fixed), tf.float32)

        return fn

    return cached_on(transformer, "_imfuse_tile_function", build)


def _run_with_stats(transformer, tile, params, stats) -> np.ndarray:
    """One tile (h, w, 3) float32 through the transformer with fixed norm statistics."""
    out = _tile_function(transformer)(tile[None], params, [tuple(s) for s in stats])
    return out.numpy()[0]


# ----------------------------------------------------------------------------- image helpers


def resize_image(arr: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Antialiased resize to (H, W); uint8 stays uint8 (Pillow), float goes through imfuse.images."""
    h, w = int(size_hw[0]), int(size_hw[1])
    if arr.shape[:2] == (h, w):
        return arr
    if arr.dtype == np.uint8:
        from PIL import Image

        # np.array, not np.asarray: callers finish the result in place (masks, colour), and an
        # array over Pillow's buffer is read-only
        return np.array(Image.fromarray(arr, "RGB").resize((w, h), Image.Resampling.LANCZOS))

    return resize_to(np.asarray(arr, np.float32), (h, w))


def size_for_pixels(height: int, width: int, pixels: float) -> tuple[int, int]:
    """(h, w) with the aspect ratio of (height, width) and about `pixels` pixels (>= 1 each)."""
    f = math.sqrt(float(pixels) / (height * width))
    return max(1, round(height * f)), max(1, round(width * f))


def working_size(height: int, width: int, style_scale: float | None) -> tuple[int, int]:
    """Resolution the network runs at for `style_scale` (None: the output size itself)."""
    if style_scale is None:
        return height, width
    s = float(style_scale)
    if not (s > 0 and math.isfinite(s)):
        raise ConfigError(f"style scale must be a positive number, got {style_scale}")
    return size_for_pixels(height, width, REFERENCE_PIXELS / (s * s))


def stats_image(content: np.ndarray, max_pixels: int = STATS_PIXELS) -> np.ndarray:
    """Float32 (h, w, 3) copy of `content`, downscaled to at most `max_pixels` pixels."""
    h, w = content.shape[:2]
    if h * w > max_pixels:
        content = resize_image(content, size_for_pixels(h, w, max_pixels))
    return to_float32(content)


# ----------------------------------------------------------------------------- tiled run


def _tile_window(content: np.ndarray, y: int, x: int, th: int, tw: int) -> np.ndarray:
    """content[y:y+th, x:x+tw] as float32, reflect-padded past the bottom/right edge
    (what PadToMultiple does for an untiled run)."""
    tile = to_float32(content[y:y + th, x:x + tw])
    pad_h, pad_w = th - tile.shape[0], tw - tile.shape[1]
    if pad_h or pad_w:
        tile = np.pad(tile, [(0, pad_h), (0, pad_w), (0, 0)], mode="reflect")
    return tile


def stylize_tiled(transformer, content: np.ndarray, params, stats, plan: TilePlan,
                  progress=None) -> np.ndarray:
    """Stylised uint8 (H, W, 3) of `content` ((H, W, 3) uint8 or float in [0, 1]), tile by tile.

    `params` are the style parameters (1, P) from the style heads, `stats` the norm
    statistics from `norm_statistics`, `plan` from `plan_tiles`.
    """
    import tensorflow as tf

    h, w = content.shape[:2]
    ph, pw = _ceil_to(h, STRIDE), _ceil_to(w, STRIDE)
    th, tw = plan.tile_h, plan.tile_w
    params = tf.cast(params, tf.float32)  # bfloat16 models: the style heads' output
    stats = [(tf.cast(m, tf.float32), tf.cast(v, tf.float32)) for m, v in stats]
    out = np.empty((h, w, 3), np.uint8)
    wx = [_axis_weights(x, tw, pw, plan.margin, plan.blend) for x in plan.xs]
    acc = np.zeros((th, pw, 3), np.float32)  # rows [top, top + th) of the weighted sum
    wsum = np.zeros((th, pw), np.float32)
    top = 0
    done = 0

    def flush(upto: int) -> None:
        nonlocal acc, wsum, top
        rows = upto - top
        if rows <= 0:
            return
        stop = min(upto, h)
        if stop > top:
            n = stop - top
            if (wsum[:n, :w] <= 0).any():  # pragma: no cover - plan_tiles guarantees coverage
                raise RuntimeError("tile plan leaves pixels without a tile")
            out[top:stop] = to_uint8(acc[:n, :w] / wsum[:n, :w, None])
        acc = np.concatenate([acc[rows:], np.zeros((rows, pw, 3), np.float32)])
        wsum = np.concatenate([wsum[rows:], np.zeros((rows, pw), np.float32)])
        top = upto

    for y in plan.ys:
        flush(y)
        wy = _axis_weights(y, th, ph, plan.margin, plan.blend)
        for x, wxi in zip(plan.xs, wx):
            styled = _run_with_stats(transformer, _tile_window(content, y, x, th, tw), params, stats)
            weight = wy[:, None] * wxi[None, :]
            acc[:, x:x + tw] += styled * weight[:, :, None]
            wsum[:, x:x + tw] += weight
            done += 1
            if progress is not None:
                progress(done, plan.count)
    flush(top + th)
    return out


def resolve_tile(tile, height: int, width: int) -> int:
    """`tile` option -> tile size in px, 0 for an untiled run.

    None or 0 or "off": untiled; "auto": DEFAULT_TILE above AUTO_TILE_PIXELS, else untiled;
    an int: that size (untiled when the whole image fits in one tile).
    """
    if tile is None or tile == "off":
        return 0
    if tile == "auto":
        return DEFAULT_TILE if height * width > AUTO_TILE_PIXELS else 0
    try:
        size = int(tile)
    except (TypeError, ValueError):
        raise ConfigError(f"tile must be 'auto', 'off' or a size in px, got {tile!r}") from None
    if size == 0:
        return 0
    if size < MIN_TILE:
        raise ConfigError(f"tile size must be at least {MIN_TILE} px (or 0 for no tiling), got {size}")
    fits_one_tile = _ceil_to(height, STRIDE) <= size and _ceil_to(width, STRIDE) <= size
    return 0 if fits_one_tile else size


def receptive_radius(variant) -> int:
    """Theoretical receptive-field radius (px of the input) of the transformer of `variant`
    (38 for the reduced variant, 54 for the full one)."""
    k = variant.outer_kernel // 2
    # contract: k at stride 1, 3x3 at 1 then at 2 (input px per step: 1, 2); residual
    # blocks: two 3x3 convs at stride 4; expand: 3x3 at 1/2 and at full resolution; output k.
    return k + 1 * 1 + 1 * 2 + variant.residual_blocks * 2 * 4 + 1 * 2 + 1 + k
