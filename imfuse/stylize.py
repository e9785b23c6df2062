"""Feed-forward stylisation with a trained StyleTransferModel (`imfuse stylize --method model`).

Content of any size goes through the network at full resolution (the model pads to a
multiple of 4 inside its graph and crops back), whole or, for big images, in overlapping
tiles with shared normalisation statistics (imfuse.tiling); styles are embedded at the model's style
size (256 px) and mixed by a weighted average of their embeddings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from imfuse import tiling
from imfuse.color import preserve_color as keep_chroma
from imfuse.errors import ConfigError, ImageError
from imfuse.images import to_float32, to_uint8

if TYPE_CHECKING:  # pragma: no cover
    from imfuse.networks.model import StyleTransferModel


def _check_image(rgb: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(rgb, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(f"{what}: expected an (H, W, 3) RGB array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ImageError(f"{what}: contains NaN or Inf values")
    return arr


def check_strength(strength: float, name: str = "strength") -> None:
    """ConfigError unless 0 <= strength <= 1 (0: the content's own embedding, 1: the style's)."""
    if not 0.0 <= float(strength) <= 1.0:
        raise ConfigError(f"{name} must be between 0 and 1, got {strength}")


def mix_style_embeddings(model: "StyleTransferModel", styles: list[tuple[np.ndarray, float]], embed=None) -> np.ndarray:
    """Weighted average (weights normalised to sum 1) of the styles' embeddings -> (1, D).
    `embed` (default: model.embed_style) embeds a (1, h, w, 3) batch."""
    if not styles:
        raise ConfigError("at least one style image is needed")
    weights = np.array([float(w) for _, w in styles], dtype=np.float64)
    if (weights < 0).any() or not np.isfinite(weights).all() or weights.sum() <= 0:
        raise ConfigError(f"style weights must be non-negative with a positive sum, got {weights.tolist()}")
    weights = weights / weights.sum()
    mixed = np.zeros((1, model.embedding_dim), dtype=np.float64)
    for i, ((style, _), weight) in enumerate(zip(styles, weights)):
        if weight == 0:
            continue
        arr = _check_image(style, f"style image #{i + 1}")
        mixed += weight * np.asarray((embed or model.embed_style)(arr[None]), dtype=np.float64)
    return mixed.astype(np.float32)


def apply_mask(content: np.ndarray, stylized: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Stylised where mask is 1, content where it is 0 (exactly), linear blend in between."""
    m = np.asarray(mask, dtype=np.float32)
    if m.shape != content.shape[:2]:
        raise ImageError(f"mask shape {m.shape} does not match the content image {content.shape[:2]}")
    if not np.isfinite(m).all() or m.min() < 0 or m.max() > 1:
        raise ImageError("mask values must be finite and in [0, 1]")
    m = m[..., None]
    blended = m * stylized + (1.0 - m) * content
    return np.where(m == 0.0, content, blended).astype(np.float32)


def _check_content(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) arrays stay uint8 (big images: 1 byte per channel); anything else float32."""
    arr = np.asarray(rgb)
    if arr.dtype == np.uint8:
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ImageError(f"content image: expected an (H, W, 3) RGB array, got shape {arr.shape}")
        return arr
    return _check_image(arr, "content image")


def stylize_with_model(
    model: "StyleTransferModel",
    content_rgb: np.ndarray,
    styles: list[tuple[np.ndarray, float]],
    strength: float = 1.0,
    mask: np.ndarray | None = None,
    preserve_color: bool = False,
    *,
    tile: int | str | None = None,
    style_scale: float | None = None,
    as_uint8: bool = False,
    progress=None,
    embedding: np.ndarray | None = None,
    work_size: tuple[int, int] | None = None,
    compiled: bool = False,
) -> np.ndarray:
    """Stylise one (H, W, 3) image in [0, 1] (float, or uint8 in [0, 255]); returns float32
    (H, W, 3) in [0, 1], or uint8 with `as_uint8`.

    `strength` interpolates the bottleneck between the content's own embedding (0) and the
    mixed style embedding (1); `mask` (H, W) in [0, 1] limits where the style shows;
    `preserve_color` keeps the content's chroma (imfuse.color.preserve_color).

    `tile`: None/0/"off" runs the whole image at once; a size in px runs overlapping tiles
    of that size with shared normalisation statistics (imfuse.tiling), "auto" does so
    above imfuse.tiling.AUTO_TILE_PIXELS. `style_scale` runs the network at a working
    resolution of imfuse.tiling.REFERENCE_PIXELS / style_scale**2 and resizes the result
    to the content's size, so stroke size relative to the image no longer depends on the
    output resolution (None: work at the content's own resolution). `progress(done, total)`
    is called after each tile. `embedding` (D,) stands in for `styles`: a style fitted once
    by imfuse.style_fit (or any embedding the model produced). `work_size` (H, W) fixes the
    working resolution instead (a TFLite export's content size): the content is resized to it
    as uint8 and the result back, with no full-size float copy. `compiled` runs the Keras
    model's calls traced once (networks.compiled_calls): for callers that stylise many images
    (the studio), not a one-off call, which the trace would make slower.
    """
    content = _check_content(content_rgb)
    if embedding is not None:
        embedding = np.asarray(embedding, np.float32).reshape(1, -1)
        if embedding.shape[1] != model.embedding_dim or not np.isfinite(embedding).all():
            raise ConfigError(f"embedding must be {model.embedding_dim} finite values, got shape {embedding.shape[1:]}")
    check_strength(strength)
    h, w = content.shape[:2]
    if work_size is not None and style_scale is not None:
        raise ConfigError("give a working size or a style scale, not both")
    work_hw = tuple(work_size) if work_size is not None else tiling.working_size(h, w, style_scale)
    tile_size = tiling.resolve_tile(tile, *work_hw)
    embed, transform = _calls(model, compiled)
    if content.dtype != np.uint8 and not tile_size and work_hw == (h, w) and not as_uint8:
        return _stylize_whole(model, content, styles, strength, mask, preserve_color, embedding, embed, transform)

    if embedding is None:
        embedding = mix_style_embeddings(model, styles, embed)
    work = tiling.resize_image(content, work_hw)
    if strength < 1.0:
        # embed_style centre-crops and resizes to the style size anyway: a 1 MP copy is enough.
        own = np.asarray(embed(tiling.stats_image(work)[None]), dtype=np.float32)
        embedding = strength * embedding + (1.0 - strength) * own
    if tile_size:
        params = model.style_heads(embedding)
        stats = tiling.norm_statistics(model.transformer, tiling.stats_image(work)[None], params)
        radius = tiling.receptive_radius(model.variant)
        plan = tiling.plan_tiles(*work_hw, tile_size, margin=radius)
        stylized = tiling.stylize_tiled(model.transformer, work, params, stats, plan, progress)
    else:
        batch = to_float32(work)[None]
        stylized = np.asarray(transform(batch, embedding), dtype=np.float32)[0]
        stylized = to_uint8(stylized) if content.dtype == np.uint8 or as_uint8 else np.clip(stylized, 0.0, 1.0)
    del work
    stylized = tiling.resize_image(stylized, (h, w))
    if stylized.dtype == np.uint8:
        _finish_in_bands(content, stylized, mask, preserve_color)
        return stylized if as_uint8 else stylized.astype(np.float32) / np.float32(255.0)
    stylized = _finish(content, stylized, mask, preserve_color)
    return to_uint8(stylized) if as_uint8 else stylized


def _finish(content, stylized, mask, preserve_color) -> np.ndarray:
    """Colour preservation, clipping and the mask on float (H, W, 3) arrays."""
    if preserve_color:
        stylized = keep_chroma(content, stylized)
    stylized = np.clip(stylized, 0.0, 1.0)
    if mask is not None:
        stylized = apply_mask(content, stylized, mask)
    return stylized


def _finish_in_bands(content, stylized: np.ndarray, mask, preserve_color, rows: int = 256) -> None:
    """_finish on a uint8 result, in place, a band of rows at a time (no full-size float copies)."""
    if mask is not None and np.shape(mask) != content.shape[:2]:
        raise ImageError(f"mask shape {np.shape(mask)} does not match the content image {content.shape[:2]}")
    if mask is None and not preserve_color:
        return
    for top in range(0, content.shape[0], rows):
        band = slice(top, top + rows)
        out = _finish(to_float32(content[band]), to_float32(stylized[band]),
                      None if mask is None else np.asarray(mask)[band], preserve_color)
        stylized[band] = to_uint8(out)


def _calls(model, compiled: bool):
    """(embed_style, stylize_with_embedding): the Keras model's compiled calls, or the model's own
    (a TFLite export, or a one-off call)."""
    if compiled:
        from imfuse.networks import StyleTransferModel, compiled_calls

        if isinstance(model, StyleTransferModel):
            return compiled_calls(model)
    return model.embed_style, model.stylize_with_embedding


def _stylize_whole(model, content, styles, strength, mask, preserve_color, embedding, embed, transform) -> np.ndarray:
    """The untiled float path (the whole image through the model at once)."""
    if embedding is None:
        embedding = mix_style_embeddings(model, styles, embed)
    batch = content[None]
    if strength < 1.0:
        own = np.asarray(embed(batch), dtype=np.float32)
        embedding = strength * embedding + (1.0 - strength) * own
    stylized = np.asarray(transform(batch, embedding), dtype=np.float32)[0]
    return _finish(content, stylized, mask, preserve_color)
