"""`imfuse stylize`: one image, by Gatys optimisation or by a trained feed-forward model."""

from __future__ import annotations

import argparse
import sys
import time

from imfuse.errors import ConfigError
from imfuse.precision import PRECISIONS


def parse_style_spec(spec: str) -> tuple[str, float]:
    """'a.jpg:0.7' -> ('a.jpg', 0.7); 'a.jpg' or an URL without a weight -> weight 1.0."""
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            weight = float(tail)
        except ValueError:
            return spec, 1.0
        if not weight > 0:
            raise ConfigError(f"style weight must be positive in '{spec}'")
        return head, weight
    return spec, 1.0


def _tile_arg(text: str):
    """--tile value: 'auto' or a size in px (0 = off)."""
    if text.strip().lower() in ("auto", "off"):
        return text.strip().lower()
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a size in px, got {text!r}") from None
    if size != 0 and size < 64:
        raise argparse.ArgumentTypeError(f"tile size must be 0 (off) or at least 64 px, got {size}")
    return size


def _load_content_uint8(src):
    """The content as a uint8 (H, W, 3) array: a 24 MP photo takes 72 MB instead of 288 MB as float32."""
    import numpy as np

    from imfuse.images import open_validated, read_source_bytes

    data, name = read_source_bytes(src)
    im = open_validated(data, name)
    return np.asarray(im)[:, :, :3]


def _tile_progress(enabled: bool):
    """A `progress(done, total)` callback drawing a tqdm bar of the tiles (made on the first
    tile, when the plan's count is known), or None."""
    if not enabled:
        return None
    from tqdm import tqdm

    bar = None

    def report(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc="tiles", unit="tile", file=sys.stderr, dynamic_ncols=True)
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    return report


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "stylize",
        help="stylise one image (Gatys optimisation or a trained model)",
        description=(
            "Merge the content of CONTENT with the style of STYLE. CONTENT, STYLE and --mask may be "
            "paths or http(s) URLs. Several styles mix: --style a.jpg:0.7 --style b.jpg:0.3."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("content", help="content image (path or http(s) URL)")
    p.add_argument("style", nargs="?", help="style image (or use --style, repeatable, PATH[:WEIGHT])")
    p.add_argument("--style", dest="styles", action="append", default=[], metavar="PATH[:WEIGHT]")
    p.add_argument("-o", "--output", required=True, help="output image (.png, .jpg, ...)")
    p.add_argument("--method", choices=("optimize", "model"), default=None,
                   help="optimize: Gatys et al.'s optimisation; model: a trained feed-forward model "
                        "(default: model when --model or --embedding is given, else optimize)")
    p.add_argument("--mask", help="grayscale/alpha image: stylise only where it is white/opaque")
    p.add_argument("--preserve-color", action="store_true", help="transfer luminance only, keep the content's colours")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="compute precision of the loss network (optimize) or the style networks (model); "
                        "auto = bfloat16 on CPUs with AVX512-BF16/AMX, else float32")
    g = p.add_argument_group("optimize (Gatys et al.)")
    g.add_argument("--steps", type=int, default=100, help="optimiser iterations")
    g.add_argument("--size", type=int, default=512, help="longer side of the working resolution in px")
    g.add_argument("--optimizer", choices=("adam", "lbfgs"), default="lbfgs",
                   help="lbfgs reaches a given loss about 9x sooner than adam (bench/gatys_quality_time)")
    g.add_argument("--learning-rate", type=float, default=0.02, help="adam's step size")
    g.add_argument("--content-weight", type=float, default=None, help="alpha (default from LossWeights)")
    g.add_argument("--style-weight", type=float, default=None, help="beta (default from LossWeights)")
    g.add_argument("--tv-weight", type=float, default=None)
    g.add_argument("--init", choices=("content", "noise"), default="content")
    g.add_argument("--loss-network", default="vgg16-hed", help="vgg16-hed (offline), vgg16-imagenet, vgg19-imagenet")
    g.add_argument("--xla", action="store_true", help="XLA-compile the optimisation step (helps on GPU, not on CPU)")
    g.add_argument("--levels", type=int, default=1,
                   help="coarse-to-fine levels: 2 solves at half size first (cheap steps settle the large "
                        "shapes), then at --size")
    g.add_argument("--coarse-steps", type=int, default=100, help="steps at each level coarser than --size")
    m = p.add_argument_group("model (feed-forward)")
    m.add_argument("--model", help="trained model (.keras from `imfuse train`), or a folder from `imfuse models export-tflite`; "
                        "default: the shipped base model (base; base:VARIANT for another shipped variant)")
    m.add_argument("--strength", type=float, default=1.0, help="0 = content's own style, 1 = full style")
    m.add_argument("--tile", type=_tile_arg, default="auto", metavar="SIZE",
                   help="run the network on overlapping SIZE px tiles with shared normalisation statistics "
                        "and blended seams (bounded memory at any image size); 0 = whole image at once; "
                        "auto = 768 px tiles above 4 megapixels")
    m.add_argument("--style-scale", type=float, default=None, metavar="S",
                   help="brush-stroke size relative to the output, independent of its resolution: the network "
                        "runs at 1 megapixel / S^2 (same aspect ratio) and the result is resized to the content's "
                        "size (1 = strokes as in a 1 MP run, 2 = twice as large); default: the content's own size")
    m.add_argument("--embedding", metavar="STYLE.json",
                   help="a style fitted by `imfuse fit-style` (with the same model), instead of STYLE")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def load_styles(args) -> list[tuple]:
    """The positional STYLE and every --style PATH[:WEIGHT], as (rgb, weight) pairs."""
    from imfuse.images import load_image

    specs = ([args.style] if args.style else []) + list(args.styles)
    if not specs:
        raise ConfigError("give a style image: positional STYLE or --style PATH[:WEIGHT]")
    return [(load_image(path).rgb, weight) for path, weight in map(parse_style_spec, specs)]


def load_model_arg(args, tflite: bool = False):
    """(model, "model: WHICH, VARIANT variant, PRECISION compute") of --model and --precision;
    with `tflite`, a TFLite export folder loads as a TFLiteStylizer."""
    from imfuse.base_model import resolve_model_path
    from imfuse.networks import compute_precision, load_model
    from imfuse.tflite_stylizer import TFLiteStylizer, is_tflite_export

    if is_tflite_export(args.model):
        if not tflite:
            raise ConfigError(f"{args.model} is a TFLite export, which only `imfuse stylize` runs; "
                              "give a .keras model file or base")
        _check_tflite_options(args)
        lite = TFLiteStylizer(args.model)
        return lite, f"model: {lite.describe()}"
    path = resolve_model_path(args.model)
    model = load_model(path, precision=args.precision)
    shipped = args.model in (None, "", "base") or args.model.startswith("base:")
    which = "shipped base model" if shipped else str(path)
    return model, f"model: {which}, {model.variant.name} variant, {compute_precision(model)} compute"


def _check_tflite_options(args) -> None:
    """Options a TFLite export cannot honour: its size and precision were fixed when it was exported."""
    fixed = "a TFLite export runs at the content size and precision it was exported with"
    if args.tile not in ("auto", "off", 0):
        raise ConfigError(f"--tile needs a .keras model: {fixed}")
    if args.style_scale is not None:
        raise ConfigError(f"--style-scale needs a .keras model: {fixed} (export at the size you want instead)")
    if args.precision != "auto":
        raise ConfigError(f"--precision needs a .keras model: {fixed} (--quantize at export)")


def _tflite_size_note(lite, content_shape) -> str | None:
    """A line for a person when the content's shape differs from the export's (strokes stretch),
    or when the result is upscaled enough to look soft."""
    height, width = content_shape[:2]
    export_h, export_w = lite.content_size
    runs_at = f"the export runs at {export_w}x{export_h} px (width x height)"
    if abs(height / width - export_h / export_w) > 0.01 * export_h / export_w:
        return (f"note: {runs_at}, so this {width}x{height} content is resized to it and back, which stretches "
                f"the strokes; for this shape export with --content-size {round(height / 4) * 4}x{round(width / 4) * 4} "
                "(height x width, multiples of 4)")
    scale = max(height / export_h, width / export_w)
    if scale > 2:
        return (f"note: {runs_at}, so this {width}x{height} result is upscaled {scale:.1f}x and looks soft up close; "
                "for full detail use the .keras model (it tiles big images) or export a larger --content-size")
    return None


def _weights(args):
    from dataclasses import replace

    from imfuse.losses import LossWeights

    weights = LossWeights()
    for field, value in (("content", args.content_weight), ("style", args.style_weight), ("tv", args.tv_weight)):
        if value is not None:
            if value < 0:
                raise ConfigError(f"--{field}-weight must be >= 0")
            weights = replace(weights, **{field: value})
    return weights


def resolve_method(args) -> str:
    """--method, or what the other options imply: a --model or --embedding means the feed-forward model."""
    if args.method == "optimize" and args.model:
        raise ConfigError("--model needs --method model: --method optimize runs Gatys et al.'s optimisation, no model")
    return args.method or ("model" if args.model or args.embedding else "optimize")


def run(args) -> int:
    from imfuse.images import load_image, load_mask, save_image

    args.method = resolve_method(args)
    if args.embedding and (args.method != "model" or args.style or args.styles):
        raise ConfigError("--embedding replaces the style image and needs --method model")
    content = _load_content_uint8(args.content) if args.method == "model" else load_image(args.content).rgb
    styles = [] if args.embedding else load_styles(args)
    mask = load_mask(args.mask, content.shape[:2]) if args.mask else None
    started = time.perf_counter()
    if args.method == "optimize":
        from imfuse.config_io import config_from_args
        from imfuse.gatys import OptimizeConfig, run_optimization
        from imfuse.lossnet import build_loss_network
        from imfuse.precision import dtype_policy_for

        config = config_from_args(OptimizeConfig, args, weights=_weights(args), jit_compile=args.xla)
        config.validate()
        lossnet = build_loss_network(args.loss_network, dtype_policy=dtype_policy_for(args.precision))
        print(f"loss network: {lossnet.name} ({lossnet.weights_source})", file=sys.stderr)
        result = run_optimization(content, styles, config, lossnet, mask, progress=not args.no_progress)
        image = result.image
        first, last = result.history[0], result.history[-1]
        summary = f"loss {first['loss']:.4g} -> {last['loss']:.4g} (style {first['style_loss']:.4g} -> {last['style_loss']:.4g})"
    else:
        from imfuse.stylize import stylize_with_model
        from imfuse.tflite_stylizer import TFLiteStylizer

        model, described = load_model_arg(args, tflite=True)
        print(described, file=sys.stderr)
        tile, work_size = args.tile, None
        if isinstance(model, TFLiteStylizer):
            tile, work_size = 0, model.content_size  # the export's size is fixed: the image is resized to it
            note = _tflite_size_note(model, content.shape)
            if note:
                print(note, file=sys.stderr)
        if args.style_scale is not None and not args.style_scale > 0:
            raise ConfigError(f"--style-scale must be positive, got {args.style_scale}")
        embedding = None
        if args.embedding:
            from imfuse.style_fit import load_style_embedding

            embedding = load_style_embedding(args.embedding, model.embedding_dim)
        image = stylize_with_model(
            model, content, styles, args.strength, mask, args.preserve_color,
            tile=tile, style_scale=args.style_scale, as_uint8=True,
            progress=_tile_progress(not args.no_progress), embedding=embedding, work_size=work_size,
        )
        summary = f"strength {args.strength}" + (f", fitted style {args.embedding}" if args.embedding else "")

    path = save_image(image, args.output)  # uint8 arrays are written without a float copy
    print(f"wrote {path} ({image.shape[1]}x{image.shape[0]}, {args.method}, {summary}, "
          f"{time.perf_counter() - started:.1f}s)")
    return 0
