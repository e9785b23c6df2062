"""Demo content and style images for a fresh machine: no network, deterministic.

Content: photos shipped by installed dependencies (scikit-learn's china.jpg and
flower.jpg, matplotlib's grace_hopper.jpg, scikit-image's astronaut, coffee, chelsea,
rocket and motorcycle photos, when present) plus generated landscapes.
Styles: painterly procedural styles (brushwork, mosaic, hatching, marbling,
pointillism, a posterised dependency photo) and simpler textures (stripes, zigzag,
checker, smooth noise, Voronoi cells, waves, dots, strokes) with varied palettes.
Everything is seeded, so two calls write byte-identical files and `imfuse data prepare` on them gives the same dataset hash.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from imfuse.color import LUMA_WEIGHTS
from imfuse.errors import ConfigError, ImageError
from imfuse.fsutil import atomic_path
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


# package: (folder inside it, {name: photo file})
DEPENDENCY_PHOTOS = {
    "sklearn": ("datasets/images", {f"sklearn_{n}": f"{n}.jpg" for n in ("china", "flower")}),
    "matplotlib": ("mpl-data/sample_data", {"mpl_grace_hopper": "grace_hopper.jpg"}),
    # Colour photos inside the scikit-image wheel (skimage/data/); no pooch download.
    "skimage": ("data", {f"skimage_{n.split('.')[0]}": n
                         for n in ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png")}),
}


# Real textures and images inside the scikit-image wheel that no imfuse training or demo reads:
# the evaluation's reference styles (imfuse.training.scoring), a stand-in for real paintings
# where the main job has none.
REFERENCE_STYLES = {
    "skimage": ("data", {f"skimage_{n.split('.')[0]}": n for n in (
        "brick.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "retina.jpg")}),
}


def dependency_photos() -> list[tuple[str, Path]]:
    """Photos that installed packages ship, located without importing the packages."""
    return _shipped(DEPENDENCY_PHOTOS)


def reference_styles() -> list[tuple[str, Path]]:
    """REFERENCE_STYLES that the installed packages ship."""
    return _shipped(REFERENCE_STYLES)


def _shipped(table: dict) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    for package, (folder, files) in table.items():
        spec = importlib.util.find_spec(package)
        if spec and spec.submodule_search_locations:
            base = Path(list(spec.submodule_search_locations)[0]) / folder
            found += [(name, base / file) for name, file in files.items()]
    return [(name, path) for name, path in found if path.is_file()]


# ---------------------------------------------------------------------- content scenes


def landscape(seed: int, size: tuple[int, int]) -> Image.Image:
    """A synthetic scene: sky, sun, mountain ridges, ground, houses and trees."""
    rng = np.random.default_rng(seed)
    w, h = size
    sky_top = rng.integers(20, 120, 3)
    sky_bottom = np.clip(sky_top + rng.integers(60, 140, 3), 0, 255)
    t = np.linspace(0.0, 1.0, h)[:, None, None]  # a vertical gradient
    im = Image.fromarray((sky_top * (1 - t) + sky_bottom * t).repeat(w, axis=1).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    sx, sy, sr = rng.integers(w // 8, 7 * w // 8), rng.integers(h // 10, h // 3), rng.integers(h // 16, h // 8)
    draw.ellipse([sx - sr, sy - sr, sx + sr, sy + sr], fill=tuple(int(v) for v in rng.integers(200, 256, 3)))
    for layer in range(3):
        base = h * (0.45 + 0.12 * layer)
        xs = np.linspace(0, w, 9)
        ys = base - rng.uniform(0.05, 0.3, 9) * h / (layer + 1)
        colour = tuple(int(v) for v in rng.integers(30, 150, 3) // (layer + 1) + 20)
        draw.polygon([(0, h)] + [(float(x), float(y)) for x, y in zip(xs, ys)] + [(w, h)], fill=colour)
    draw.rectangle([0, int(h * 0.78), w, h], fill=tuple(int(v) for v in rng.integers(40, 140, 3)))
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


# ------------------------------------------------------------------ painterly styles


def _value_noise(rng: np.random.Generator, scale: float) -> Callable:
    """Smooth value noise f(xs, ys) -> [0, 1] with features about `scale` px wide;
    evaluable at arbitrary (e.g. domain-warped) coordinates."""
    grid = rng.random((64, 64))
    offset = rng.uniform(0, 64, 2)

    def f(xs, ys):
        gx, gy = np.asarray(xs) / scale + offset[0], np.asarray(ys) / scale + offset[1]
        x0, y0 = np.floor(gx), np.floor(gy)
        fx, fy = gx - x0, gy - y0
        fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
        i0, j0 = x0.astype(int) % 64, y0.astype(int) % 64
        i1, j1 = (i0 + 1) % 64, (j0 + 1) % 64
        top = grid[j0, i0] * (1 - fx) + grid[j0, i1] * fx
        bottom = grid[j1, i0] * (1 - fx) + grid[j1, i1] * fx
        return top * (1 - fy) + bottom * fy

    return f


def _fbm(rng: np.random.Generator, scale: float, octaves: int = 3) -> Callable:
    """Fractal sum of value-noise octaves, normalised back to about [0, 1]."""
    layers = [_value_noise(rng, scale / 2**k) for k in range(octaves)]
    weights = [0.5**k for k in range(octaves)]
    total = sum(weights)

    def f(xs, ys):
        return sum(wt * layer(xs, ys) for wt, layer in zip(weights, layers)) / total

    return f


def _stretch(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / max(hi - lo, 1e-6)


def _rgb(c) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(c, 0, 255))


def _to_image(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def brushwork(rng, w, h):
    """Layered thick, slightly curved brush strokes following a smooth flow field."""
    colours = _colours(rng, 5)
    n = len(colours)
    im = Image.new("RGB", (w, h), _rgb(colours[0] * 0.8 + 40))
    draw = ImageDraw.Draw(im)
    flow = _fbm(rng, rng.uniform(0.4, 0.9) * max(w, h), 2)
    turn, base_angle = rng.uniform(1.5, 4.0) * np.pi, rng.uniform(0, np.pi)
    region = _fbm(rng, rng.uniform(0.25, 0.5) * max(w, h), 2)
    k = w * h / (320 * 320) * rng.uniform(0.8, 1.3)
    unit = min(w, h) / 320
    layers = [(int(90 * k), (14, 26), (40, 90)), (int(260 * k), (7, 15), (24, 60)),
              (int(420 * k), (3, 8), (12, 34))]
    for count, (wlo, whi), (llo, lhi) in layers:
        count = max(count, 8)
        x = rng.uniform(-10, w + 10, count)
        y = rng.uniform(-10, h + 10, count)
        widths = np.maximum(rng.uniform(wlo, whi, count) * unit, 1.5)
        lengths = rng.uniform(llo, lhi, count) * unit
        steps = 6
        xs, ys = [x], [y]
        for _ in range(steps):
            a = base_angle + turn * flow(xs[-1], ys[-1])
            xs.append(xs[-1] + np.cos(a) * lengths / steps)
            ys.append(ys[-1] + np.sin(a) * lengths / steps)
        xs, ys = np.stack(xs, 1), np.stack(ys, 1)
        idx = (np.floor(region(x, y) * n * 1.6 + rng.normal(0, 0.5, count)).astype(int)) % n
        shade = rng.uniform(0.8, 1.15, count)
        tint = colours[idx] * shade[:, None] + rng.normal(0, 8, (count, 3))
        for s in range(count):
            c, wd = _rgb(tint[s]), int(round(widths[s]))
            pts = list(zip(xs[s].tolist(), ys[s].tolist()))
            draw.line(pts, fill=c, width=wd, joint="curve")
            r = wd / 2
            for px, py in (pts[0], pts[-1]):
                draw.ellipse([px - r, py - r, px + r, py + r], fill=c)
            if wd >= 5:  # a bristle ridge: lighter, thinner, off-centre
                dx, dy = xs[s, -1] - xs[s, 0], ys[s, -1] - ys[s, 0]
                norm = max(np.hypot(dx, dy), 1e-6)
                ox, oy = -dy / norm * wd * 0.22, dx / norm * wd * 0.22
                ridge = _rgb(tint[s] * 1.12 + 12)
                draw.line([(px + ox, py + oy) for px, py in pts], fill=ridge,
                          width=max(1, wd // 4), joint="curve")
    arr = np.asarray(im.filter(ImageFilter.GaussianBlur(0.6)), dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    weave = 4 * np.sin(xx * 1.9) * np.sin(yy * 1.9)  # canvas weave
    return _to_image(arr + weave[..., None] + rng.normal(0, 3, (h, w, 1)))


def mosaic(rng, w, h):
    """Jittered-grid Voronoi tiles with dark grout and per-tile colour jitter."""
    s = max(rng.uniform(10, 20) * min(w, h) / 320, 4.0)
    gw, gh = int(np.ceil(w / s)) + 3, int(np.ceil(h / s)) + 3
    jit = rng.uniform(0.25, 0.42)
    jj, ii = np.mgrid[0:gh, 0:gw]
    px = (ii - 1 + 0.5 + rng.uniform(-jit, jit, (gh, gw))) * s
    py = (jj - 1 + 0.5 + rng.uniform(-jit, jit, (gh, gw))) * s
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = (x // s).astype(int) + 1, (y // s).astype(int) + 1
    d1 = np.full((h, w), np.inf, np.float32)
    d2 = np.full((h, w), np.inf, np.float32)
    best = np.zeros((h, w), int)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            j, i = cy + dy, cx + dx
            d = np.hypot(x - px[j, i], y - py[j, i])
            closer = d < d1
            d2 = np.where(closer, d1, np.minimum(d2, d))
            best = np.where(closer, j * gw + i, best)
            d1 = np.where(closer, d, d1)
    colours = _colours(rng, 5)
    n = len(colours)
    field = _fbm(rng, rng.uniform(0.3, 0.7) * max(w, h), 2)
    tile_idx = (np.floor(field(px, py) * n * 1.5 + rng.normal(0, 0.35, px.shape)).astype(int)) % n
    tile_rgb = colours[tile_idx] * rng.uniform(0.82, 1.12, (gh, gw, 1)) + rng.normal(0, 9, (gh, gw, 3))
    tile_rgb = tile_rgb.reshape(-1, 3)
    arr = tile_rgb[best] * (1 - 0.22 * np.clip(d1 / s, 0, 1))[..., None]
    grout_w = rng.uniform(0.9, 2.2) * max(s / 14, 0.5)
    grout = np.clip((grout_w + 0.7 - (d2 - d1)) / 1.4, 0, 1)[..., None]
    grout_c = rng.uniform(35, 75) + rng.normal(0, 6, (h, w, 1))
    arr = arr * (1 - grout) + grout_c * grout
    return _to_image(arr).filter(ImageFilter.GaussianBlur(0.4))


def hatching(rng, w, h):
    """Pen cross-hatching in 1-3 directions on paper; tone from a smooth noise field."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    paper = np.array([rng.uniform(232, 250), rng.uniform(222, 242), rng.uniform(195, 225)])
    ink = np.array([(20, 22, 30), (55, 35, 22), (22, 32, 75), (30, 30, 30)][int(rng.integers(4))], float)
    tone = _stretch(_fbm(rng, rng.uniform(0.3, 0.6) * max(w, h), 3)(x, y))
    tone = np.clip(tone * rng.uniform(0.9, 1.2) + (y / h - 0.5) * rng.uniform(-0.3, 0.3), 0, 1)
    ndir = int(rng.integers(1, 4))
    base = rng.uniform(0, np.pi)
    spacing = rng.uniform(3.5, 7.0) * max(min(w, h) / 320, 0.5)
    width = rng.uniform(0.45, 1.0)
    wobble = _value_noise(rng, rng.uniform(20, 50))
    blank = np.ones((h, w), np.float32)
    for k in range(ndir):
        a = base + k * np.pi / ndir + rng.normal(0, 0.08)
        proj = x * np.cos(a) + y * np.sin(a) + 2.5 * wobble(x + 97 * k, y)
        along = -x * np.sin(a) + y * np.cos(a)
        line_id = np.floor(proj / spacing)
        dist = np.abs(proj / spacing - line_id - 0.5) * spacing
        threshold = 0.15 + 0.6 * k / max(ndir, 1)
        # pen pressure: lines thin out (rather than fade) where the tone is light
        pressure = np.clip((tone - threshold) * 5, 0, 1.4)
        stroke = np.clip(width * pressure + 0.5 * (pressure > 0) - dist, 0, 1)
        hashed = np.sin(line_id * 12.9898 + 78.233 * k) * 43758.5453
        hashed = hashed - np.floor(hashed)  # per-line pseudo-random 0..1
        gaps = np.sin(along / (15 + 30 * hashed) + hashed * 40) > 0.88
        stroke = np.where(gaps, 0, stroke)
        blank *= 1 - stroke * rng.uniform(0.8, 0.95)
    inked = 1 - blank
    arr = paper * blank[..., None] + ink * inked[..., None]
    return _to_image(arr + rng.normal(0, 4, (h, w, 1)))


def marbling(rng, w, h):
    """Marbled paper: domain-warped sine bands mapped to a palette, with thin veins."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    size = max(w, h)
    warp_a, warp_b = _fbm(rng, size * rng.uniform(0.3, 0.6), 3), _fbm(rng, size * rng.uniform(0.3, 0.6), 3)
    amp = size * rng.uniform(0.15, 0.35)
    qx, qy = x + amp * (warp_a(x, y) - 0.5), y + amp * (warp_b(x, y) - 0.5)
    warp_c = _fbm(rng, size * rng.uniform(0.15, 0.3), 2)  # second warp, at the warped points
    qx = qx + 0.5 * amp * (warp_c(qx, qy) - 0.5)
    a = rng.uniform(0, np.pi)
    period = size * rng.uniform(0.05, 0.12)
    u = (qx * np.cos(a) + qy * np.sin(a)) / period
    v = (-qx * np.sin(a) + qy * np.cos(a)) / (period * rng.uniform(2, 5))
    t = u + rng.uniform(0.3, 0.9) * np.sin(2 * np.pi * v)  # combed waves
    colours = _colours(rng, 5)
    n = len(colours)
    band = np.floor(t)
    f = t - band
    i0 = band.astype(int) % n
    i1 = (i0 + 1) % n
    blend = np.clip((f - 0.75) / 0.25, 0, 1)[..., None]
    blend = blend * blend * (3 - 2 * blend)
    arr = colours[i0] * (1 - blend) + colours[i1] * blend
    vein = np.exp(-(((f - 0.5) / 0.03) ** 2))[..., None]
    vein_c = np.array([245, 240, 225]) if rng.random() < 0.5 else np.array([30, 25, 25])
    arr = arr * (1 - 0.7 * vein) + vein_c * 0.7 * vein
    return _to_image(arr + rng.normal(0, 2.5, (h, w, 1)))


def pointillism(rng, w, h):
    """Dense small dabs whose colours follow a smooth underlying colour field."""
    colours = _colours(rng, 5)
    n = len(colours)
    size = max(w, h)
    fields = [_fbm(rng, size * rng.uniform(0.25, 0.5), 2) for _ in range(n)]
    paper = _rgb(np.array([240, 234, 220]) + rng.normal(0, 6, 3))
    im = Image.new("RGB", (w, h), paper)
    draw = ImageDraw.Draw(im)
    r = rng.uniform(1.6, 3.2) * max(min(w, h) / 320, 0.4)
    count = int(w * h / (r * r) * rng.uniform(0.9, 1.3))
    px, py = rng.uniform(-r, w + r, count), rng.uniform(-r, h + r, count)
    logits = np.stack([f(px, py) for f in fields], 1) * 14.0
    weights = np.exp(logits - logits.max(1, keepdims=True))
    weights /= weights.sum(1, keepdims=True)
    base = weights @ colours
    pick = rng.random(count) < 0.05  # sprinkled pure palette dabs
    base[pick] = colours[rng.integers(0, n, int(pick.sum()))]
    dab = base * rng.uniform(0.88, 1.12, (count, 1)) + rng.normal(0, 8, (count, 3))
    rx = r * rng.uniform(0.7, 1.3, count)
    ry = rx * rng.uniform(0.75, 1.25, count)
    for i in range(count):
        draw.ellipse([px[i] - rx[i], py[i] - ry[i], px[i] + rx[i], py[i] + ry[i]], fill=_rgb(dab[i]))
    return im


def posterized_photo(rng, w, h):
    """A dependency-shipped photo: random crop, posterised to few colours, dark edges."""
    photos = dependency_photos()
    if photos:
        _, path = photos[int(rng.integers(len(photos)))]
        with Image.open(path) as src:
            photo = src.convert("RGB")
    else:  # no photo-shipping dependency installed: posterise a generated scene
        photo = landscape(int(rng.integers(1 << 30)), (w * 3 // 2, h * 3 // 2))
    pw, ph = photo.size
    scale = min(pw / w, ph / h) * rng.uniform(0.55, 1.0)
    cw, ch = max(int(w * scale), 8), max(int(h * scale), 8)
    x0, y0 = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
    crop = photo.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.Resampling.BICUBIC)
    smooth = crop.filter(ImageFilter.MedianFilter(5))
    if rng.random() < 0.5:
        poster = np.asarray(ImageOps.posterize(smooth, int(rng.integers(2, 4))), dtype=np.float32)
    else:  # quantise, then map the few levels onto a palette (by luminance order)
        k = int(rng.integers(3, 7))
        q = smooth.quantize(colors=k, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        idx = np.asarray(q)
        pal = np.array(q.getpalette()[: 3 * k], dtype=np.float32).reshape(-1, 3)
        pal = np.pad(pal, ((0, k - len(pal)), (0, 0)))
        order = np.argsort(np.argsort(pal @ LUMA_WEIGHTS))
        colours = _colours(rng, 5)
        colours = colours[np.argsort(colours @ LUMA_WEIGHTS)]
        ramp = colours[np.round(np.linspace(0, len(colours) - 1, k)).astype(int)]
        mix = rng.uniform(0.5, 1.0)
        poster = ramp[order[idx]] * mix + pal[idx] * (1 - mix)
    grey = smooth.convert("L").filter(ImageFilter.GaussianBlur(rng.uniform(0.6, 1.4)))
    edges = np.asarray(grey.filter(ImageFilter.FIND_EDGES), dtype=np.float32)
    edges = np.clip((edges - rng.uniform(6, 14)) / 20, 0, 1)
    if rng.random() < 0.5:
        edges = np.asarray(_to_image(edges * 255).filter(ImageFilter.MaxFilter(3)), dtype=np.float32) / 255
    arr = poster * (1 - 0.85 * edges[..., None]) + 15 * 0.85 * edges[..., None]
    return _to_image(arr)


# Painterly families first, so the default 12 styles cover all of them.
TEXTURES: list[tuple[str, Callable]] = [
    ("brushwork", brushwork),
    ("mosaic", mosaic),
    ("hatching", hatching),
    ("marbling", marbling),
    ("pointillism", pointillism),
    ("posterized", posterized_photo),
    ("noise", smooth_noise),
    ("voronoi", voronoi),
    ("waves", waves),
    ("strokes", strokes),
    ("stripes", stripes),
    ("checker", checker),
    ("zigzag", zigzag),
    ("dots", dots),
]


# ----------------------------------------------------------------------------- writing


def _save_jpeg(im: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        im.convert("RGB").save(tmp, format="JPEG", quality=92)
    return path


def demo_sources(content: str | None, styles: str | None) -> bool:
    """True when neither source is given (demo images stand in); ConfigError when only one is."""
    if bool(content) != bool(styles):
        raise ConfigError("give both content_source and styles_source, or neither (then demo images are generated); "
                          f"got content_source={content!r}, styles_source={styles!r}")
    return not content


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
    photos = dependency_photos()[:n_content]
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
