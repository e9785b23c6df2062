"""Training and evaluation runs in the `imfuse` experiment.

One MLflow run per training; rerunning the same training (resume) continues the same
run because its id is kept in `RUN_DIR/mlflow_run.json`. Evaluation logs into that run.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping

from imfuse.data.manifest import peek_dataset_hash
from imfuse.errors import TrackingError
from imfuse.fsutil import atomic_write_text
from imfuse.tracking import (
    EXPERIMENT,
    TAG_DATASET_HASH,
    TAG_GIT_COMMIT,
    TAG_LOSS_NETWORK,
    TAG_RESUMED_PARAM_PREFIX,
    TAG_VARIANT,
)
from imfuse.tracking.client import (
    artifact_root_for,
    get_client,
    open_store,
    resolve_tracking_uri,
    tracking_errors,
)

__all__ = [
    "RUN_FILE",
    "TrainingRun",
    "ensure_experiment",
    "flatten_params",
    "git_commit",
    "log_to_run",
    "read_run_file",
    "resolve_tracking_uri",
    "start_run",
]

RUN_FILE = "mlflow_run.json"
_MAX_PARAM_LEN = 6000


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> {"a.b": "value"} as MLflow params (strings, length-capped)."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, f"{name}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            flat[name] = text[:_MAX_PARAM_LEN]
    return flat


def git_commit() -> str:
    """HEAD of the source checkout (read-only `git rev-parse`), or "unknown"."""
    where = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def ensure_experiment(client, uri: str) -> str:
    """Id of the `imfuse` experiment, created (artifacts next to a local store) or restored if needed."""
    with tracking_errors(uri, f"looking up experiment '{EXPERIMENT}'"):
        exp = client.get_experiment_by_name(EXPERIMENT)
        if exp is None:
            root = artifact_root_for(uri)
            location = Path(root).resolve().as_uri() if root else None
            if root:
                Path(root).mkdir(parents=True, exist_ok=True)
            return client.create_experiment(EXPERIMENT, artifact_location=location)
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id


def read_run_file(run_dir: str | os.PathLike) -> dict | None:
    """RUN_DIR/mlflow_run.json ({"run_id", "tracking_uri", "experiment_id"}) or None."""
    path = Path(run_dir) / RUN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise TrackingError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or not data.get("run_id"):
        raise TrackingError(f"{path} has no run_id")
    return data


def _metric_entities(metrics: Mapping[str, float], step: int):
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    values = {key: float(value) for key, value in metrics.items()}
    return [Metric(key=k, value=v, timestamp=now, step=int(step)) for k, v in values.items() if math.isfinite(v)]


def _log_batch(client, uri: str, run_id: str, metrics=(), params=(), tags=()) -> None:
    from mlflow.entities import Param, RunTag

    params = [Param(k, v) for k, v in dict(params).items()]
    tags = [RunTag(k, str(v)) for k, v in dict(tags).items()]
    with tracking_errors(uri, f"logging to run {run_id}"):
        client.log_batch(run_id, metrics=list(metrics), params=params, tags=tags)  # mlflow splits it into batches


def _log_path(client, uri: str, run_id: str, path: str | os.PathLike, artifact_path: str | None) -> None:
    path = Path(path)
    if not path.exists():
        raise TrackingError(f"artifact to log does not exist: {path}")
    with tracking_errors(uri, f"uploading {path.name} to run {run_id}"):
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path)
        else:
            client.log_artifact(run_id, str(path), artifact_path)


class TrainingRun:
    """Context manager: start or resume the MLflow run of one training directory.

    `with TrainingRun(uri, run_dir, "reduced", params, tags) as run:` then
    `run.log_metrics(...)`, `run.log_artifact(...)`; `imfuse.training.tracked.register_model`
    registers the model.
    The run ends FINISHED, or FAILED/KILLED when the block raises.
    """

    def __init__(
        self,
        tracking_uri: str | None,
        run_dir: str | os.PathLike,
        variant: str,
        params: Mapping[str, Any],
        tags: Mapping[str, Any] | None = None,
    ):
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.run_dir = Path(run_dir)
        self.variant = variant
        self.params = flatten_params(params)
        self.tags = {k: str(v) for k, v in (tags or {}).items()}
        self.run_id: str | None = None
        self.resumed = False
        self._client = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "TrainingRun":
        self._client = get_client(self.tracking_uri)
        experiment_id = ensure_experiment(self._client, self.tracking_uri)
        previous = self._resumable_run()
        tags = self._standard_tags()
        with tracking_errors(self.tracking_uri, "starting the run"):
            if previous is not None:
                self.run_id, self.resumed = previous.info.run_id, True
                self._client.update_run(self.run_id, status="RUNNING")
                params = self._new_params(previous.data.params, tags)
            else:
                run = self._client.create_run(experiment_id, tags=tags, run_name=self.run_dir.resolve().name)
                self.run_id = run.info.run_id
                params = self.params
        _log_batch(self._client, self.tracking_uri, self.run_id, params=params, tags=tags)
        record = {"run_id": self.run_id, "tracking_uri": self.tracking_uri, "experiment_id": experiment_id}
        atomic_write_text(Path(self.run_dir) / RUN_FILE, json.dumps(record, indent=2, sort_keys=True))
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.run_id is None:
            return
        status = "FINISHED"
        if exc_type is not None:
            status = "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        try:
            with tracking_errors(self.tracking_uri, "closing the run"):
                self._client.set_terminated(self.run_id, status=status)
        except TrackingError:
            if exc_type is None:
                raise

    def _resumable_run(self):
        saved = read_run_file(self.run_dir)
        if not saved or saved.get("tracking_uri") != self.tracking_uri:
            return None
        try:
            run = self._client.get_run(saved["run_id"])
        except Exception:  # noqa: BLE001 - the store was wiped or the run deleted: start afresh
            return None
        return None if run.info.lifecycle_stage == "deleted" else run

    def _standard_tags(self) -> dict[str, str]:
        tags = dict(self.tags)
        tags.setdefault(TAG_VARIANT, self.variant)
        loss_network = self.params.get("loss_network")
        if loss_network:
            tags.setdefault(TAG_LOSS_NETWORK, loss_network.strip('"'))
        data_hash = peek_dataset_hash(self.params.get("data_dir", "").strip('"'))
        if data_hash:
            tags.setdefault(TAG_DATASET_HASH, data_hash)
        tags.setdefault(TAG_GIT_COMMIT, git_commit())
        return tags

    def _new_params(self, logged: Mapping[str, str], tags: dict[str, str]) -> dict[str, str]:
        """Params are immutable in MLflow: on resume log new keys, record changed ones as tags."""
        fresh = {}
        for key, value in self.params.items():
            if key not in logged:
                fresh[key] = value
            elif logged[key] != value:
                tags[TAG_RESUMED_PARAM_PREFIX + key] = value
        return fresh

    # ------------------------------------------------------------------ logging
    def _require_active(self):
        if self.run_id is None:
            raise TrackingError("TrainingRun used outside its `with` block")
        return self._client

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Step metrics (names as in CONTRACTS, e.g. `train/loss`); non-finite values skipped."""
        _log_batch(self._require_active(), self.tracking_uri, self.run_id, metrics=_metric_entities(metrics, step))

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """A file, or a directory's contents, under `artifact_path` of the run."""
        _log_path(self._require_active(), self.tracking_uri, self.run_id, path, artifact_path)


# ---------------------------------------------------------------------- evaluation side
def start_run(tracking_uri: str | None, run_name: str, tags: Mapping[str, Any] | None = None) -> str:
    """A new finished-on-creation run in `imfuse` (evaluation of a model with no training run)."""
    uri, client = open_store(tracking_uri)
    experiment_id = ensure_experiment(client, uri)
    with tracking_errors(uri, "creating a run"):
        run = client.create_run(experiment_id, tags={k: str(v) for k, v in (tags or {}).items()}, run_name=run_name)
        client.set_terminated(run.info.run_id, status="FINISHED")
    return run.info.run_id


def log_to_run(
    tracking_uri: str | None,
    run_id: str,
    metrics: Mapping[str, float] | None = None,
    step: int = 0,
    artifacts: list[tuple[str | os.PathLike, str | None]] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> None:
    """Add metrics, tags and artefacts to an existing run (e.g. evaluation into the training run)."""
    uri, client = open_store(tracking_uri)
    with tracking_errors(uri, f"finding run {run_id}"):
        client.get_run(run_id)
    _log_batch(client, uri, run_id, metrics=_metric_entities(metrics or {}, step), tags=tags or {})
    for path, artifact_path in artifacts or []:
        _log_path(client, uri, run_id, path, artifact_path)

