"""A training run with its MLflow glue: the flow `imfuse train` and the pipeline's train step share.

Starts (or, on resume, continues) the run's MLflow run, logs step metrics live, then the
run's config and history as artefacts, and optionally registers model.keras with the
SavedModel serving loads. Kept out of the CLI so components call the library, not argv.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from imfuse.errors import ConfigError
from imfuse.training.config import TrainConfig


@dataclass
class TrackedTraining:
    """What a tracked run produced: the trainer's result, its MLflow run id and registered version."""

    result: object  # imfuse.training.trainer.TrainResult
    run_id: str | None = None
    registered_version: int | str | None = None


def train_tracked(
    config: TrainConfig,
    mlflow_uri: str | None = None,
    *,
    track: bool = True,
    register: bool = False,
    progress: bool = True,
) -> TrackedTraining:
    """Train `config`, logging to MLflow unless `track` is False (non-chief workers never log)."""
    if register and not track:
        raise ConfigError("registering needs MLflow tracking")
    from imfuse.training.trainer import check_run_dir, chief_from_tf_config, train

    check_run_dir(config)  # bad data or a mismatched resume fails before MLflow is touched
    if not track or (config.strategy == "multiworker" and not chief_from_tf_config()):
        return TrackedTraining(train(config, progress=progress))

    from imfuse.tracking.runs import TrainingRun
    from imfuse.training.checkpoints import CONFIG_FILE, HISTORY_FILE

    with TrainingRun(mlflow_uri, config.out_dir, config.variant, config.to_dict()) as tracking:
        result = train(config, on_log=lambda step, metrics: tracking.log_metrics(metrics, step), progress=progress)
        for name in (CONFIG_FILE, HISTORY_FILE):
            path = os.path.join(config.out_dir, name)
            if os.path.isfile(path):
                tracking.log_artifact(path)
        version = None
        if register:
            version = register_model(tracking.tracking_uri, tracking.run_id, result.model_path, config.variant)
        return TrackedTraining(result, tracking.run_id, version)


def register_model(
    tracking_uri: str | None, run_id: str, model_file: str | os.PathLike, variant: str,
    run_tags: dict[str, str] | None = None,
) -> int:
    """Log model.keras with the SavedModel serving will load into the run (artefact `model`)
    and register it as a new `imfuse-<variant>` version with alias challenger.

    The one registration flow: `imfuse train --register` calls it inside its run, the
    pipeline's register step after the run ended.
    """
    from imfuse.export import package_model
    from imfuse.tracking import MODEL_ARTIFACT, TAG_FILE, TAG_FORMAT, registered_model_name
    from imfuse.tracking.registry import register_run_model
    from imfuse.tracking.runs import log_to_run

    with tempfile.TemporaryDirectory(prefix="imfuse-register-") as scratch:
        package = package_model(model_file, os.path.join(scratch, "model"))
        log_to_run(tracking_uri, run_id, artifacts=[(package, MODEL_ARTIFACT)], tags=run_tags)
    tags = {TAG_FORMAT: "keras+saved_model", TAG_FILE: os.path.basename(model_file)}
    return register_run_model(tracking_uri, run_id, registered_model_name(variant), tags=tags)
