"""`imfuse stylize`: one image, by Gatys optimisation or by a trained feed-forward model."""

from __future__ import annotations

import argparse
import sys
import time

from imfuse.errors import ConfigError


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
    p.add_argument("--method", choices=("optimize", "model"), default="optimize")
    p.add_argument("--mask", help="grayscale/alpha image: stylise only where it is white/opaque")
    p.add_argument("--preserve-color", action="store_true", help="transfer luminance only, keep the content's colours")
    p.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="compute precision of the loss network (optimize) or the style networks (model); "
                        "auto = bfloat16 on CPUs with AVX512-BF16/AMX, else float32")
    g = p.add_argument_group("optimize (Gatys et al.)")
    g.add_argument("--steps", type=int, default=300)
    g.add_argument("--size", type=int, default=512, help="longer side of the working resolution in px")
    g.add_argument("--optimizer", choices=("adam", "lbfgs"), default="adam")
    g.add_argument("--learning-rate", type=float, default=0.02)
    g.add_argument("--content-weight", type=float, default=None, help="alpha (default from LossWeights)")
    g.add_argument("--style-weight", type=float, default=None, help="beta (default from LossWeights)")
    g.add_argument("--tv-weight", type=float, default=None)
    g.add_argument("--init", choices=("content", "noise"), default="content")
    g.add_argument("--loss-network", default="vgg16-hed", help="vgg16-hed (offline), vgg16-imagenet, vgg19-imagenet")
    g.add_argument("--xla", action="store_true", help="XLA-compile the optimisation step (helps on GPU, not on CPU)")
    m = p.add_argument_group("model (feed-forward)")
    m.add_argument("--model", help="trained model (.keras from `imfuse train`); default: the shipped base model")
    m.add_argument("--strength", type=float, default=1.0, help="0 = content's own style, 1 = full style")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _load_styles(args) -> list[tuple]:
    from imfuse.images import load_image

    specs = ([args.style] if args.style else []) + list(args.styles)
    if not specs:
        raise ConfigError("give a style image: positional STYLE or --style PATH[:WEIGHT]")
    return [(load_image(path).rgb, weight) for path, weight in map(parse_style_spec, specs)]


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


def run(args) -> int:
    from imfuse.images import load_image, load_mask, save_image

    content = load_image(args.content).rgb
    styles = _load_styles(args)
    mask = load_mask(args.mask, content.shape[:2]) if args.mask else None
    started = time.perf_counter()
    if args.method == "optimize":
        from imfuse.lossnet import build_loss_network
        from imfuse.optimize import OptimizeConfig, run_optimization
        from imfuse.precision import dtype_policy_for

        config = OptimizeConfig(
            steps=args.steps,
            size=args.size,
            optimizer=args.optimizer,
            learning_rate=args.learning_rate,
            weights=_weights(args),
            init=args.init,
            preserve_color=args.preserve_color,
            jit_compile=args.xla,
            precision=args.precision,
        )
        config.validate()
        lossnet = build_loss_network(args.loss_network, dtype_policy=dtype_policy_for(args.precision))
        print(f"loss network: {lossnet.name} ({lossnet.weights_source})", file=sys.stderr)
        result = run_optimization(content, styles, config, lossnet, mask, progress=not args.no_progress)
        image = result.image
        first, last = result.history[0], result.history[-1]
        summary = f"loss {first['loss']:.4g} -> {last['loss']:.4g} (style {first['style_loss']:.4g} -> {last['style_loss']:.4g})"
    else:
        from imfuse.networks import compute_precision, load_model
        from imfuse.stylize import stylize_with_model

        from imfuse.base_model import resolve_model_path

        path = resolve_model_path(args.model)
        model = load_model(path, precision=args.precision)
        which = "shipped base model" if args.model in (None, "base") else str(path)
        print(f"model: {which}, {model.variant.name} variant, {compute_precision(model)} compute", file=sys.stderr)
        image = stylize_with_model(model, content, styles, args.strength, mask, args.preserve_color)
        summary = f"strength {args.strength}"
    path = save_image(image, args.output)
    print(f"wrote {path} ({image.shape[1]}x{image.shape[0]}, {args.method}, {summary}, "
          f"{time.perf_counter() - started:.1f}s)")
    return 0
