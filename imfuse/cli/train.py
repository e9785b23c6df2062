"""`imfuse train`: train (or resume) an arbitrary-style model on a prepared dataset.

Rerunning the same command resumes from the newest checkpoint in --out. Metrics go to
MLflow (experiment `imfuse`, same run on resume) unless --no-mlflow.

Distribution (--strategy): `default` is one device; `mirrored` replicates over all GPUs
of this machine (--batch-size is the global batch, split across them); `multiworker`
runs MultiWorkerMirroredStrategy over the cluster in the TF_CONFIG environment variable,
e.g. on each of two machines (index 0 and 1):
    TF_CONFIG='{"cluster": {"worker": ["node0:12345", "node1:12345"]}, "task": {"type": "worker", "index": 0}}'
Every worker runs the same command; worker 0 (or the `chief`) writes --out and MLflow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

from imfuse.errors import ConfigError
from imfuse.tracking import TRAIN_LOSS


def _default(name: str):
    from imfuse.config_io import field_default
    from imfuse.training.config import TrainConfig

    return field_default(TrainConfig, name)


def register(subparsers) -> None:
    from imfuse.networks.config import PREDICTORS
    from imfuse.training.config import LOSS_PRECISIONS, LR_SCHEDULES, STRATEGIES, TRAIN_ONLY, VARIANT_NAMES

    p = subparsers.add_parser(
        "train",
        help="train a style transfer model on a prepared dataset (resumable)",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def option(flag: str, **kwargs) -> None:
        """A TrainConfig field's flag (--a-b sets a_b), defaulting to the field's default."""
        p.add_argument(flag, default=_default(flag[2:].replace("-", "_")), **kwargs)

    p.add_argument("--data", required=True, metavar="DIR", help="prepared dataset (imfuse data prepare)")
    p.add_argument("--variant", required=True, choices=VARIANT_NAMES)
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="checkpoints/, model.keras, history.jsonl")
    option("--steps", type=int, help="target step count (default %(default)s)")
    option("--batch-size", type=int, help="global batch (default %(default)s)")
    option("--image-size", type=int, help="content crop in px (default %(default)s)")
    option("--style-size", type=int, help="style crop in px; a new model's predictor input too "
           "(an --init-from model keeps its own) (default %(default)s)")
    option("--style-zoom", type=float,
           help="largest random scale of style crops (default %(default)s; 1 keeps the style's own stroke size)")
    option("--learning-rate", type=float, help="peak Adam learning rate (default %(default)g)")
    option("--lr-schedule", choices=LR_SCHEDULES)
    option("--warmup-steps", type=int, help="linear warm-up steps (default %(default)s)")
    option("--content-weight", type=float)
    option("--style-weight", type=float)
    option("--tv-weight", type=float)
    p.add_argument(
        "--teacher",
        metavar="lite|init|MODEL.keras|SAVEDMODEL_DIR",
        help="distil from a teacher: its stylised images become an L1 target beside the Gatys losses "
        "(init: the --init-from model, which keeps a fine-tune close to it)",
    )
    option("--teacher-weight", type=float,
           help=f"weight of the teacher's L1 term (default {_default('teacher_weight'):g})")
    option(
        "--balance-styles",
        action=argparse.BooleanOptionalAction,
        help="scale each image's loss gradient by the batch mean over its own loss, so muted styles "
        "count as much as ones with huge Gram values (default: off)",
    )
    option("--train-only", choices=TRAIN_ONLY,
           help="predictor: only the style predictor learns; the --init-from model's transformer and "
           "style heads stay frozen. transformer: only the transformer learns; the init's predictor and "
           "style heads stay frozen (default: %(default)s)")
    p.add_argument(
        "--init-from",
        metavar="auto|base|PATH|models:/NAME@ALIAS",
        help="warm start: the shipped base model, a .keras file, a registered version, or auto "
        "(the registry's champion, else the shipped base)",
    )
    option("--loss-network", help="vgg16-hed (offline), vgg16-imagenet, vgg19-imagenet")
    option(
        "--loss-precision",
        choices=LOSS_PRECISIONS,
        help="loss-network compute; auto = bfloat16 on CPUs with AVX512-BF16/AMX",
    )
    p.add_argument("--predictor", choices=PREDICTORS,
                   help="style predictor (default: the variant's, vgg16_hed: frozen pretrained VGG16-HED statistics)")
    option("--predictor-weights", metavar="none|imagenet|PATH",
           help="initial weights of the inception_v3 / small predictors")
    option("--checkpoint-every", type=int, help="steps between checkpoints (default %(default)s)")
    option("--log-every", type=int, help="steps between metric logs (default %(default)s)")
    option("--seed", type=int)
    p.add_argument("--mixed-precision", action="store_true", help="mixed_float16 with loss scaling (GPUs)")
    option("--strategy", choices=STRATEGIES)
    p.add_argument(
        "--jit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="XLA-compile the forward/backward pass (default: on with a GPU, off on CPU)",
    )
    p.add_argument("--mlflow-uri", metavar="URI", help="tracking store/server (default: MLFLOW_TRACKING_URI or local)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.add_argument("--register", action="store_true",
                   help="register model.keras + its SavedModel as a new version (alias challenger)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from imfuse.config_io import config_from_args as build
    from imfuse.training.config import TrainConfig
    from imfuse.training.warm_start import resolve_init

    init_from = resolve_init(args.init_from, args.variant, args.mlflow_uri) if args.init_from else None
    return build(TrainConfig, args, data_dir=args.data, out_dir=args.out, init_from=init_from)


def run(args: argparse.Namespace) -> int:
    if args.register and args.no_mlflow:
        raise ConfigError("--register needs MLflow; drop --no-mlflow")
    config = config_from_args(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.formatwarning = lambda message, category, *rest, **kw: f"imfuse: warning: {message}\n"  # one line
    from imfuse.training.tracked import train_tracked

    run_ = train_tracked(config, args.mlflow_uri, track=not args.no_mlflow, register=args.register,
                         progress=not args.no_progress)
    _report(run_.result, run_.run_id, run_.registered_version)
    return 0


def _report(result, run_id: str | None, version) -> None:
    summary = {
        "model": result.model_path,
        "step": result.step,
        "resumed_from": result.start_step,
        "loss": result.metrics.get(TRAIN_LOSS),
        "images_per_second": round(result.images_per_second, 3),
        "input_wait_fraction": round(result.input_wait_fraction, 4),
    }
    if run_id:
        summary["mlflow_run_id"] = run_id
    if version is not None:
        summary["registered_version"] = version
    print(json.dumps(summary), file=sys.stdout)
