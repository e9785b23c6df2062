"""Logging an evaluation to MLflow: the training run's (or a new run's) metrics, artefacts
and the gate's tags."""

from __future__ import annotations

import os
from pathlib import Path

from imfuse.data.manifest import MANIFEST
from imfuse.tracking import (DATASET_ARTIFACT, EVAL_ARTIFACT, EVAL_CURVES_ARTIFACT, TAG_BLESSED, TAG_DATASET_HASH,
                             TAG_EVAL_DATASET_HASH, TAG_EVAL_GATE_METRIC, TAG_EVAL_IMAGE_SIZE, TAG_EVAL_LOSS_NETWORK,
                             TAG_GIT_COMMIT, TAG_LOSS_NETWORK, TAG_VARIANT)
from imfuse.tracking.runs import git_commit, log_to_run, read_run_file, resolve_tracking_uri, start_run
from imfuse.training.progress import read_history


def tracking_target(cfg, run_dir: Path) -> tuple[str, str | None]:
    """(tracking URI, run id): explicit > MLFLOW_TRACKING_URI > the run's mlflow_run.json > default."""
    saved = read_run_file(run_dir) or {}
    explicit = cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    uri = resolve_tracking_uri(explicit or saved.get("tracking_uri"))
    run_id = cfg.run_id or (saved.get("run_id") if (not explicit or saved.get("tracking_uri") == uri) else None)
    return uri, run_id


def last_step(history: Path) -> int:
    return max((step for step, _ in read_history(history)), default=0)


def evaluation_run(cfg, uri: str, run_id: str | None, report: dict) -> str:
    """The run the evaluation logs into: the training's, else a new `evaluate-<model>` run."""
    if run_id is not None:
        return run_id
    return start_run(
        uri,
        run_name=f"evaluate-{Path(cfg.model_path).stem}",
        tags={TAG_VARIANT: report["variant"], TAG_LOSS_NETWORK: report["loss_network"],
              TAG_DATASET_HASH: report["dataset_hash"] or "unknown", TAG_GIT_COMMIT: git_commit()},
    )


def log_evaluation(cfg, uri: str, run_id: str, report: dict, out_dir: Path, history: Path) -> None:
    """Metrics, the gate's tags and the evaluation's files (report, blessing, grid, curves,
    the dataset manifest) into run `run_id`."""
    artifacts = [(out_dir / name, EVAL_ARTIFACT) for name in ("blessing.json", "sample_grid.png", "eval_report.json")]
    if (out_dir / "curves").is_dir():
        artifacts.append((out_dir / "curves", EVAL_CURVES_ARTIFACT))
    manifest = Path(cfg.data_dir) / MANIFEST
    if manifest.is_file():
        artifacts.append((manifest, DATASET_ARTIFACT))
    tags = {TAG_BLESSED: str(report["blessing"]["blessed"]).lower(), TAG_EVAL_GATE_METRIC: cfg.gate_metric,
            TAG_EVAL_LOSS_NETWORK: report["loss_network"], TAG_EVAL_IMAGE_SIZE: cfg.image_size,
            TAG_EVAL_DATASET_HASH: report["dataset_hash"] or "unknown"}
    log_to_run(uri, run_id, metrics=report["metrics"], step=last_step(history), artifacts=artifacts, tags=tags)
