"""`imfuse fit-style`: fit a style's embedding once (minutes), reuse it for every photo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imfuse.errors import ConfigError
from imfuse.precision import PRECISIONS
from imfuse.style_fit import MAX_FIT_PHOTOS, OPTIMIZERS, StyleFitConfig

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def _photo_sources(specs: list[str]) -> list[str]:
    """Paths/URLs as given; a directory stands for the images directly inside it."""
    sources: list[str] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
            if not found:
                raise ConfigError(f"--photos {spec}: no images ({', '.join(PHOTO_SUFFIXES)}) in that folder")
            sources += found
        else:
            sources.append(spec)
    return sources


def _run(args: argparse.Namespace) -> int:
    from imfuse.base_model import resolve_model_path
    from imfuse.config_io import config_from_args
    from imfuse.images import load_image
    from imfuse.lossnet import build_loss_network
    from imfuse.networks import load_model
    from imfuse.precision import dtype_policy_for
    from imfuse.style_fit import (
        default_fit_photos, fit_record, fit_style_embedding, save_style_embedding,
    )
    from imfuse.training.scoring import center_square

    if not args.output.endswith(".json"):
        raise ConfigError(f"-o/--output must end in .json, got {args.output}")
    config = config_from_args(StyleFitConfig, args)
    config.validate()
    style = load_image(args.style).rgb
    if args.photos:
        sources = _photo_sources(args.photos)
        if len(sources) > MAX_FIT_PHOTOS:  # refused before decoding any (memory grows with the count)
            raise ConfigError(f"--photos gives {len(sources)} images; at most {MAX_FIT_PHOTOS} (a few dozen are plenty)")
        photos = [center_square(load_image(s).rgb, config.size) for s in sources]
        described = ", ".join(sources) if len(sources) <= 3 else f"{len(sources)} photos ({sources[0]}, ...)"
    else:
        photos = default_fit_photos(config.size)
        described = f"{len(photos)} dependency-shipped photos (imfuse.data.demo)"
    model = load_model(resolve_model_path(args.model))
    lossnet = build_loss_network(dtype_policy=dtype_policy_for(config.precision))
    steps = f"{config.steps} L-BFGS iterations" if config.optimizer == "lbfgs" else f"{config.steps} Adam steps"
    crop = f" ({config.crop} px centre crops)" if 0 < config.crop < config.size else ""
    print(f"fitting {args.style} on {described} with {args.model or 'base'}, {steps} at {config.size} px{crop}",
          file=sys.stderr)
    result = fit_style_embedding(model, style, photos, config, lossnet, progress=not args.no_progress)
    record = fit_record(config, args.model or "base", args.style, described, lossnet.name)
    path = save_style_embedding(args.output, result, record)
    first, last = result.history[0]["style_loss"], result.history[-1]["style_loss"]
    print(f"wrote {path}: style loss on the fit photos {first:.4g} -> {last:.4g}; use it with "
          f"`imfuse stylize --method model --embedding {path}` (same model)")
    return 0


def register(subparsers) -> None:
    d = StyleFitConfig()
    p = subparsers.add_parser(
        "fit-style",
        help="fit a style's embedding to the Gatys losses (once per style; better on styles unlike training)",
        description=(
            "The predictor embeds a new style in one pass; on styles unlike its training set that "
            "falls short. This fits the embedding itself to the style's Gram matrices over a few photos "
            "(the model stays as it is) and writes it as JSON for `imfuse stylize --embedding`, the "
            "stylize_with_embedding serving signature and `imfuse client --embedding`."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("style", help="style image (path or http(s) URL)")
    p.add_argument("-o", "--output", required=True, metavar="STYLE.json")
    p.add_argument("--model", default=None,
                   help="a .keras model, or base / base:VARIANT (default: the shipped base model); use the "
                        "fitted file with the same model")
    p.add_argument("--photos", action="append", default=[], metavar="PATH",
                   help="photos to fit on (files, URLs or folders; repeatable); default: the photos that "
                        "installed dependencies ship. Your own product photos fit best for those photos")
    p.add_argument("--steps", type=int, default=d.steps, help="L-BFGS iterations or Adam steps")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate, help="Adam's")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer,
                   help="adam: minibatches of flipped photos; lbfgs: every photo at each iteration")
    p.add_argument("--size", type=int, default=d.size, help="photos and style are fitted at this square size")
    p.add_argument("--crop", type=int, default=d.crop,
                   help="stylise only each photo's centre crop of this size (0: whole photos); the style stays "
                        "at --size, so its strokes keep their scale, at a fraction of the time")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="the loss network's compute")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run)
