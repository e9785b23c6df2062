"""Pipeline step 4 (blessed models only): register the model version in MLflow.

The model is logged into its training run as artefact `model` (`model.keras` plus
`saved_model/`, the exact SavedModel serving will load) and registered as a new version of `imfuse-<variant>` with alias `challenger`; with `promote`, the version
also becomes `champion` (only if its evaluation blessed it: the registry checks the
run's `imfuse.blessed` tag, so a hand-run of this step cannot promote an unblessed model).
"""

from __future__ import annotations

from pathlib import Path


def model_run(model_dir: str | Path, metadata: dict | None = None) -> tuple[str, str]:
    """(MLflow run id, variant) of a train step's Model artefact: its metadata, else its run files."""
    from imfuse.errors import ModelError
    from imfuse.tracking.runs import RUN_FILE, read_run_file
    from imfuse.training.checkpoints import CONFIG_FILE, read_run_config

    metadata = metadata or {}
    run_id = metadata.get("mlflow_run_id") or (read_run_file(model_dir) or {}).get("run_id")
    if not run_id:
        raise ModelError(f"{Path(model_dir) / RUN_FILE}: cannot read the model's MLflow run id")
    variant = metadata.get("variant") or ((read_run_config(model_dir) or {}).get("config") or {}).get("variant")
    if not variant:
        raise ModelError(f"{Path(model_dir) / CONFIG_FILE}: cannot read the model's variant")
    return str(run_id), str(variant)


def register_stage(model_dir: str, mlflow_uri: str, promote: bool, metadata: dict | None = None) -> dict:
    """Log model.keras + its SavedModel to the run, register them (challenger), optionally promote (champion)."""
    from imfuse.errors import ModelError
    from imfuse.tracking import TAG_PIPELINE_REGISTERED, registered_model_name
    from imfuse.tracking.registry import get_version, promote as promote_version
    from imfuse.tracking.runs import resolve_tracking_uri
    from imfuse.training.checkpoints import MODEL_FILE
    from imfuse.training.tracked import register_model

    uri = resolve_tracking_uri(mlflow_uri or None)
    run_id, variant = model_run(model_dir, metadata)
    model_file = Path(model_dir) / MODEL_FILE
    if not model_file.is_file():
        raise ModelError(f"{model_file} not found: the Model artefact holds no trained model")
    version = register_model(uri, run_id, model_file, variant, run_tags={TAG_PIPELINE_REGISTERED: "true"})
    name = registered_model_name(variant)
    info = promote_version(name, version, uri, require_blessing=True) if promote else get_version(name, version, uri)
    return {"registered_model": name, "version": int(version), "aliases": list(info.aliases), "run_id": run_id, "tracking_uri": uri}
