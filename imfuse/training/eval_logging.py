"""Logging an evaluation to MLflow: the training run's (or a new run's) metrics, artefacts
and the gate's tags."""

from __future__ import annotations

import os
from pathlib import Path


def tracking_target(cfg, run_dir: Path) -> tuple[str, str | None]:
    """(tracking URI, run id): explicit > MLFLOW_TRACKING_URI > the run's mlflow_run.json > default."""
    from imfuse.tracking.runs import read_run_file, resolve_tracking_uri

    saved = read_run_file(run_dir) or {}
    explicit = cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    uri = resolve_tracking_uri(explicit or saved.get("tracking_uri"))
    run_id = cfg.run_id or (saved.get("run_id") if (not explicit or saved.get("tracking_uri") == uri) else None)
    return uri, run_id


def last_step(history: Path) -> int:
    from imfuse.training.progress import read_history

    records = read_history(history)
    return max((step for step, _ in records), default=0)


def log_evaluation(cfg, uri, run_id, report, metrics, blessing, out_dir, manifest, history, loss_network, variant) -> str:
    from imfuse.tracking import (
        TAG_BLESSED,
        TAG_DATASET_HASH,
        TAG_EVAL_DATASET_HASH,
        TAG_EVAL_GATE_METRIC,
        TAG_EVAL_IMAGE_SIZE,
        TAG_EVAL_LOSS_NETWORK,
        TAG_GIT_COMMIT,
        TAG_LOSS_NETWORK,
        TAG_VARIANT,
    )
    from imfuse.tracking.runs import git_commit, log_to_run, start_run

    if run_id is None:
        run_id = start_run(
            uri,
            run_name=f"evaluate-{Path(cfg.model_path).stem}",
            tags={TAG_VARIANT: variant, TAG_LOSS_NETWORK: loss_network,
                  TAG_DATASET_HASH: report["dataset_hash"] or "unknown", TAG_GIT_COMMIT: git_commit()},
        )
    artifacts = [(out_dir / "blessing.json", "eval"), (out_dir / "sample_grid.png", "eval")]
    if (out_dir / "curves").is_dir():
        artifacts.append((out_dir / "curves", "eval/curves"))
    if manifest.is_file():
        artifacts.append((manifest, "dataset"))
    log_to_run(
        uri,
        run_id,
        metrics=metrics,
        step=last_step(history),
        artifacts=artifacts,
        tags={
            TAG_BLESSED: str(blessing.blessed).lower(),
            TAG_EVAL_GATE_METRIC: cfg.gate_metric,
            TAG_EVAL_LOSS_NETWORK: loss_network,
            TAG_EVAL_IMAGE_SIZE: cfg.image_size,
            TAG_EVAL_DATASET_HASH: report["dataset_hash"] or "unknown",
        },
    )
    return run_id
