"""Peak memory and time of feed-forward stylisation vs image size, tiled vs untiled.

Each (size, mode) runs in its own subprocess so peak RSS is that run's alone: the child
loads the shipped reduced model, warms up (one small run, which also traces the tile
function), generates a uint8 test image of the wanted size, resets the kernel's RSS
high-water mark (/proc/self/clear_refs), runs `stylize_with_model(..., as_uint8=True)`
and reports VmHWM from /proc/self/status (everything: TF buffers, numpy, Python) and the
wall time. "peak" is the high-water mark, "+run" the part above the RSS before the run
(model, TF runtime and the input image are in the baseline). Where both modes ran, the
parent prints how far the tiled pixels are from the untiled ones (mean abs, /255):
above STATS_PIXELS the tiled run takes its normalisation statistics from a 1 MP copy.

    python bench/tiled.py [--sizes 1,4,16,24] [--untiled-max 4] [--tile 768] [--precision float32]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from imfuse.precision import cpu_summary  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ROOT = Path(__file__).resolve().parents[1]


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def _image(megapixels: float, seed: int = 0) -> np.ndarray:
    """4:3 uint8 test image (gradients + a little texture), built a band at a time."""
    w = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    h = int(round(w * 3 / 4))
    out = np.empty((h, w, 3), np.uint8)
    rng = np.random.default_rng(seed)
    x = np.arange(w, dtype=np.float32) / w
    for top in range(0, h, 512):
        y = (np.arange(top, min(h, top + 512), dtype=np.float32) / h)[:, None]
        band = np.stack([np.broadcast_to(x, (y.shape[0], w)), np.broadcast_to(y, (y.shape[0], w)),
                         0.5 + 0.3 * np.sin(20 * x + 13 * y)], axis=2)
        band = band * 220 + rng.integers(0, 30, size=band.shape)
        out[top:top + y.shape[0]] = band.clip(0, 255).astype(np.uint8)
    return out


def child(megapixels: float, tile: int, precision: str, keep: str | None) -> None:
    from imfuse.base_model import base_model_path
    from imfuse.images import load_image
    from imfuse.networks import load_model
    from imfuse.stylize import stylize_with_model

    model = load_model(base_model_path("reduced"), precision=precision)
    style = load_image(DATA / "styles" / "starry_night.jpg").rgb
    warm = _image(1.0 if tile else 0.1, seed=1)
    stylize_with_model(model, warm, [(style, 1.0)], tile=tile or 0, as_uint8=True)
    del warm
    content = _image(megapixels)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    base = _status_kib("VmRSS")
    start = time.perf_counter()
    out = stylize_with_model(model, content, [(style, 1.0)], tile=tile or 0, as_uint8=True)
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    assert out.shape == content.shape and out.dtype == np.uint8
    if keep:
        np.save(keep, out)
    print(json.dumps({"h": content.shape[0], "w": content.shape[1], "seconds": seconds, "base_kib": base,
                      "peak_kib": peak, "hwm_reset": reset}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1,4,16,24", help="megapixels, comma separated")
    p.add_argument("--untiled-max", type=float, default=4.0, help="largest size (MP) also run untiled")
    p.add_argument("--tile", type=int, default=768)
    p.add_argument("--precision", default="float32", choices=("float32", "bfloat16", "auto"))
    p.add_argument("--timeout", type=float, default=900, help="seconds per run")
    p.add_argument("--child", nargs=2, metavar=("MP", "TILE"), help=argparse.SUPPRESS)
    p.add_argument("--keep", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(float(args.child[0]), int(args.child[1]), args.precision, args.keep)
        return 0

    import tensorflow as tf

    print(cpu_summary())
    print(f"TF {tf.__version__}, reduced base model, {args.precision}, tile {args.tile} px "
          f"(uint8 in/out, style starry_night)", flush=True)
    print(f"{'MP':>5} {'size':>11} {'mode':>8} {'time s':>8} {'peak MiB':>9} {'+run MiB':>9}  note")
    with tempfile.TemporaryDirectory() as tmp:
        for mp in [float(s) for s in args.sizes.split(",") if s.strip()]:
            kept = {}
            modes = [("tiled", args.tile)] + ([("untiled", 0)] if mp <= args.untiled_max else [])
            for mode, tile in modes:
                keep = os.path.join(tmp, f"{mp}-{mode}.npy") if mp <= args.untiled_max else None
                cmd = [sys.executable, __file__, "--child", str(mp), str(tile), "--precision", args.precision]
                cmd += ["--keep", keep] if keep else []
                try:
                    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
                except subprocess.TimeoutExpired:
                    print(f"{mp:5g} {'':>11} {mode:>8}  timed out after {args.timeout:.0f}s", flush=True)
                    continue
                lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
                if done.returncode != 0 or not lines:
                    tail = (done.stderr.strip().splitlines() or ["?"])[-1][:120]
                    print(f"{mp:5g} {'':>11} {mode:>8}  failed (rc {done.returncode}): {tail}", flush=True)
                    continue
                r = json.loads(lines[-1])
                note = "" if r["hwm_reset"] else "(VmHWM not reset: includes warm-up)"
                if keep:
                    kept[mode] = keep
                    if len(kept) == 2:
                        a = np.load(kept["tiled"]).astype(np.float32)
                        b = np.load(kept["untiled"]).astype(np.float32)
                        note += f"tiled vs untiled mean |diff| {np.abs(a - b).mean():.2f}/255"
                print(f"{mp:5g} {r['w']:>5}x{r['h']:<5} {mode:>8} {r['seconds']:8.1f} {r['peak_kib'] / 1024:9.0f} "
                      f"{(r['peak_kib'] - r['base_kib']) / 1024:9.0f}  {note}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
