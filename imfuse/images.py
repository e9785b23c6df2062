"""Image I/O: read, validate, decode, resize and save images safely.

Every image that enters imfuse (CLI, Beam ingest, serving) goes through here so the
same rules apply everywhere: a byte cap, a decoder allow-list (PNG, JPEG, WebP, BMP,
GIF, TIFF: Pillow's other parsers such as EPS/PSD/FITS are never reached), a
decompression-bomb guard on the *declared* size before pixels are decoded, a minimum
side, EXIF orientation, the first frame of animations, and conversion of any Pillow mode
(including 16-bit and float) to RGB in [0, 1]. URLs are fetched by `imfuse.fetch`
(public addresses only unless allowed, total deadline). Failures raise `ImageError`
naming the source and the reason.
"""

from __future__ import annotations

import io
import os
import urllib.parse
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from imfuse.color import LUMA_WEIGHTS
from imfuse.errors import ImageError
from imfuse.fetch import fetch_url
from imfuse.fsutil import atomic_path

__all__ = [
    "ImageLimits",
    "DEFAULT_LIMITS",
    "DecodedImage",
    "read_source_bytes",
    "open_validated",
    "decode_image",
    "load_image",
    "load_mask",
    "resize_shorter",
    "resize_to",
    "resize_pil_shorter",
    "flatten_alpha",
    "to_uint8",
    "encode_png",
    "encode_jpeg",
    "save_image",
]

# Truncated files must fail loudly, never decode half an image silently.
ImageFile.LOAD_TRUNCATED_IMAGES = False

_HIGH_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SAVE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}


@dataclass(frozen=True)
class ImageLimits:
    """Safety limits applied to every image; the defaults suit photos up to ~64 MP.

    `url_timeout_s` bounds connecting and each wait for data; `url_deadline_s` bounds the
    whole download (all redirects), so a server trickling bytes cannot hold a worker.
    `allow_private` / `allowed_networks` (CIDRs) trust non-public addresses; see
    `imfuse.fetch.ALLOW_PRIVATE_ENV` for the environment variable.
    """

    max_pixels: int = 64_000_000
    min_side: int = 16
    max_bytes: int = 64 * 1024 * 1024
    url_timeout_s: float = 20.0
    allowed_schemes: tuple[str, ...] = ("http", "https")
    url_deadline_s: float = 30.0
    max_redirects: int = 5
    allow_private: bool = False
    allowed_networks: tuple[str, ...] = ()
    allowed_formats: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")


DEFAULT_LIMITS = ImageLimits()


@dataclass
class DecodedImage:
    """A decoded image: float32 RGB (H, W, 3) in [0, 1] plus optional alpha (H, W)."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    source: str
    format: str


# --------------------------------------------------------------------------- reading


def _is_url(text: str) -> bool:
    # One-letter schemes are Windows drive letters ("C:\\x.jpg"), not URLs.
    return len(urllib.parse.urlparse(text).scheme) > 1 and "://" in text


def read_source_bytes(
    src: str | os.PathLike | bytes, limits: ImageLimits = DEFAULT_LIMITS
) -> tuple[bytes, str]:
    """Return (data, source_name) for a path, raw bytes or an allowed URL, capped in size."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if len(data) > limits.max_bytes:
            raise ImageError(
                f"<bytes>: {len(data)} bytes is over the {limits.max_bytes}-byte limit"
            )
        return data, "<bytes>"
    text = os.fsdecode(src)  # str, also for an os.PathLike returning bytes
    if _is_url(text):
        return fetch_url(text, limits), text
    return _read_file(Path(text), limits), text


def _read_file(path: Path, limits: ImageLimits) -> bytes:
    name = str(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot read file ({exc.strerror or exc})") from None
    if path.is_dir():
        raise ImageError(f"{name}: is a directory, not an image file")
    if st.st_size > limits.max_bytes:
        raise ImageError(
            f"{name}: file is {st.st_size} bytes, over the {limits.max_bytes}-byte limit"
        )
    try:
        with open(path, "rb") as fh:
            data = fh.read(limits.max_bytes + 1)
    except OSError as exc:
        raise ImageError(f"{name}: cannot read file ({exc.strerror or exc})") from None
    if len(data) > limits.max_bytes:
        raise ImageError(f"{name}: file is over the {limits.max_bytes}-byte limit")
    return data


# -------------------------------------------------------------------------- decoding


def _looks_like_text(data: bytes) -> bool:
    head = data[:512].lstrip()
    if head.startswith((b"<", b"{", b"[")):
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(b >= 9 for b in head)


def _is_truncation(exc: BaseException) -> bool:
    return "truncat" in str(exc).lower() or isinstance(exc, EOFError)


def _sniff_format(data: bytes) -> str | None:
    """Name the Pillow format whose magic bytes match, running only its prefix check."""
    Image.init()
    prefix = data[:16]
    for name, (_factory, accept) in Image.OPEN.items():
        try:
            if accept is not None and accept(prefix):
                return name
        except Exception:  # noqa: BLE001 - some checks assume a longer prefix
            continue
    return None


def _unidentified(data: bytes, source: str, limits: ImageLimits) -> ImageError:
    """Error for data no allowed decoder took: a refused format, or not an image at all."""
    fmt = _sniff_format(data)
    if fmt is not None and fmt not in {f.upper() for f in limits.allowed_formats}:
        allowed = ", ".join(limits.allowed_formats)
        return ImageError(f"{source}: not an accepted image format (looks like {fmt}; allowed: {allowed})")
    kind = "text/SVG or other non-raster data" if _looks_like_text(data) else "unrecognised data"
    return ImageError(f"{source}: not an image ({kind})")


def _open_allowed(data: bytes, limits: ImageLimits) -> Image.Image:
    """Image.open restricted to the allowed decoders (Pillow tries no other parser)."""
    return Image.open(io.BytesIO(data), formats=list(limits.allowed_formats))


def _open_checked(data: bytes, source: str, limits: ImageLimits) -> Image.Image:
    """Open, check the declared size, verify, reload, take frame 0 and apply EXIF."""
    if not data:
        raise ImageError(f"{source}: empty file, not an image")
    if len(data) > limits.max_bytes:
        raise ImageError(f"{source}: {len(data)} bytes is over the {limits.max_bytes}-byte limit")
    with warnings.catch_warnings():
        # We check the declared size ourselves; PIL's own guard only fires at 2x its limit.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            probe = _open_allowed(data, limits)
        except Image.DecompressionBombError:
            raise ImageError(
                f"{source}: declared size is too large (decompression bomb guard, "
                f"limit {limits.max_pixels} pixels)"
            ) from None
        except UnidentifiedImageError:
            raise _unidentified(data, source, limits) from None
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types on bad headers
            reason = "truncated" if _is_truncation(exc) else "not an image or corrupt header"
            raise ImageError(f"{source}: {reason} ({exc})") from None
        width, height = probe.size
        fmt = probe.format or "unknown"
        if width * height > limits.max_pixels:
            raise ImageError(
                f"{source}: declared size {width}x{height} = {width * height} pixels is over "
                f"the {limits.max_pixels}-pixel limit (decompression bomb guard)"
            )
        if min(width, height) < limits.min_side:
            raise ImageError(
                f"{source}: too small ({width}x{height}); the shorter side must be at least "
                f"{limits.min_side} px"
            )
        try:
            probe.verify()
        except Exception as exc:  # noqa: BLE001
            reason = "truncated" if _is_truncation(exc) else "corrupt"
            raise ImageError(f"{source}: {reason} {fmt} data ({exc})") from None
        try:
            im = _open_allowed(data, limits)
            im.seek(0)  # first frame of animations
            im.load()
            im = ImageOps.exif_transpose(im)
        except Image.DecompressionBombError:
            raise ImageError(f"{source}: too large to decode (decompression bomb guard)") from None
        except OSError as exc:
            reason = "truncated" if _is_truncation(exc) else "corrupt"
            raise ImageError(f"{source}: {reason} {fmt} data ({exc})") from None
        except Exception as exc:  # noqa: BLE001
            raise ImageError(f"{source}: cannot decode {fmt} data ({exc})") from None
    im.format = fmt
    return im


def _high_bit_to_float(im: Image.Image) -> np.ndarray:
    """16-bit/32-bit/float single-channel images -> float32 (H, W) in [0, 1]."""
    arr = np.asarray(im)
    if im.mode.startswith("I;16"):
        return (arr.astype(np.float32) / 65535.0).clip(0.0, 1.0)
    arr = arr.astype(np.float64)
    peak = np.nanmax(arr) if im.mode == "F" and arr.size else np.inf
    # float data in [0, 1] or [0, 255]; "I" is how Pillow holds 16-bit PNG/TIFF samples
    scale = 1.0 if peak <= 1.0 else 255.0 if peak <= 255.0 else 65535.0
    return np.nan_to_num(arr / scale).clip(0.0, 1.0).astype(np.float32)


def _to_8bit(im: Image.Image) -> Image.Image:
    """Any 8-bit-or-less mode -> "RGB", or "RGBA" when some pixel is not fully opaque."""
    if im.mode == "P" or "transparency" in im.info or im.mode in _ALPHA_MODES:
        im = im.convert("RGBA")
        low, _high = im.getchannel("A").getextrema()
        return im.convert("RGB") if low >= 255 else im  # fully opaque: no transparency
    return im if im.mode == "RGB" else im.convert("RGB")


def _to_float(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Any Pillow mode -> (rgb float32 (H, W, 3), alpha float32 (H, W) or None)."""
    if im.mode in _HIGH_BIT_MODES:
        gray = _high_bit_to_float(im)
        return np.repeat(gray[:, :, None], 3, axis=2), None
    im = _to_8bit(im)
    arr = np.asarray(im, dtype=np.float32) / 255.0
    if im.mode == "RGBA":
        return np.ascontiguousarray(arr[:, :, :3]), np.ascontiguousarray(arr[:, :, 3])
    return arr, None


def open_validated(
    data: bytes, source: str, limits: ImageLimits = DEFAULT_LIMITS
) -> Image.Image:
    """Validated Pillow image in mode "RGB", or "RGBA" when the source has transparency."""
    im = _open_checked(data, source, limits)
    out = Image.fromarray(to_uint8(_to_float(im)[0]), "RGB") if im.mode in _HIGH_BIT_MODES else _to_8bit(im)
    out.format = im.format
    return out


def decode_image(
    data: bytes, source: str = "<bytes>", limits: ImageLimits = DEFAULT_LIMITS
) -> DecodedImage:
    """Decode bytes to float RGB in [0, 1] keeping full precision of 16-bit sources."""
    im = _open_checked(data, source, limits)
    rgb, alpha = _to_float(im)
    return DecodedImage(rgb=rgb, alpha=alpha, source=source, format=im.format)


def load_image(
    src: str | os.PathLike | bytes, limits: ImageLimits = DEFAULT_LIMITS
) -> DecodedImage:
    """Read a path/URL/bytes and decode it (see `decode_image`)."""
    data, name = read_source_bytes(src, limits)
    return decode_image(data, name, limits)


def load_mask(
    src: str | os.PathLike | bytes,
    size_hw: tuple[int, int],
    limits: ImageLimits = DEFAULT_LIMITS,
) -> np.ndarray:
    """Mask float32 (H, W) in [0, 1]: the alpha channel if present, else luminance."""
    img = load_image(src, limits)
    mask = img.alpha if img.alpha is not None else img.rgb @ np.array(LUMA_WEIGHTS, dtype=np.float32)
    return _resize_channel(mask.astype(np.float32), size_hw, Image.Resampling.BILINEAR)


# -------------------------------------------------------------------------- resizing


def _check_rgb(rgb: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(f"{what}: expected an (H, W, 3) RGB array, got shape {arr.shape}")
    return arr.astype(np.float32, copy=False)


def _resize_channel(
    chan: np.ndarray, size_hw: tuple[int, int], resample: Image.Resampling
) -> np.ndarray:
    h, w = int(size_hw[0]), int(size_hw[1])
    if chan.shape == (h, w):
        return chan.astype(np.float32, copy=True)
    out = Image.fromarray(chan.astype(np.float32), "F").resize((w, h), resample)
    return np.asarray(out, dtype=np.float32).clip(0.0, 1.0)


def resize_to(rgb: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize float RGB to exactly (H, W); antialiased (Pillow filters scale on downsizing)."""
    arr = _check_rgb(rgb, "resize_to")
    h, w = int(size_hw[0]), int(size_hw[1])
    if h < 1 or w < 1:
        raise ImageError(f"resize_to: target size {size_hw} must be positive")
    chans = [_resize_channel(arr[:, :, c], (h, w), Image.Resampling.LANCZOS) for c in range(3)]
    return np.stack(chans, axis=2)


def _shorter_side_size(width: int, height: int, size: int) -> tuple[int, int]:
    if size < 1:
        raise ImageError(f"resize size must be positive, got {size}")
    if width <= height:
        return size, max(1, round(height * size / width))
    return max(1, round(width * size / height)), size


def resize_shorter(rgb: np.ndarray, size: int) -> np.ndarray:
    """Scale so the shorter side equals `size`, keeping the aspect ratio."""
    arr = _check_rgb(rgb, "resize_shorter")
    new_w, new_h = _shorter_side_size(arr.shape[1], arr.shape[0], size)
    return resize_to(arr, (new_h, new_w))


def resize_pil_shorter(im: Image.Image, size: int) -> Image.Image:
    """uint8 Pillow version of `resize_shorter` (fast path for bulk ingest)."""
    new_w, new_h = _shorter_side_size(im.width, im.height, size)
    if (new_w, new_h) == im.size:
        return im.copy()
    return im.resize((new_w, new_h), Image.Resampling.LANCZOS, reducing_gap=3.0)


def flatten_alpha(im: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Composite an RGBA image over a solid background; RGB images pass through."""
    if im.mode != "RGBA":
        return im.convert("RGB") if im.mode != "RGB" else im
    base = Image.new("RGB", im.size, background)
    base.paste(im, mask=im.getchannel("A"))
    return base


# -------------------------------------------------------------------------- encoding


def to_float32(arr: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [0, 1]; float images as float32 (no copy when they already are)."""
    arr = np.asarray(arr)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) * np.float32(1.0 / 255.0)
    return arr.astype(np.float32, copy=False)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float [0, 1] -> uint8 [0, 255] with rounding (NaN -> 0)."""
    arr = np.nan_to_num(np.asarray(rgb, dtype=np.float32), nan=0.0)
    return (arr.clip(0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _to_pil(rgb: np.ndarray) -> Image.Image:
    """Float [0, 1] or uint8 arrays (uint8 as they are: no float copy of a large image)."""
    arr = np.asarray(rgb)
    if arr.ndim == 2:
        return Image.fromarray(to_uint8(arr), "L")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        pixels = arr if arr.dtype == np.uint8 else to_uint8(arr)
        return Image.fromarray(pixels, "RGB" if arr.shape[2] == 3 else "RGBA")
    raise ImageError(f"cannot encode an array of shape {arr.shape} as an image")


def encode_pil(im: Image.Image, image_format: str = "png", compress_level: int = 1, quality: int = 95) -> bytes:
    """PNG (fast compression by default) or JPEG bytes of a PIL image."""
    buf = io.BytesIO()
    if image_format == "png":
        im.save(buf, format="PNG", compress_level=compress_level)
    else:
        im.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def encode_png(rgb: np.ndarray, compress_level: int = 6) -> bytes:
    """Lossless PNG bytes of a float [0, 1] image."""
    return encode_pil(_to_pil(rgb), "png", compress_level)


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of a float [0, 1] RGB image (alpha is dropped)."""
    im = _to_pil(rgb)
    return encode_pil(flatten_alpha(im) if im.mode == "RGBA" else im, "jpeg", quality=quality)


def save_image(rgb: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an image atomically (tmp file + os.replace); format from the extension."""
    target = Path(path)
    fmt = _SAVE_FORMATS.get(target.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(_SAVE_FORMATS))
        raise ImageError(f"{target}: unknown image extension '{target.suffix}' (use one of {known})")
    im = _to_pil(rgb)
    if fmt in ("JPEG", "BMP") and im.mode == "RGBA":
        im = flatten_alpha(im)
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            im.save(tmp, format=fmt, **options)
    except OSError as exc:
        raise ImageError(f"{target}: cannot write image ({exc.strerror or exc})") from None
    return target
