"""Benchmark: Beam ingest (imfuse data prepare) vs a bare multiprocessing Pillow loop.

Both sides do the same per-image work on the same files: decode, convert to RGB, resize
the shorter side (content 256; style 256 and 512), encode PNG (compress level 1). The
Beam side also hashes, validates, dedupes, splits and writes TFRecords + manifest, and
its time includes pipeline start-up. Files: ../shared/data images replicated to --files
copies, each with one appended byte so dedupe keeps them all.

    python bench/ingest.py [--files 400] [--workers 2] [--mode in_memory] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import logging
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def replicate(dst: Path, n_files: int) -> tuple[list[Path], list[Path]]:
    sources = {
        "content": sorted((SHARED / "content").glob("*.jpg")),
        "style": sorted((SHARED / "styles").glob("*.jpg")),
    }
    if not sources["content"] or not sources["style"]:
        sys.exit(f"no images under {SHARED}")
    out: dict[str, list[Path]] = {"content": [], "style": []}
    for kind, files in sources.items():
        folder = dst / kind
        folder.mkdir(parents=True)
        for i in range(n_files // 2):
            src = files[i % len(files)]
            target = folder / f"{i:04d}_{src.name}"
            target.write_bytes(src.read_bytes() + bytes([i % 256, i // 256]))
            out[kind].append(target)
    return out["content"], out["style"]


def _resize_shorter(im: Image.Image, size: int) -> Image.Image:
    w, h = im.size
    scale = size / min(w, h)
    return im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS,
                     reducing_gap=3.0)


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def bare_work(job: tuple[str, str]) -> int:
    kind, path = job
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    total = len(_png(_resize_shorter(rgb, 256)))
    if kind == "style":
        total += len(_png(_resize_shorter(rgb, 512)))
    return total


def run_bare(content: list[Path], styles: list[Path], workers: int) -> float:
    jobs = [("content", str(p)) for p in content] + [("style", str(p)) for p in styles]
    start = time.perf_counter()
    with mp.get_context("fork").Pool(workers) as pool:
        sum(pool.imap_unordered(bare_work, jobs, chunksize=2))
    return time.perf_counter() - start


def run_beam(src: Path, out: Path, workers: int, mode: str) -> float:
    from imfuse.data.prepare import PrepareConfig, prepare_dataset

    cfg = PrepareConfig(
        content=str(src / "content"),
        styles=str(src / "style"),
        out=str(out),
        progress=False,
        beam_args=[f"--direct_num_workers={workers}", f"--direct_running_mode={mode}"],
    )
    start = time.perf_counter()
    manifest = prepare_dataset(cfg)
    elapsed = time.perf_counter() - start
    assert manifest["counts"]["accepted"] == manifest["counts"]["matched"], manifest["counts"]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mode", default="in_memory",
                        choices=("multi_threading", "multi_processing", "in_memory"))
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each side")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import apache_beam  # noqa: F401 - import cost is not part of either measurement

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        content, styles = replicate(root / "src", args.files)
        n = len(content) + len(styles)
        # Alternate the two sides so load from other processes hits both alike.
        bare_times, beam_times = [], []
        for r in range(args.repeats):
            bare_times.append(run_bare(content, styles, args.workers))
            out = root / f"out{r}"
            beam_times.append(run_beam(root / "src", out, args.workers, args.mode))
            shutil.rmtree(out)
        bare, beam = min(bare_times), min(beam_times)
        ratios = sorted(b / m for b, m in zip(bare_times, beam_times))
    print(f"files: {n} ({len(content)} content, {len(styles)} style), workers: {args.workers}, "
          f"beam mode: {args.mode}")
    print(f"bare multiprocessing Pillow: {bare:6.2f} s  {n / bare:7.1f} images/s")
    print(f"Beam ingest (DirectRunner): {beam:6.2f} s  {n / beam:7.1f} images/s")
    print(f"ratio beam/bare: {bare / beam:.2f}x best-vs-best, median of paired runs "
          f"{ratios[len(ratios) // 2]:.2f}x (target >= 0.7x)")


if __name__ == "__main__":
    main()
