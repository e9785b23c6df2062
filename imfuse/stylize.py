"""Feed-forward stylisation with a trained StyleTransferModel (`imfuse stylize --method model`).

Content of any size goes through the network at full resolution (the model pads to a
multiple of 4 inside its graph and crops back); styles are embedded at the model's style
size (256 px) and mixed by a weighted average of their embeddings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from imfuse.errors import ConfigError, ImageError

if TYPE_CHECKING:  # pragma: no cover
    from imfuse.networks.model import StyleTransferModel


def _check_image(rgb: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(rgb, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(f"{what}: expected an (H, W, 3) RGB array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ImageError(f"{what}: contains NaN or Inf values")
    return arr


def mix_style_embeddings(model: "StyleTransferModel", styles: list[tuple[np.ndarray, float]]) -> np.ndarray:
    """Weighted average (weights normalised to sum 1) of the styles' embeddings -> (1, D)."""
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
        mixed += weight * np.asarray(model.embed_style(arr[None]), dtype=np.float64)
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


def stylize_with_model(
    model: "StyleTransferModel",
    content_rgb: np.ndarray,
    styles: list[tuple[np.ndarray, float]],
    strength: float = 1.0,
    mask: np.ndarray | None = None,
    preserve_color: bool = False,
) -> np.ndarray:
    """Stylise one (H, W, 3) float image in [0, 1]; returns float32 (H, W, 3) in [0, 1].

    `strength` interpolates the bottleneck between the content's own embedding (0) and the
    mixed style embedding (1); `mask` (H, W) in [0, 1] limits where the style shows;
    `preserve_color` keeps the content's chroma (imfuse.color.preserve_color).
    """
    content = _check_image(content_rgb, "content image")
    if not 0.0 <= float(strength) <= 1.0:
        raise ConfigError(f"strength must be between 0 and 1, got {strength}")
    embedding = mix_style_embeddings(model, styles)
    batch = content[None]
    if strength < 1.0:
        own = np.asarray(model.embed_style(batch), dtype=np.float32)
        embedding = strength * embedding + (1.0 - strength) * own
    stylized = np.asarray(model.stylize_with_embedding(batch, embedding), dtype=np.float32)[0]
    if preserve_color:
        from imfuse.color import preserve_color as keep_chroma

        stylized = keep_chroma(content, stylized)
    stylized = np.clip(stylized, 0.0, 1.0)
    if mask is not None:
        stylized = apply_mask(content, stylized, mask)
    return stylized
