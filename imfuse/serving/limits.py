"""Per-request budgets, checked from image headers before anything is decoded.

A request is cheap to send and can be expensive to serve: one small file can declare a
60000x60000 canvas, and one request can carry many images. Every non-empty DT_STRING
input element counts as one image (the serving contract's string inputs are all encoded
images); its declared size is read from the header here (PNG, JPEG, GIF, BMP, WebP, the
formats the graphs decode), so an over-budget request is refused before the graph
allocates anything. Formats not recognised here are left for the model to reject.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import grpc
import numpy as np

from imfuse.errors import ConfigError
from imfuse.serving.defaults import MAX_IMAGES_PER_REQUEST as DEFAULT_MAX_IMAGES
from imfuse.serving.defaults import MAX_PIXELS_PER_REQUEST as DEFAULT_MAX_PIXELS
from imfuse.serving.status import StatusError, invalid_argument

# JPEG frame headers sit after a few APPn/DQT/DHT segments; a file needing more
# segments than this before its SOF is refused rather than scanned at length.
_MAX_JPEG_SEGMENTS = 1024
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE_MARKERS = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})


@dataclass(frozen=True)
class RequestLimits:
    """What one Predict request may ask for (flags of `imfuse serve`).

    `max_images` and `max_pixels` bound decode work and memory; `max_tensor_elements`
    (numeric) and `max_string_elements` bound what the wire tensors expand to before
    any of them is built (see tensors.check_tensor_proto).
    """

    max_images: int = DEFAULT_MAX_IMAGES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_tensor_elements: int = 1 << 22
    max_string_elements: int = 4096

    def __post_init__(self) -> None:
        for name in ("max_images", "max_pixels", "max_tensor_elements", "max_string_elements"):
            if getattr(self, name) < 1:
                raise ConfigError(f"request limit {name} must be >= 1, got {getattr(self, name)}")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i, n = 2, len(data)
    for _ in range(_MAX_JPEG_SEGMENTS):
        if i + 4 > n or data[i] != 0xFF:
            break
        if data[i + 1] == 0xFF:  # a fill byte before the marker
            i += 1
            continue
        marker = data[i + 1]
        if marker in _STANDALONE_MARKERS:
            i += 2
            continue
        if marker in _SOF_MARKERS:
            if i + 9 > n:
                break
            height, width = struct.unpack_from(">HH", data, i + 5)
            return width, height
        if marker == 0xD9:  # end of image before any frame
            break
        (length,) = struct.unpack_from(">H", data, i + 2)
        if length < 2:
            break
        i += 2 + length
    raise invalid_argument("JPEG header declares no frame size (truncated or corrupt image)")


def _webp_size(data: bytes) -> tuple[int, int]:
    kind = data[12:16]
    if kind == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (bits,) = struct.unpack_from("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    raise invalid_argument("WebP header declares no canvas size (truncated or corrupt image)")


def _bmp_size(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise invalid_argument("BMP header is truncated")
    (dib,) = struct.unpack_from("<I", data, 14)
    if dib == 12:  # BITMAPCOREHEADER: unsigned 16-bit sides
        return struct.unpack_from("<HH", data, 18)
    width, height = struct.unpack_from("<ii", data, 18)
    if width < 0:
        raise invalid_argument("BMP header declares a negative width")
    return width, abs(height)  # negative height: rows stored top-down


def declared_size(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) from the header; None for formats not known here.

    Reads only the first bytes (a JPEG's segment headers up to its frame header); a
    recognised format with an unreadable header is INVALID_ARGUMENT.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise invalid_argument("PNG header is truncated or does not start with IHDR")
        width, height = struct.unpack_from(">II", data, 16)
        return "PNG", width, height
    if data[:3] == b"\xff\xd8\xff":
        return ("JPEG", *_jpeg_size(data))
    if data[:6] in (b"GIF87a", b"GIF89a"):
        if len(data) < 10:
            raise invalid_argument("GIF header is truncated")
        return ("GIF", *struct.unpack_from("<HH", data, 6))
    if data[:2] == b"BM":
        return ("BMP", *_bmp_size(data))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ("WEBP", *_webp_size(data))
    return None


def check_image_budget(inputs: dict[str, np.ndarray], limits: RequestLimits) -> None:
    """Refuse a request whose images are too many or declare too many pixels in total.

    Over budget -> RESOURCE_EXHAUSTED (the request is too large for this server);
    unreadable headers of known formats -> INVALID_ARGUMENT.
    """
    images, pixels = 0, 0
    for name in sorted(inputs):
        arr = inputs[name]
        if arr.dtype != object:
            continue
        for value in arr.flat:
            if not value:
                continue  # empty bytes mean "not given" (e.g. no mask)
            images += 1
            if images > limits.max_images:
                raise StatusError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"request has more than {limits.max_images} images (--max-images-per-request)",
                )
            data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            try:
                size = declared_size(data)
            except StatusError as exc:
                raise invalid_argument(f"input '{name}': {exc.message}") from None
            if size is None:
                continue
            fmt, width, height = size
            pixels += width * height
            if pixels > limits.max_pixels:
                raise StatusError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"images in the request declare more than {limits.max_pixels} pixels in total "
                    f"(input '{name}' is a {width}x{height} {fmt}; --max-pixels-per-request)",
                )
