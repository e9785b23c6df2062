"""Uploaded form fields -> a validated StylizeRequest.

Every file goes through imfuse.images (the same decoder allow-list, size caps and
one-line ImageError messages as `imfuse stylize`); a bad field raises FieldError, which
names the form field so the page can show the message next to that input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imfuse.errors import ConfigError, ImfuseError
from imfuse.images import ImageLimits, decode_image, load_mask, resize_to, to_uint8

class FieldError(ConfigError):
    """An ImfuseError tied to one form field ('content', 'style', 'mask', 'strength', ...)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class StylizeRequest:
    """What one stylisation needs: uint8 content at the processing size, styles, options."""

    content: np.ndarray  # uint8 (H, W, 3) at the size asked for
    styles: list[tuple[np.ndarray, float]]  # float32 (h, w, 3) in [0, 1], weight
    strength: float = 1.0
    preserve_color: bool = False
    mask: np.ndarray | None = None  # float32 (H, W) in [0, 1]; 1 = stylised

    @property
    def content_float(self) -> np.ndarray:
        return self.content.astype(np.float32) / np.float32(255.0)


def for_field(field: str, call):
    """Run `call`, re-raising any ImfuseError as a FieldError of `field` (same message)."""
    try:
        return call()
    except FieldError:
        raise
    except ImfuseError as exc:
        raise FieldError(field, str(exc)) from None


def decode_upload(field: str, data: bytes, filename: str, limits: ImageLimits) -> np.ndarray:
    """Float32 RGB of an uploaded file, or FieldError with the CLI's message for it."""
    return for_field(field, lambda: decode_image(data, filename or f"<{field}>", limits).rgb)


def parse_float(field: str, text: str | None, default: float, low: float, high: float) -> float:
    if text in (None, ""):
        return default
    try:
        value = float(text)
    except ValueError:
        raise FieldError(field, f"{field} must be a number, got {text!r}") from None
    if not np.isfinite(value) or not low <= value <= high:
        raise FieldError(field, f"{field} must be between {low:g} and {high:g}, got {text}")
    return value


def parse_int(field: str, text: str | None, default: int | None, low: int, high: int) -> int | None:
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except ValueError:
        raise FieldError(field, f"{field} must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise FieldError(field, f"{field} must be between {low} and {high}, got {value}")
    return value


def processing_size(hw: tuple[int, int], longer_side: int | None) -> tuple[int, int]:
    """(H, W) with the longer side set to `longer_side` (None: as uploaded), aspect kept."""
    h, w = hw
    if not longer_side or max(h, w) == longer_side:
        return h, w
    scale = longer_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def build_request(
    content_rgb: np.ndarray,
    styles: list[tuple[np.ndarray, float]],
    *,
    strength: float,
    preserve_color: bool,
    mask_file: tuple[bytes, str] | None,
    longer_side: int | None,
    limits: ImageLimits,
) -> StylizeRequest:
    """Resize the content to the size asked for and fit the mask to it (bilinear)."""
    if not styles:
        raise FieldError("style", "give a style image: pick one from the gallery or upload one")
    total = sum(w for _, w in styles)
    if total <= 0:
        raise FieldError("style", "style weights must have a positive sum")
    hw = processing_size(content_rgb.shape[:2], longer_side)
    content = content_rgb if hw == content_rgb.shape[:2] else resize_to(content_rgb, hw)
    mask = None
    if mask_file is not None:
        data, name = mask_file
        decode_upload("mask", data, name, limits)  # the CLI's message, naming the file
        mask = for_field("mask", lambda: load_mask(data, hw, limits))
    return StylizeRequest(to_uint8(content), styles, strength, preserve_color, mask)
