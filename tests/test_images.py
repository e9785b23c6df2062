"""Tests for imfuse.images: bad inputs refused, awkward inputs decoded, URLs, saving."""

from __future__ import annotations

import http.server
import io
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import bomb_png, make_bad_images, make_good_images
from imfuse.errors import ImageError
from imfuse.fetch import ALLOW_PRIVATE_ENV
from imfuse.images import (
    DEFAULT_LIMITS,
    ImageLimits,
    decode_image,
    encode_jpeg,
    encode_png,
    load_image,
    load_mask,
    open_validated,
    read_source_bytes,
    resize_shorter,
    resize_to,
    save_image,
    to_uint8,
)

GOOD = make_good_images()

BAD_REASONS = {
    "empty.jpg": "empty",
    "truncated.jpg": "truncated",
    "text.jpg": "not an image",
    "random.png": "not an image",
    "bad_crc.png": "corrupt",
    "bomb.png": "too large",
    "drawing.svg": "not an image",
    "tiny.png": "too small",
}


@pytest.mark.parametrize("name", sorted(BAD_REASONS))
def test_bad_inputs_raise_image_error_naming_source_and_reason(image_corpus, name):
    path = image_corpus["bad"][name]
    with pytest.raises(ImageError) as info:
        load_image(path)
    message = str(info.value)
    assert str(path) in message
    assert BAD_REASONS[name] in message


def test_truncated_tail_is_refused_not_half_decoded():
    data = GOOD["pic.tiff"][0]
    jpeg = encode_jpeg(np.random.default_rng(0).random((64, 64, 3)))
    for cut in (len(jpeg) - 50, len(jpeg) * 3 // 4):
        with pytest.raises(ImageError, match="truncated|corrupt"):
            decode_image(jpeg[:cut], "cut.jpg")
    with pytest.raises(ImageError):
        decode_image(data[: len(data) - 200], "cut.tiff")


def test_declared_size_checked_before_decoding_with_custom_limit():
    # 300x300 = 90k pixels: under PIL's own guard, over ours.
    with pytest.raises(ImageError, match="declared size 300x300"):
        decode_image(bomb_png(300, 300), "b.png", ImageLimits(max_pixels=50_000))
    with pytest.raises(ImageError, match="too small"):
        decode_image(encode_png(np.zeros((20, 40, 3))), "s.png", ImageLimits(min_side=32))


def test_byte_cap_on_bytes_and_files(tmp_path):
    data = encode_png(np.zeros((32, 32, 3)))
    small = ImageLimits(max_bytes=len(data) - 1)
    with pytest.raises(ImageError, match="limit"):
        read_source_bytes(data, small)
    path = tmp_path / "x.png"
    path.write_bytes(data)
    with pytest.raises(ImageError, match="limit"):
        load_image(path, small)
    assert read_source_bytes(path)[0] == data


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_awkward_valid_images_decode(image_corpus, name):
    _, expect = GOOD[name]
    img = load_image(image_corpus["good"][name])
    assert img.rgb.dtype == np.float32 and img.rgb.ndim == 3 and img.rgb.shape[2] == 3
    assert 0.0 <= img.rgb.min() and img.rgb.max() <= 1.0
    assert img.source == str(image_corpus["good"][name])
    if "hw" in expect:
        assert img.rgb.shape[:2] == expect["hw"]
    if "exact" in expect:
        np.testing.assert_array_equal(to_uint8(img.rgb), expect["exact"])
    if "mean" in expect:
        np.testing.assert_allclose(img.rgb.reshape(-1, 3).mean(0), expect["mean"], atol=0.02)
    if "alpha_left" in expect:
        assert img.alpha is not None and img.alpha.dtype == np.float32
        w = img.alpha.shape[1]
        assert img.alpha[:, : w // 2 - 1].max() == pytest.approx(expect["alpha_left"])
        assert img.alpha[:, w // 2 + 1 :].min() == pytest.approx(1.0)
    else:
        assert img.alpha is None
    if "right" in expect:
        w = img.rgb.shape[1]
        np.testing.assert_allclose(img.rgb[:, w // 2 + 1 :].reshape(-1, 3).mean(0), expect["right"])
    if "top" in expect:
        np.testing.assert_allclose(img.rgb[:5].reshape(-1, 3).mean(0), expect["top"], atol=0.05)
        np.testing.assert_allclose(img.rgb[-5:].reshape(-1, 3).mean(0), expect["bottom"], atol=0.05)


def test_formats_reported_from_content_not_extension():
    assert decode_image(GOOD["png_named.jpg"][0]).format == "PNG"
    assert decode_image(GOOD["pic.webp"][0]).format == "WEBP"
    assert decode_image(GOOD["anim.gif"][0]).format == "GIF"


def _fits(width: int = 32, height: int = 24) -> bytes:
    """A minimal 8-bit FITS file (astronomy format Pillow would otherwise decode)."""
    cards = ["SIMPLE  =                    T", "BITPIX  =                    8", "NAXIS   =                    2",
             f"NAXIS1  = {width:20d}", f"NAXIS2  = {height:20d}", "END"]
    header = "".join(card.ljust(80) for card in cards).ljust(2880).encode()
    return header + bytes(width * height).ljust(2880, b"\0")


def _psd(width: int = 32, height: int = 24) -> bytes:
    """A minimal raw RGB Photoshop file."""
    import struct

    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)
    return header + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0) + bytes(width * height * 3)


def _pillow_saved(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 20, 30)).save(buf, format=fmt)
    return buf.getvalue()


REFUSED_FORMATS = {
    "FITS": _fits,
    "PSD": _psd,
    "EPS": lambda: _pillow_saved("EPS"),
    "PPM": lambda: _pillow_saved("PPM"),
    "ICO": lambda: _pillow_saved("ICO"),
    "PCX": lambda: _pillow_saved("PCX"),
    "SGI": lambda: _pillow_saved("SGI"),
}


@pytest.mark.parametrize("fmt", sorted(REFUSED_FORMATS))
def test_decoders_outside_the_allow_list_are_refused(fmt, tmp_path):
    data = REFUSED_FORMATS[fmt]()
    with pytest.raises(ImageError) as info:
        decode_image(data, f"x.{fmt.lower()}")
    message = str(info.value)
    assert message.startswith(f"x.{fmt.lower()}: not an accepted image format (looks like {fmt}; allowed: PNG, JPEG")
    assert "\n" not in message
    path = tmp_path / "named.png"  # local files get the same rule, whatever the extension
    path.write_bytes(data)
    with pytest.raises(ImageError, match=re.escape(f"{path}: not an accepted image format (looks like {fmt};")):
        load_image(path)
    with pytest.raises(ImageError, match="not an accepted image format"):
        open_validated(data, "x")


def test_formats_without_magic_are_refused_too():
    # TGA has no magic number: its bytes may look like another format, or like nothing.
    with pytest.raises(ImageError, match="x.tga: not an (accepted image format|image)"):
        decode_image(_pillow_saved("TGA"), "x.tga")


def test_allow_list_can_be_widened_explicitly():
    limits = ImageLimits(allowed_formats=DEFAULT_LIMITS.allowed_formats + ("PPM",))
    img = decode_image(_pillow_saved("PPM"), "x.ppm", limits)
    assert img.format == "PPM" and img.rgb.shape == (24, 32, 3)
    with pytest.raises(ImageError, match="looks like PNG; allowed: JPEG"):
        decode_image(GOOD["gray.png"][0], "g.png", ImageLimits(allowed_formats=("JPEG",)))


def test_sixteen_bit_keeps_precision_beyond_8_bits():
    ramp = (np.arange(64 * 64, dtype=np.uint32) * 16).reshape(64, 64).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, format="PNG")
    img = decode_image(buf.getvalue(), "ramp.png")
    np.testing.assert_allclose(img.rgb[:, :, 0], ramp / 65535.0, atol=1e-6)
    assert img.rgb.max() > 0.99  # scaled, not clipped at 255
    pil = open_validated(buf.getvalue(), "ramp.png")
    assert pil.mode == "RGB" and np.asarray(pil)[-1, -1, 0] == 255


@pytest.mark.parametrize(
    "mode,value",
    [("1", 1), ("L", 200), ("LA", (200, 128)), ("RGBA", (10, 20, 30, 40)), ("YCbCr", (100, 128, 128)),
     ("I", 30000), ("F", 0.25), ("P", 3), ("RGB", (1, 2, 3))],
)
def test_open_validated_converts_any_mode_to_rgb_or_rgba(mode, value):
    im = Image.new(mode, (24, 20), value)
    buf = io.BytesIO()
    fmt = "TIFF" if mode in ("I", "F", "YCbCr", "LA") else "PNG"
    if mode == "YCbCr":
        fmt = "JPEG"
    im.save(buf, format=fmt)
    out = open_validated(buf.getvalue(), f"x.{fmt.lower()}")
    expected_mode = "RGBA" if mode in ("LA", "RGBA") else "RGB"
    assert out.mode == expected_mode and out.size == (24, 20)
    decoded = decode_image(buf.getvalue())
    assert (decoded.alpha is not None) == (expected_mode == "RGBA")
    if mode == "F":
        np.testing.assert_allclose(decoded.rgb, 0.25, atol=1e-6)
    if mode == "I":
        np.testing.assert_allclose(decoded.rgb, 30000 / 65535, atol=1e-6)


def test_real_image_loads(shared_data):
    path = sorted((shared_data / "content").glob("*.jpg"))[0]
    img = load_image(path)
    assert img.format == "JPEG" and min(img.rgb.shape[:2]) >= 64
    assert 0.05 < img.rgb.mean() < 0.95


# ------------------------------------------------------------------------------- URLs


class _Handler(http.server.BaseHTTPRequestHandler):
    payload = b""

    def do_GET(self):  # noqa: N802 - http.server API
        if self.path == "/ok.png":
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.payload)))
            self.end_headers()
            self.wfile.write(self.payload)
        elif self.path == "/stream":  # no Content-Length: the cap must hold while streaming
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(64):
                    self.wfile.write(b"\0" * 4096)
            except OSError:
                pass  # the client hung up at its byte cap, as it should
        elif self.path in ("/redirect-file", "/redirect-ftp"):
            self.send_response(302)
            target = "file:///etc/passwd" if self.path.endswith("file") else "ftp://example.com/x"
            self.send_header("Location", target)
            self.end_headers()
        else:
            self.send_error(404, "Not Found")

    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def _no_trusted_networks(monkeypatch):
    """The developer's own environment must not loosen the address policy under test."""
    monkeypatch.delenv(ALLOW_PRIVATE_ENV, raising=False)


@pytest.fixture(scope="module")
def http_url():
    _Handler.payload = encode_png(np.full((32, 32, 3), 0.5, np.float32))
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_loopback_url_refused_by_default(http_url):
    url = f"{http_url}/ok.png"
    with pytest.raises(ImageError) as info:
        load_image(url)
    message = str(info.value)
    assert message.startswith(f"refusing to fetch {url}: address 127.0.0.1 is loopback")
    assert ALLOW_PRIVATE_ENV in message and "\n" not in message


def test_url_ok(http_url, monkeypatch):
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")
    img = load_image(f"{http_url}/ok.png")
    assert img.rgb.shape == (32, 32, 3) and img.source == f"{http_url}/ok.png"
    np.testing.assert_allclose(img.rgb, 128 / 255, atol=1e-6)


def test_url_ok_with_allow_private_limits(http_url):
    img = load_image(f"{http_url}/ok.png", ImageLimits(allow_private=True))
    np.testing.assert_allclose(img.rgb, 128 / 255, atol=1e-6)
    img = load_image(f"{http_url}/ok.png", ImageLimits(allowed_networks=("127.0.0.0/8",)))
    assert img.rgb.shape == (32, 32, 3)


def test_url_errors(http_url, monkeypatch):
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")
    with pytest.raises(ImageError, match="HTTP 404"):
        load_image(f"{http_url}/missing.jpg")
    with pytest.raises(ImageError, match="byte limit"):
        load_image(f"{http_url}/ok.png", ImageLimits(max_bytes=len(_Handler.payload) - 1))
    with pytest.raises(ImageError, match="exceeded"):
        read_source_bytes(f"{http_url}/stream", ImageLimits(max_bytes=10_000))
    for kind in ("file", "ftp"):
        with pytest.raises(ImageError, match="not allowed|disallowed scheme"):
            read_source_bytes(f"{http_url}/redirect-{kind}")


@pytest.mark.parametrize("url", ["file:///etc/hostname", "ftp://example.com/a.jpg", "gs://bucket/a.jpg"])
def test_disallowed_schemes(url):
    with pytest.raises(ImageError, match="not allowed"):
        read_source_bytes(url)


def test_unreachable_url_times_out_quickly():
    with pytest.raises(ImageError, match="cannot download|timed out"):
        read_source_bytes("http://127.0.0.1:9/x.jpg", ImageLimits(url_timeout_s=2.0, allow_private=True))


# ------------------------------------------------------------------ resize / encode / save


def test_resize_shorter_keeps_aspect_and_range():
    rgb = np.random.default_rng(0).random((40, 100, 3)).astype(np.float32)
    out = resize_shorter(rgb, 20)
    assert out.shape == (20, 50, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    tall = resize_shorter(rgb.transpose(1, 0, 2), 20)
    assert tall.shape == (50, 20, 3)
    flat = resize_to(np.full((30, 30, 3), 0.3, np.float32), (17, 45))
    assert flat.shape == (17, 45, 3)
    np.testing.assert_allclose(flat, 0.3, atol=1e-5)
    with pytest.raises(ImageError):
        resize_to(np.zeros((4, 4)), (2, 2))


def test_antialiased_downscale_averages_fine_stripes():
    stripes = np.zeros((64, 64, 3), np.float32)
    stripes[:, ::2] = 1.0
    small = resize_to(stripes, (8, 8))
    np.testing.assert_allclose(small, 0.5, atol=0.05)


def test_encode_round_trips(tmp_path):
    rgb = np.random.default_rng(1).random((24, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(to_uint8(decode_image(encode_png(rgb)).rgb), to_uint8(rgb))
    flat = np.full((24, 32, 3), 0.4, np.float32)
    np.testing.assert_allclose(decode_image(encode_jpeg(flat)).rgb, 0.4, atol=0.02)
    assert to_uint8(np.array([[[-1.0, 0.5, 2.0]]]))[0, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize("ext", [".png", ".jpg", ".JPEG", ".webp", ".bmp", ".tif"])
def test_save_image_atomic_with_parents(tmp_path, ext):
    rgb = np.full((20, 30, 3), 0.5, np.float32)
    target = tmp_path / "a" / "b" / f"out{ext}"
    written = save_image(rgb, target)
    assert written == target and target.exists()
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temp files left
    np.testing.assert_allclose(load_image(target).rgb, 0.5, atol=0.02)


def test_save_image_unknown_extension(tmp_path):
    with pytest.raises(ImageError, match="unknown image extension"):
        save_image(np.zeros((20, 20, 3)), tmp_path / "x.xyz")
    assert not list(tmp_path.iterdir())


def test_load_mask_from_alpha_or_luminance(image_corpus, tmp_path):
    mask = load_mask(image_corpus["good"]["rgba.png"], (20, 24))
    assert mask.shape == (20, 24) and mask.dtype == np.float32
    assert mask[:, :10].max() < 0.05 and mask[:, 14:].min() > 0.95
    gray = np.zeros((32, 32, 3), np.float32)
    gray[16:] = 1.0
    path = save_image(gray, tmp_path / "m.png")
    lum = load_mask(path, (64, 64))
    assert lum.shape == (64, 64)
    assert lum[:28].max() < 0.05 and lum[36:].min() > 0.95


def test_default_limits_are_the_documented_values():
    assert DEFAULT_LIMITS == ImageLimits()
    assert DEFAULT_LIMITS.max_pixels == 64_000_000 and DEFAULT_LIMITS.min_side == 16
    assert DEFAULT_LIMITS.allowed_schemes == ("http", "https")
    assert DEFAULT_LIMITS.url_deadline_s == 30.0 and DEFAULT_LIMITS.max_redirects == 5
    assert not DEFAULT_LIMITS.allow_private and DEFAULT_LIMITS.allowed_networks == ()
    assert DEFAULT_LIMITS.allowed_formats == ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")


def test_sixteen_bit_rgb_png_is_scaled_not_clipped():
    import struct
    import zlib

    from conftest import _png_chunk

    h, w = 20, 24
    arr = np.zeros((h, w, 3), ">u2")
    arr[..., 0], arr[..., 1], arr[..., 2] = 40000, 65535, 20000
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))
    png = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )
    img = decode_image(png, "rgb48.png")
    np.testing.assert_allclose(img.rgb.reshape(-1, 3).mean(0), [40000 / 65535, 1.0, 20000 / 65535], atol=1 / 255)
