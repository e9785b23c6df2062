"""Demo content and style images for a fresh machine: no network, deterministic.

Content: photos shipped by installed dependencies (scikit-learn's china.jpg and
flower.jpg, matplotlib's grace_hopper.jpg, when present) plus generated landscapes.
Styles: generated textures (stripes, zigzag, checker, smooth noise, Voronoi cells,
waves, dots, strokes) with varied palettes. Everything is seeded, so two calls write
byte-identical files and `imfuse data prepare` on them gives the same dataset hash.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from imfuse.errors import ConfigError, ImageError
from imfuse.images import resize_pil_shorter

PALETTES = [
    [(230, 57, 70), (241, 250, 238), (168, 218, 220), (69, 123, 157), (29, 53, 87)],
    [(38, 70, 83), (42, 157, 143), (233, 196, 106), (244, 162, 97), (231, 111, 81)],
    [(0, 0, 0), (255, 255, 255)],
    [(255, 190, 11), (251, 86, 7), (255, 0, 110), (131, 56, 236), (58, 134, 255)],
    [(13, 27, 42), (27, 38, 59), (65, 90, 119), (119, 141, 169), (224, 225, 221)],
    [(255, 105, 180), (20, 20, 20)],
    [(112, 66, 20), (189, 140, 70), (240, 220, 170), (60, 90, 40)],
    [(0, 48, 73), (214, 40, 40), (247, 127, 0), (252, 191, 73), (234, 226, 183)],
]


def _dependency_photos() -> list[tuple[str, Path]]:
    """Photos that installed packages ship, located without importing the packages."""
    found: list[tuple[str, Path]] = []
    spec = importlib.util.find_spec("sklearn")
    if spec and spec.submodule_search_locations:
        base = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "images"
        found += [(f"sklearn_{n}", base / f"{n}.jpg") for n in ("china", "flower")]
    spec = importlib.util.find_spec("matplotlib")
    if spec and spec.submodule_search_locations:
        base = Path(list(spec.submodule_search_locations)[0]) / "mpl-data" / "sample_data"
        found.append(("mpl_grace_hopper", base / "grace_hopper.jpg"))
    return [(name, path) for name, path in found if path.is_file()]


# ---------------------------------------------------------------------- content scenes


def _vertical_gradient(h: int, w: int, top, bottom) -> np.ndarray:
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    return (np.array(top) * (1 - t) + np.array(bottom) * t).repeat(w, axis=1)


def landscape(seed: int, size: tuple[int, int]) -> Image.Image:
    """A synthetic scene: sky, sun, mountain ridges, ground, houses and trees."""
    rng = np.random.default_rng(seed)
    w, h = size
    sky_top = rng.integers(20, 120, 3)
    sky_bottom = np.clip(sky_top + rng.integers(60, 140, 3), 0, 255)
    im = Image.fromarray(_vertical_gradient(h, w, sky_top, sky_bottom).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    sx, sy, sr = rng.integers(w // 8, 7 * w // 8), rng.integers(h // 10, h // 3), rng.integers(h // 16, h // 8)
    draw.ellipse([sx - sr, sy - sr, sx + sr, sy + sr], fill=tuple(int(v) for v in rng.integers(200, 256, 3)))
    for layer in range(3):
        base = h * (0.45 + 0.12 * layer)
        xs = np.linspace(0, w, 9)
        ys = base - rng.uniform(0.05, 0.3, 9) * h / (layer + 1)
        colour = tuple(int(v) for v in rng.integers(30, 150, 3) // (layer + 1) + 20)
        draw.polygon([(0, h)] + [(float(x), float(y)) for x, y in zip(xs, ys)] + [(w, h)], fill=colour)
    ground = tuple(int(v) for v in rng.integers(40, 140, 3))
    draw.rectangle([0, int(h * 0.78), w, h], fill=ground)
    for _ in range(rng.integers(2, 6)):
        bw, bh = int(rng.integers(w // 14, w // 6)), int(rng.integers(h // 10, h // 4))
        bx, by = int(rng.integers(0, w - bw)), int(h * 0.8)
        draw.rectangle([bx, by - bh, bx + bw, by], fill=tuple(int(v) for v in rng.integers(80, 240, 3)))
        draw.polygon([(bx - 4, by - bh), (bx + bw + 4, by - bh), (bx + bw // 2, by - bh - bh // 2)],
                     fill=tuple(int(v) for v in rng.integers(60, 200, 3)))
        for wy in range(by - bh + 8, by - 10, 14):
            draw.rectangle([bx + 5, wy, bx + 11, wy + 6], fill=(250, 240, 180))
    for _ in range(rng.integers(3, 9)):
        tx, ty, ts = int(rng.integers(0, w)), int(rng.integers(int(h * 0.8), h)), int(rng.integers(10, h // 6))
        draw.rectangle([tx - 2, ty - ts // 3, tx + 2, ty], fill=(80, 50, 20))
        draw.polygon([(tx - ts // 3, ty - ts // 3), (tx + ts // 3, ty - ts // 3), (tx, ty - ts)],
                     fill=(int(rng.integers(10, 60)), int(rng.integers(90, 180)), int(rng.integers(20, 70))))
    noise = rng.normal(0, 6, (h, w, 3))
    arr = np.asarray(im.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float32) + noise
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


# ------------------------------------------------------------------------ style textures


def _colours(rng: np.random.Generator, n: int) -> np.ndarray:
    palette = np.array(PALETTES[int(rng.integers(len(PALETTES)))], dtype=np.float32)
    jitter = rng.normal(0, 10, palette.shape)
    return np.clip(palette + jitter, 0, 255)[np.arange(n) % len(palette)]


def _index_image(index: np.ndarray, rng: np.random.Generator) -> Image.Image:
    n = int(index.max()) + 1
    colours = _colours(rng, max(n, 2))
    return Image.fromarray(colours[index % len(colours)].astype(np.uint8))


def stripes(rng, w, h):
    y, x = np.mgrid[0:h, 0:w]
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(10, 40)
    t = (x * np.cos(angle) + y * np.sin(angle)) / period
    return _index_image((np.floor(t) % int(rng.integers(2, 5))).astype(int), rng)


def zigzag(rng, w, h):
    y, x = np.mgrid[0:h, 0:w]
    period, amp = rng.uniform(20, 50), rng.uniform(8, 30)
    tri = np.abs((x / period) % 2 - 1) * amp
    return _index_image((np.floor((y + tri) / rng.uniform(10, 25)) % 3).astype(int), rng)


def checker(rng, w, h):
    y, x = np.mgrid[0:h, 0:w]
    angle = rng.uniform(0, np.pi / 2)
    cell = rng.uniform(12, 40)
    u = (x * np.cos(angle) - y * np.sin(angle)) / cell
    v = (x * np.sin(angle) + y * np.cos(angle)) / cell
    return _index_image(((np.floor(u) + np.floor(v)) % 2).astype(int), rng)


def smooth_noise(rng, w, h):
    coarse = rng.random((int(rng.integers(4, 10)), int(rng.integers(4, 10)), 3))
    im = Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    arr = np.asarray(im, dtype=np.float32) / 255.0
    colours = _colours(rng, 3) / 255.0
    mixed = arr[..., 0:1] * colours[0] + arr[..., 1:2] * colours[1] + arr[..., 2:3] * colours[2]
    mixed = mixed / np.maximum(arr.sum(axis=2, keepdims=True), 1e-3)
    grain = rng.normal(0, 0.03, (h, w, 1))
    return Image.fromarray(((mixed + grain).clip(0, 1) * 255).astype(np.uint8))


def voronoi(rng, w, h):
    n = int(rng.integers(12, 40))
    pts = rng.random((n, 2)) * [w, h]
    y, x = np.mgrid[0:h, 0:w]
    d = (x[..., None] - pts[:, 0]) ** 2 + (y[..., None] - pts[:, 1]) ** 2
    order = np.sort(d, axis=2)
    edge = (np.sqrt(order[..., 1]) - np.sqrt(order[..., 0])) < 2.0
    im = np.asarray(_index_image(np.argmin(d, axis=2), rng)).copy()
    im[edge] = 20
    return Image.fromarray(im)


def waves(rng, w, h):
    y, x = np.mgrid[0:h, 0:w]
    cx, cy = rng.random(2) * [w, h]
    r = np.hypot(x - cx, y - cy) + 15 * np.sin(x / rng.uniform(15, 40))
    return _index_image((np.floor(r / rng.uniform(8, 20)) % 4).astype(int), rng)


def dots(rng, w, h):
    colours = _colours(rng, 5)
    im = Image.new("RGB", (w, h), tuple(int(c) for c in colours[0]))
    draw = ImageDraw.Draw(im)
    step = int(rng.integers(16, 36))
    for j, yy in enumerate(range(0, h + step, step)):
        for xx in range(-step, w + step, step):
            r = rng.uniform(step * 0.2, step * 0.45)
            cx = xx + (step // 2 if j % 2 else 0)
            c = tuple(int(v) for v in colours[1 + int(rng.integers(4))])
            draw.ellipse([cx - r, yy - r, cx + r, yy + r], fill=c)
    return im


def strokes(rng, w, h):
    colours = _colours(rng, 5)
    im = Image.new("RGB", (w, h), tuple(int(c) for c in colours[0]))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(150, 300))):
        x0, y0 = rng.random(2) * [w, h]
        angle = rng.normal(0.6, 0.4)
        length = rng.uniform(10, 50)
        x1, y1 = x0 + length * np.cos(angle), y0 + length * np.sin(angle)
        c = tuple(int(v) for v in colours[1 + int(rng.integers(4))])
        draw.line([(x0, y0), (x1, y1)], fill=c, width=int(rng.integers(3, 10)))
    return im.filter(ImageFilter.SMOOTH)


TEXTURES: list[tuple[str, Callable]] = [
    ("stripes", stripes),
    ("zigzag", zigzag),
    ("checker", checker),
    ("noise", smooth_noise),
    ("voronoi", voronoi),
    ("waves", waves),
    ("dots", dots),
    ("strokes", strokes),
]


# ----------------------------------------------------------------------------- writing


def _save_jpeg(im: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    im.convert("RGB").save(tmp, format="JPEG", quality=92)
    tmp.replace(path)
    return path


def write_demo_data(
    out_dir: str | Path, n_content: int = 12, n_styles: int = 12, size: int = 320
) -> dict[str, list[Path]]:
    """Write DIR/content/*.jpg and DIR/styles/*.jpg; returns the written paths."""
    if n_content < 1 or n_styles < 1:
        raise ConfigError(f"need at least one content and one style image, got {n_content}, {n_styles}")
    if not 32 <= size <= 2048:
        raise ConfigError(f"demo image size must be in 32..2048, got {size}")
    out = Path(out_dir)
    written: dict[str, list[Path]] = {"content": [], "styles": []}
    photos = _dependency_photos()[:n_content]
    for name, path in photos:
        try:
            with Image.open(path) as im:
                photo = resize_pil_shorter(im.convert("RGB"), size)
        except OSError as exc:
            raise ImageError(f"{path}: cannot read bundled demo photo ({exc})") from None
        written["content"].append(_save_jpeg(photo, out / "content" / f"{name}.jpg"))
    base = max(size, 256)  # the generators' proportions are tuned for >= 256 px
    for i in range(n_content - len(photos)):
        wh = (base * 4 // 3, base) if i % 2 == 0 else (base, base * 4 // 3)
        scene = resize_pil_shorter(landscape(1000 + i, wh), size)
        written["content"].append(_save_jpeg(scene, out / "content" / f"scene_{i:02d}.jpg"))
    for i in range(n_styles):
        name, fn = TEXTURES[i % len(TEXTURES)]
        rng = np.random.default_rng(2000 + i)
        texture = resize_pil_shorter(fn(rng, base + 32 * (i % 3), base), size)
        written["styles"].append(_save_jpeg(texture, out / "styles" / f"{name}_{i:02d}.jpg"))
    return written
