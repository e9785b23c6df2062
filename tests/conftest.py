"""Shared pytest fixtures for the imfuse test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from imfuse.precision import cpu_has_fast_bf16, onednn_bf16_capped_off  # no TensorFlow: cheap at collection

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# Tests that compare bfloat16 results with float32: only where the CPU computes bfloat16
# natively (AVX512-BF16 or AMX, oneDNN not capped below them). An AVX2-only CPU emulates
# it with looser results, and ONEDNN_MAX_CPU_ISA=AVX2 (how such a CPU is emulated here)
# cannot run the bfloat16 convolutions at all.
def _bf16_skip_reason() -> str:
    if onednn_bf16_capped_off():
        return "bfloat16 not native here: oneDNN capped below its bfloat16 kernels (ONEDNN_MAX_CPU_ISA)"
    return "bfloat16 not native here: the CPU has neither AVX512-BF16 nor AMX-BF16 (emulated results are looser)"


runs_bf16 = pytest.mark.skipif(not cpu_has_fast_bf16(), reason=_bf16_skip_reason())


# The modules that take longest (`scripts/test.sh --durations=80` on a 2-core AVX2-only AMD EPYC,
# 2026-12-07), slowest first. scripts/test.sh hands modules to the two workers in this order
# (--no-loadscope-reorder); by default pytest-xdist orders them by their number of tests, which sent
# the kfp.local pipeline run (one module, four tests, about 3 minutes) last, to run alone at the end.
SLOWEST_MODULES = (
    "test_pipeline_local", "test_training_warm_start", "test_training", "test_export", "test_style_fit",
    "test_tiling", "test_evaluate", "test_studio_app", "test_batch_stylize",
    "test_base_model", "test_publish", "test_training_predictor_distill",
)


def pytest_collection_modifyitems(config, items):
    """Slowest modules first; every other module, and the tests inside each, keep their order."""
    rank = {name: i for i, name in enumerate(SLOWEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real test images (../shared/data from the repo root); skip when absent."""
    if not (SHARED_DATA / "content").is_dir() or not (SHARED_DATA / "styles").is_dir():
        pytest.skip(f"shared test images not found at {SHARED_DATA}")
    return SHARED_DATA


# ------------------------------------------------------------------ image corpus
# Broken and awkward image files, built with Pillow so the tests need no binaries.
# BAD files must be refused with ImageError; GOOD files must decode.

def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
        ">I", zlib.crc32(kind + payload) & 0xFFFFFFFF
    )


def bomb_png(width: int = 60000, height: int = 60000) -> bytes:
    """A tiny PNG whose header claims a huge size (decompression-bomb shape)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _gradient(w: int = 48, h: int = 40, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], axis=2)
    arr = (arr + rng.integers(0, 20, size=arr.shape)).clip(0, 255)
    return arr.astype("uint8")


def _encode(im, fmt: str, **kw) -> bytes:
    import io

    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def make_bad_images() -> dict[str, bytes]:
    """file name -> bytes for every kind of input that must be refused."""
    from PIL import Image

    jpeg = _encode(Image.fromarray(_gradient()), "JPEG", quality=90)
    png = bytearray(_encode(Image.fromarray(_gradient(seed=1)), "PNG"))
    idat = png.index(b"IDAT")
    png[idat + 10] ^= 0xFF  # corrupt a byte inside IDAT: the CRC no longer matches
    svg = (
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" '
        b'height="64"><rect width="64" height="64" fill="red"/></svg>\n'
    )
    return {
        "empty.jpg": b"",
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "text.jpg": b"this is not an image, just some text\n" * 4,
        "random.png": bytes(range(256)) * 3 + b"\x13\x37" * 100,
        "bad_crc.png": bytes(png),
        "bomb.png": bomb_png(),
        "drawing.svg": svg,
        "tiny.png": _encode(Image.new("RGB", (1, 1), (255, 0, 0)), "PNG"),
    }


def make_good_images() -> dict[str, tuple[bytes, dict]]:
    """file name -> (bytes, expectations) for awkward but valid images."""
    import numpy as np
    from PIL import Image

    good: dict[str, tuple[bytes, dict]] = {}
    grad = _gradient()
    good["gray.png"] = (_encode(Image.fromarray(grad[:, :, 0], "L"), "PNG"), {"hw": (40, 48)})
    rgba = np.dstack([grad, np.full(grad.shape[:2], 255, np.uint8)])
    rgba[:, :24, 3] = 0
    good["rgba.png"] = (_encode(Image.fromarray(rgba, "RGBA"), "PNG"), {"alpha_left": 0.0})
    pal = Image.new("P", (32, 32), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))
    pal.paste(1, (16, 0, 32, 32))
    good["palette.png"] = (_encode(pal, "PNG", transparency=0), {"alpha_left": 0.0, "right": (1, 0, 0)})
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))
    good["cmyk.jpg"] = (_encode(cmyk, "JPEG", quality=95), {"mean": (1, 0, 0)})
    good["cmyk.tif"] = (_encode(cmyk, "TIFF"), {"mean": (1, 0, 0)})
    sixteen = Image.fromarray(np.full((32, 40), 40000, np.uint16))
    good["deep16.png"] = (_encode(sixteen, "PNG"), {"mean": (40000 / 65535,) * 3, "hw": (32, 40)})
    good["deep16.tif"] = (_encode(sixteen, "TIFF"), {"mean": (40000 / 65535,) * 3})
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    good["anim.gif"] = (
        _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0),
        {"mean": (1, 0, 0)},
    )
    halves = np.zeros((20, 40, 3), np.uint8)
    halves[:, :20] = (255, 0, 0)
    halves[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    good["rotated.jpg"] = (
        _encode(Image.fromarray(halves), "JPEG", quality=95, exif=exif.tobytes()),
        {"hw": (40, 20), "top": (1, 0, 0), "bottom": (0, 0, 1)},
    )
    good["pic.webp"] = (_encode(Image.fromarray(grad), "WEBP", lossless=True), {"exact": grad})
    good["pic.bmp"] = (_encode(Image.fromarray(grad), "BMP"), {"exact": grad})
    good["pic.tiff"] = (_encode(Image.fromarray(grad), "TIFF"), {"exact": grad})
    good["png_named.jpg"] = (_encode(Image.fromarray(grad), "PNG"), {"exact": grad})
    good["UPPER.JPG"] = (_encode(Image.fromarray(grad), "JPEG", quality=95), {"hw": (40, 48)})
    good["my photo ü 画.png"] = (_encode(Image.fromarray(grad), "PNG"), {"exact": grad})
    return good


@pytest.fixture(scope="session")
def image_corpus(tmp_path_factory) -> dict[str, dict[str, Path]]:
    """{"bad": {name: path}, "good": {name: path}} written once per session."""
    root = tmp_path_factory.mktemp("corpus")
    out: dict[str, dict[str, Path]] = {"bad": {}, "good": {}}
    for name, data in make_bad_images().items():
        (root / "bad").mkdir(exist_ok=True)
        (root / "bad" / name).write_bytes(data)
        out["bad"][name] = root / "bad" / name
    for name, (data, _) in make_good_images().items():
        (root / "good").mkdir(exist_ok=True)
        (root / "good" / name).write_bytes(data)
        out["good"][name] = root / "good" / name
    return out


# ------------------------------------------------------------- a small prepared dataset


def downscale_copies(src_dir: Path, dst_dir: Path, shorter: int = 72, limit: int | None = None) -> list[Path]:
    """JPEG copies of src_dir/*.jpg with the shorter side set to `shorter` (fast tests)."""
    from PIL import Image

    dst_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for path in sorted(src_dir.glob("*.jpg"))[:limit]:
        with Image.open(path) as im:
            im = im.convert("RGB")
            scale = shorter / min(im.size)
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))))
        target = dst_dir / path.name
        im.save(target, format="JPEG", quality=90)
        out.append(target)
    return out


@pytest.fixture(scope="session")
def prepared_dataset(tmp_path_factory, shared_data) -> Path:
    """A dataset made by `prepare_dataset` from the real images, downscaled: content and
    styles at 64 px (styles' image_large at 96 px); every split is non-empty."""
    from imfuse.data.prepare import PrepareConfig, prepare_dataset

    root = tmp_path_factory.mktemp("prepared")
    downscale_copies(shared_data / "content", root / "src" / "content")
    downscale_copies(shared_data / "styles", root / "src" / "styles")
    out = root / "dataset"
    prepare_dataset(
        PrepareConfig(
            content=str(root / "src" / "content"),
            styles=str(root / "src" / "styles"),
            out=str(out),
            content_size=64,
            style_size=64,
            style_large_size=96,
            progress=False,
        )
    )
    return out


@pytest.fixture(scope="session")
def tflite_model():
    """tiny with random weights: the TFLite machinery, not a trained model's pictures."""
    from imfuse.networks import build_model

    return build_model("tiny", "none", style_size=64)


TFLITE_SIZE = (48, 64)  # height, width: not square, so a swapped axis would show


@pytest.fixture(scope="session")
def tflite_exports(tflite_model, tmp_path_factory):
    """{quantize: (TFLiteExport, folder)} of tflite_model at TFLITE_SIZE, each exported on first use
    (test modules run on separate xdist workers, so each builds only the exports it reads)."""
    from imfuse.tflite_export import export_tflite

    root = tmp_path_factory.mktemp("tflite")

    class Exports(dict):
        def __missing__(self, quantize: str):
            self[quantize] = (export_tflite(tflite_model, root / quantize, TFLITE_SIZE, quantize), root / quantize)
            return self[quantize]

    return Exports()
