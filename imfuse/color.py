"""Colour preservation: keep the content's colours, take only the stylised luminance.

Gatys et al. 2016 ("Preserving color in neural artistic style transfer"): transfer
in the luminance channel of YIQ and keep the content's I and Q chroma channels.
"""

from __future__ import annotations

import numpy as np

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # Rec. 601 luma, YIQ's Y: masks, video flicker, demo palettes
RGB_TO_YIQ = np.array(
    [LUMA_WEIGHTS, [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]],
    dtype=np.float32,
)  # the one copy: the serving graph (imfuse.serving_signatures) builds its constants from these
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ).astype(np.float32)


def rgb_to_yiq(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ RGB_TO_YIQ.T


def yiq_to_rgb(yiq: np.ndarray) -> np.ndarray:
    return yiq.astype(np.float32) @ YIQ_TO_RGB.T


def preserve_color(content_rgb: np.ndarray, stylized_rgb: np.ndarray) -> np.ndarray:
    """Stylised luminance + content chroma, float32 RGB in [0, 1] (same shape as inputs)."""
    if content_rgb.shape != stylized_rgb.shape:
        raise ValueError(f"shape mismatch: content {content_rgb.shape} vs stylized {stylized_rgb.shape}")
    merged = np.concatenate([rgb_to_yiq(stylized_rgb)[..., :1], rgb_to_yiq(content_rgb)[..., 1:]], axis=-1)
    return np.clip(yiq_to_rgb(merged), 0.0, 1.0)
