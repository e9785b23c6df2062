"""`imfuse pipeline compile|run --local|submit|schedule`: the Kubeflow training pipeline."""

from __future__ import annotations

import argparse

from imfuse.serving.defaults import MODEL_NAME


# The pipeline's own defaults (a cluster run) for the flags' help; pipelines/training_pipeline.py
# holds them (KFP reads literals from its signature) and tests/test_cli_defaults.py checks these.
CLUSTER_DEFAULTS = {"variant": "reduced", "steps": 1000, "image_size": 256, "batch_size": 4, "model_name": MODEL_NAME,
                    "eval_max_pairs": 8, "gatys_steps": 50}


def _params(p: argparse.ArgumentParser) -> None:
    """Pipeline parameters as flags; unset flags keep the pipeline's (or --local's) defaults."""
    from pipelines.runner import LOCAL_DEFAULTS, VARIANTS

    def d(name: str) -> str:
        local = getattr(LOCAL_DEFAULTS, name)
        return f"(default: {local} locally, {CLUSTER_DEFAULTS[name]} on a cluster)"

    fixed = "(default: %s)"  # the same locally and on a cluster, or said in words
    g = p.add_argument_group("pipeline parameters")
    g.add_argument("--variant", choices=VARIANTS, help=d("variant"))
    g.add_argument("--steps", type=int, help=d("steps"))
    g.add_argument("--image-size", type=int, help=d("image_size"))
    g.add_argument("--batch-size", type=int, help=d("batch_size"))
    g.add_argument("--content-source", help="content images (folder, glob, list file, s3://...); empty: demo data")
    g.add_argument("--styles-source", help="style images; empty: demo data")
    g.add_argument("--mlflow-uri", help=fixed % ("WORKDIR/mlflow.db locally; the imfuse-settings ConfigMap's on a cluster"))
    g.add_argument(
        "--serving-base-path", help=fixed % ("WORKDIR/serving locally; the ConfigMap's (s3://models) on a cluster")
    )
    g.add_argument("--model-name", help=d("model_name"))
    g.add_argument("--eval-max-pairs", type=int, help=f"content x style pairs scored by evaluation {d('eval_max_pairs')}")
    g.add_argument("--gatys-steps", type=int, help=f"Gatys baseline steps on one pair, 0 skips it {d('gatys_steps')}")
    g.add_argument("--gate-tolerance", type=float, help="blessed if <= champion x (1 + tolerance)")
    g.add_argument("--reference-styles", action=argparse.BooleanOptionalAction, default=None,
                   help=fixed % ("on: the gate also compares on real images scikit-image ships; "
                                 "off for a model meant for your styles only"))
    g.add_argument("--init-from", metavar="auto|base|PATH|models:/NAME@ALIAS",
                   help=fixed % ("auto: the registry's champion, else the shipped base model"))
    g.add_argument("--learning-rate", type=float, help=fixed % ("1e-4: a fine-tune"))
    g.add_argument("--teacher", metavar="lite|init|PATH", help=fixed % ("none: the Gatys losses alone"))
    g.add_argument("--distill-only", action=argparse.BooleanOptionalAction, default=None,
                   help=fixed % ("off; on: train on the teacher's L1 term alone, no Gatys terms"))
    g.add_argument("--no-promote", dest="promote", action="store_const", const=False, default=None,
                   help="register blessed models as challenger only (default: also champion)")


def register(subparsers) -> None:
    from pipelines.runner import DEFAULT_WORKDIR

    p = subparsers.add_parser(
        "pipeline",
        help="Kubeflow pipeline: compile it, run it locally, submit or schedule it on a cluster",
        description="prepare -> train -> evaluate -> if blessed: register (MLflow) + export (SavedModel for serving).",
    )
    sub = p.add_subparsers(dest="pipeline_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    c = sub.add_parser("compile", help="write the pipeline as KFP IR YAML")
    c.add_argument("-o", "--output", default="pipelines/imfuse_pipeline.yaml", help="YAML file to write")
    c.set_defaults(func=run_compile)

    r = sub.add_parser(
        "run",
        help="run the whole pipeline (kfp.local: demo data to a served model)",
        description="Run every step in this Python environment with kfp.local; ends with a registered model "
        "version, a SavedModel under WORKDIR/serving/<model>/<version>, and how to serve and call it. "
        "Exit status 3: the model was not blessed and no model is served (nothing registered or exported); "
        "a refused model leaves an earlier run's served version, or on a first run the shipped base model, served.",
    )
    r.add_argument("--local", action="store_true", required=True, help="run with kfp.local (required; "
                   "use `submit` for a cluster)")
    r.add_argument("--workdir", default=DEFAULT_WORKDIR,
                   help="MLflow store, serving base path, task outputs and the run's log (WORKDIR/logs)")
    r.add_argument("-v", "--verbose", action="store_true",
                   help="also stream kfp.local's full output (executor JSON, every task's log) to the terminal; "
                   "by default the terminal shows one line per stage and the full output goes to "
                   "WORKDIR/logs/pipeline-<time>.log")
    _params(r)
    r.set_defaults(func=run_local)

    for name, helptext in (("submit", "start one pipeline run on a KFP cluster"),
                           ("schedule", "create a recurring run (scheduled retraining) on a KFP cluster")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--host", required=True, help="KFP API/UI URL, e.g. http://localhost:8080")
        s.add_argument("--experiment", default="imfuse", help="KFP experiment (default: imfuse)")
        if name == "submit":
            s.add_argument("--run-name", default=None)
            s.set_defaults(func=run_submit)
        else:
            s.add_argument("--cron", required=True, help='cron expression, e.g. "0 3 * * 0" (Sundays 03:00)')
            s.add_argument("--name", default="imfuse-retraining", help="recurring run name")
            s.add_argument("--refresh-data", action="store_true",
                           help="disable caching for all steps so prepare re-reads growing sources")
            s.set_defaults(func=run_schedule)
        _params(s)


def _collect(args):
    from imfuse.config_io import config_from_args
    from pipelines.runner import PipelineParams

    return config_from_args(PipelineParams, args)


def run_compile(args) -> int:
    from pathlib import Path

    from pipelines.training_pipeline import compile_pipeline

    from components.image import image

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    compile_pipeline(str(out))
    print(f"wrote {out} (images {image()}, {image(gpu=True)})")
    return 0


def run_local(args) -> int:
    from pipelines.runner import next_steps, run_local as run

    result = run(_collect(args), args.workdir, verbose=args.verbose)
    print(next_steps(result), flush=True)
    return 0 if result.serving else 3


def run_submit(args) -> int:
    from pipelines.runner import submit

    run_id, url = submit(args.host, _collect(args), experiment=args.experiment, run_name=args.run_name)
    print(f"submitted run {run_id}: {url}")
    return 0


def run_schedule(args) -> int:
    from pipelines.runner import schedule

    job_id, cron = schedule(
        args.host, args.cron, _collect(args), name=args.name, experiment=args.experiment, refresh_data=args.refresh_data
    )
    print(f"recurring run {args.name} ({job_id}) scheduled with cron '{cron}' (KFP cron: seconds first)")
    return 0
