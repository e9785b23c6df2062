"""Exported SavedModel and Beam batch stylisation vs their in-process baselines.

A. Signature overhead at 512 px: `serving_default` (encoded bytes in, PNG out, decode /
   resize / encode in the graph) vs the Keras model called in-process on float arrays
   inside a tf.function (the fastest in-process path). Same content/style; calls are
   interleaved per round and the median is reported.
B. Request batching: one `serving_default` call with 8 same-size contents vs 8 calls
   with one content each (the graph batches same-size contents through the network).
C. Batch pipeline: `imfuse batch-stylize` (Beam DirectRunner, RunInference, quarantine,
   summary) on N real images vs a plain Python loop doing the same work (read,
   validate, call `stylize_with_embedding`, write PNG) with the same SavedModel.

    python bench/export_batch.py [--variant reduced] [--size 512] [--rounds 7] [--images 12] [--parts ABC]

Weights do not change latency, so the model uses random init (predictor_weights none).
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import imfuse  # noqa: E402,F401  (first: it switches TensorFlow's oneDNN kernels on, see imfuse/__init__)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from imfuse.export import export_saved_model  # noqa: E402
from imfuse.images import encode_png, load_image, resize_to  # noqa: E402
from imfuse.networks import build_model  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _full_inputs(**kw):
    base = {"strength": tf.constant([1.0]), "preserve_color": tf.constant([False]), "mask_image": tf.constant([b""])}
    base.update(kw)
    return base


def bench_signature(model, loaded, size: int, rounds: int) -> None:
    content = resize_to(load_image(DATA / "content" / "tubingen.jpg").rgb, (size * 3 // 4, size))
    style = resize_to(load_image(DATA / "styles" / "starry_night.jpg").rgb, (256, 256))
    c_png, s_png = encode_png(content), encode_png(style)
    keras_fn = tf.function(lambda c, s: model({"content": c, "style": s}, training=False))
    c_arr, s_arr = tf.constant(content[None]), tf.constant(style[None])
    sig = loaded.signatures["serving_default"]
    req = dict(content_image=tf.constant([c_png]), style_image=tf.constant([s_png]), **_full_inputs())

    def run_keras():
        np.asarray(keras_fn(c_arr, s_arr))

    def run_sig():
        sig(**req)["stylized_image"].numpy()

    for fn in (run_keras, run_sig):  # warm-up (tracing)
        fn()
    times = {"keras": [], "sig": []}
    for _ in range(rounds):
        times["keras"].append(_timed(run_keras))
        times["sig"].append(_timed(run_sig))
    k, s = statistics.median(times["keras"]), statistics.median(times["sig"])
    print(f"A. content {content.shape[1]}x{content.shape[0]}, style 256")
    print(f"   keras tf.function on arrays : {k * 1000:8.1f} ms")
    print(f"   serving_default bytes->PNG  : {s * 1000:8.1f} ms   ratio {s / k:.2f}x")


def bench_batching(loaded, rounds: int, n: int = 8, size: int = 256) -> None:
    paths = sorted(glob.glob(str(DATA / "content" / "*.jpg")))[:n]
    pngs = [encode_png(resize_to(load_image(p).rgb, (size, size))) for p in paths]
    style = encode_png(resize_to(load_image(DATA / "styles" / "starry_night.jpg").rgb, (256, 256)))
    sig = loaded.signatures["serving_default"]

    def batched():
        sig(content_image=tf.constant(pngs), style_image=tf.constant([style]), **_full_inputs())

    def singles():
        for p in pngs:
            sig(content_image=tf.constant([p]), style_image=tf.constant([style]), **_full_inputs())

    batched(), singles()
    tb, ts = [], []
    for _ in range(rounds):
        tb.append(_timed(batched))
        ts.append(_timed(singles))
    b, s = statistics.median(tb), statistics.median(ts)
    print(f"B. {len(pngs)} contents at {size}px")
    print(f"   {len(pngs)} single-image calls           : {s * 1000:8.1f} ms")
    print(f"   one call with a batch of {len(pngs)}     : {b * 1000:8.1f} ms   speed-up {s / b:.2f}x")


def direct_loop(model_dir: str, paths: list[str], style: str, out: Path, max_side: int) -> None:
    """The baseline: the same work as the pipeline, in a plain loop, no Beam."""
    from imfuse.batch_stylize import validate_content

    module = tf.saved_model.load(model_dir)
    emb = module.signatures["style_embedding"](style_image=tf.constant([Path(style).read_bytes()]))["embedding"]
    sig = module.signatures["stylize_with_embedding"]
    out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        verdict = validate_content((path, Path(path).read_bytes()), max_side)
        if verdict[0] != "ok":
            continue
        png = sig(content_image=tf.constant([verdict[2]]), embedding=emb, **_full_inputs())["stylized_image"]
        (out / (Path(path).stem + ".png")).write_bytes(png.numpy()[0])


def bench_pipeline(model_dir: str, n_images: int, max_side: int) -> None:
    from imfuse.batch_stylize import BatchConfig, run_batch_stylize

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        originals = sorted(glob.glob(str(DATA / "content" / "*.jpg")))
        paths = []
        for i in range(n_images):
            dst = src / f"{i:03d}_{Path(originals[i % len(originals)]).name}"
            dst.write_bytes(Path(originals[i % len(originals)]).read_bytes())
            paths.append(str(dst))
        style = str(DATA / "styles" / "starry_night.jpg")
        direct = _timed(lambda: direct_loop(model_dir, paths, style, Path(tmp) / "direct", max_side))
        config = BatchConfig(model=model_dir, input_glob=str(src / "*.jpg"), style=style,
                             output=str(Path(tmp) / "beam"), max_side=max_side, progress=False)
        beam = _timed(lambda: run_batch_stylize(config))
        written = len(list((Path(tmp) / "beam").glob("*.png")))
    print(f"C. {n_images} real images, longer side <= {max_side}px (model load included in both)")
    print(f"   plain loop (validate, signature, write): {direct:7.2f} s  ({n_images / direct:.2f} img/s)")
    print(f"   imfuse batch-stylize (Beam DirectRunner): {beam:7.2f} s  ({written / beam:.2f} img/s)"
          f"   ratio {beam / direct:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="reduced")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--max-side", type=int, default=512)
    ap.add_argument("--parts", default="ABC", help="which benchmarks to run, e.g. AC")
    args = ap.parse_args()
    model = build_model(args.variant, predictor_weights="none")
    with tempfile.TemporaryDirectory() as base:
        path = export_saved_model(model, base)
        loaded = tf.saved_model.load(str(path))
        print(f"model: {args.variant} (random init), {os.cpu_count()} CPU cores, TF {tf.__version__}")
        if "A" in args.parts:
            bench_signature(model, loaded, args.size, args.rounds)
        if "B" in args.parts:
            bench_batching(loaded, args.rounds)
        if "C" in args.parts:
            bench_pipeline(str(path), args.images, args.max_side)


if __name__ == "__main__":
    main()
