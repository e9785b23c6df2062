"""In-graph header checks (imfuse.serving_signatures) and the server-side ones (serving.limits).

Both read declared sizes from headers before decoding; they must agree with PIL on real
files of every format the graph decodes, and refuse crafted headers that declare a huge
canvas in a few bytes (BMP and WebP included).
"""

import io
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from imfuse import serving_signatures
from imfuse.serving.limits import declared_size
from imfuse.serving.status import StatusError

SIZE = (37, 21)  # width, height: distinct and not multiples of 8


def _encode(fmt: str, **kwargs) -> bytes:
    rgb = np.random.default_rng(0).integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


REAL = {
    "png": _encode("PNG"),
    "jpeg": _encode("JPEG", quality=90),
    "gif": _encode("GIF"),
    "bmp": _encode("BMP"),
    "webp-lossy": _encode("WEBP", quality=80),
    "webp-lossless": _encode("WEBP", lossless=True),
}


def _bmp_bomb(width: int, height: int) -> bytes:
    """A 54-byte BMP whose BITMAPINFOHEADER claims width x height (height may be negative)."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 54) + info


def _webp_vp8x_bomb(width: int, height: int) -> bytes:
    chunk = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (
        height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def _webp_vp8l_bomb(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    chunk = b"VP8L" + struct.pack("<I", 5) + b"\x2f" + struct.pack("<I", bits)
    return b"RIFF" + struct.pack("<I", 4 + len(chunk) + 1) + b"WEBP" + chunk + b"\x00"


def _graph_pixels(data: bytes) -> int:
    return int(serving_signatures.declared_pixels(tf.constant(data)).numpy())


@pytest.mark.parametrize("name", sorted(REAL))
def test_declared_sizes_agree_with_pil(name):
    data = REAL[name]
    assert Image.open(io.BytesIO(data)).size == SIZE
    fmt, width, height = declared_size(data)
    assert (width, height) == SIZE and fmt in name.upper()
    assert _graph_pixels(data) == SIZE[0] * SIZE[1]


def test_top_down_bmp_and_unknown_formats():
    assert declared_size(_bmp_bomb(100, -50))[1:] == (100, 50)
    assert _graph_pixels(_bmp_bomb(100, -50)) == 5000
    assert declared_size(b"plain text, not an image") is None
    assert _graph_pixels(b"plain text, not an image") == 0
    assert _graph_pixels(b"") == 0


@pytest.mark.parametrize(
    "bomb, pixels",
    [(_bmp_bomb(60000, 60000), 60000 * 60000), (_webp_vp8x_bomb(16000, 16000), 16000 * 16000),
     (_webp_vp8l_bomb(16000, 16000), 16000 * 16000)],
    ids=["bmp", "webp-vp8x", "webp-vp8l"],
)
def test_bmp_and_webp_bombs_are_refused_before_decoding(bomb, pixels):
    assert len(bomb) < 64
    assert declared_size(bomb)[1] * declared_size(bomb)[2] == pixels
    assert _graph_pixels(bomb) == pixels
    with pytest.raises(tf.errors.InvalidArgumentError, match="pixel limit"):
        serving_signatures.decode_rgb(tf.constant(bomb), "content_image")


def test_real_bmp_and_webp_still_decode():
    for name in ("bmp", "webp-lossless"):
        image = serving_signatures.decode_rgb(tf.constant(REAL[name]), "content_image")
        assert tuple(image.shape) == (SIZE[1], SIZE[0], 3)


def test_unsupported_bytes_error_is_text_not_raw_bytes():
    """Raw non-UTF-8 bytes in the Assert message made TF raise UnicodeDecodeError instead."""
    decode = tf.function(lambda x: serving_signatures.decode_rgb(x, "content_image"),
                         input_signature=[tf.TensorSpec([], tf.string)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="not an image") as info:
        decode(tf.constant(bytes(range(128, 160))))
    assert "128 129 130" in info.value.message


@pytest.mark.parametrize(
    "data, text",
    [(b"\x89PNG\r\n\x1a\nshort", "PNG"), (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "JPEG"),
     (b"GIF89a\x01", "GIF"), (b"BM\x00\x00", "BMP"), (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "WebP")],
)
def test_truncated_headers_of_known_formats_are_invalid(data, text):
    with pytest.raises(StatusError, match=text) as info:
        declared_size(data)
    assert info.value.code.name == "INVALID_ARGUMENT"
