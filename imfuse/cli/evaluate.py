"""`imfuse evaluate`: Gatys metrics of a trained model vs identity / Gatys / champion, and a blessing."""

from __future__ import annotations

import argparse

from imfuse.tracking import EVAL_STYLE_RATIO_REFERENCE, GATE_METRIC, eval_metric

EXIT_NOT_BLESSED = 3


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a trained model on held-out pairs and bless it against the champion",
        description=(
            "Mean content, style and TV loss over eval content x (train styles, unseen styles), next to "
            "the identity and Gatys baselines on the same pairs. Writes eval_report.json, blessing.json, "
            "sample_grid.png and training curves, and logs them into the model's MLflow run."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", required=True, help="RUN_DIR/model.keras from `imfuse train`")
    p.add_argument("--data", required=True, help="prepared dataset directory (`imfuse data prepare`)")
    p.add_argument("--mlflow-uri", default=None, help="tracking URI (default: MLFLOW_TRACKING_URI, the run's, or local)")
    p.add_argument("--run-id", default=None, help="MLflow run to log into (default: RUN_DIR/mlflow_run.json)")
    p.add_argument("--out", default=None, help="output directory (default: RUN_DIR/eval)")
    p.add_argument("--loss-network", default=None, help="vgg16-hed (default), vgg16-imagenet, vgg19-imagenet")
    p.add_argument("--image-size", type=int, default=128, help="pairs are scored at this square size")
    p.add_argument("--max-pairs", type=int, default=None, help="cap on content x style pairs (half unseen)")
    p.add_argument("--gatys-subset", type=int, default=2, help="pairs also solved by Gatys optimisation (0: skip)")
    p.add_argument("--gatys-steps", type=int, default=50)
    p.add_argument("--gate-metric", default=GATE_METRIC, help="lower is better")
    p.add_argument("--gate-tolerance", type=float, default=0.0, help="blessed if <= champion x (1 + tolerance)")
    p.add_argument("--registered-model", default=None, help="whose champion to compare with (default imfuse-<variant>)")
    p.add_argument("--no-reference-styles", dest="reference_styles", action="store_false",
                   help="do not score and gate on the real reference styles scikit-image ships (brick, "
                        "grass, gravel, hubble, ihc, retina); for a model meant for your styles only")
    p.add_argument("--no-mlflow", action="store_true", help="no tracking: no champion comparison, nothing logged")
    p.add_argument("--fail-if-not-blessed", action="store_true", help=f"exit {EXIT_NOT_BLESSED} when not blessed")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from imfuse.config_io import config_from_args
    from imfuse.training.evaluate import EvalConfig, evaluate

    cfg = config_from_args(EvalConfig, args, model_path=args.model, data_dir=args.data, out_dir=args.out,
                           tracking_uri=args.mlflow_uri, log_mlflow=not args.no_mlflow,
                           progress=not args.no_progress)
    result = evaluate(cfg)
    print(format_summary(result.report))
    print(f"blessing: {result.blessing.summary()}")
    print(f"report: {result.out_dir / 'eval_report.json'}")
    if result.run_id:
        print(f"logged to MLflow run {result.run_id} ({result.report['tracking_uri']})")
    if args.fail_if_not_blessed and not result.blessing.blessed:
        return EXIT_NOT_BLESSED
    return 0


def format_summary(report: dict) -> str:
    """Model vs identity (vs Gatys) per loss term, on the same pairs."""
    metrics = report["metrics"]

    def m(name: str) -> float:
        return metrics[eval_metric(name)]

    def row(label: str, prefix: str = "") -> str:
        return f"{label:24}" + "".join(f"{m(f'{prefix}{term}_loss'):12.5g}" for term in ("content", "style", "tv"))

    lines = [
        f"{report['counts']['pairs']} pairs at {report['image_size']} px, loss network {report['loss_network']}",
        f"{'':24}{'content':>12}{'style':>12}{'tv':>12}",
        row("model"),
        row("identity", "identity_"),
    ]
    if eval_metric("gatys_style_loss") in metrics:
        n = len(report["baselines"]["gatys"]["pairs"])
        lines.append(row(f"gatys ({n} pairs)", "gatys_"))
        lines.append(f"{f'model on those {n}':24}{'':12}{m('gatys_model_style_loss'):12.5g}")
    lines.append(
        f"style loss seen {m('style_loss_seen'):.5g}, unseen {m('style_loss_unseen'):.5g}; "
        f"per pair, style loss / the photo's (geometric mean): seen {m('style_ratio_seen'):.3g}, "
        f"unseen {m('style_ratio_unseen'):.3g}; {m('images_per_second'):.2f} images/s"
    )
    if EVAL_STYLE_RATIO_REFERENCE in metrics:
        lines.append(f"real reference styles: style loss / the photo's {metrics[EVAL_STYLE_RATIO_REFERENCE]:.3g}")
    return "\n".join(lines)
