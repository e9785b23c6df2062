"""Pipeline step 5 (blessed models only): publish the SavedModel where serving reads it.

The serving base path is a local/mounted folder (kfp.local, a PVC) or `s3://bucket/prefix`
(the cluster's MinIO bucket `s3://models`); `imfuse.publish` does the publishing for this
step and for `imfuse export` alike. TF Serving (or `imfuse serve`) picks up the new,
highest version by polling, and in the cluster the model-sync sidecar copies it into the
serving pod. The registry version is tagged with the serving version and path, so either
can be traced to the other.
"""

from __future__ import annotations

import os
from pathlib import Path


def export_stage(
    model_dir: str,
    serving_base_path: str,
    model_name: str,
    registered_model: str = "",
    registered_version: int = 0,
    mlflow_uri: str = "",
    client=None,
) -> dict:
    """Publish the next serving version; returns version and path.

    With a registry version, the SavedModel registered with it is published as is, so
    serving runs exactly what the registry holds; otherwise RUN_DIR/model.keras is exported.
    """
    from imfuse.errors import ConfigError
    from imfuse.publish import check_base_path, publish_model, tag_registry_version

    base = (serving_base_path or os.environ.get("IMFUSE_SERVING_BASE_PATH", "")).strip()
    name = (model_name or os.environ.get("IMFUSE_MODEL_NAME", "") or "imfuse").strip()
    if not base:
        raise ConfigError("no serving base path: set the pipeline parameter serving_base_path or IMFUSE_SERVING_BASE_PATH")
    check_base_path(base)  # a bad base path fails before the model is loaded
    from imfuse.export import packaged_saved_model
    from imfuse.networks import load_model

    saved_model, model = None, None
    if registered_model and registered_version:
        from imfuse.tracking.registry import download_model

        downloaded = download_model(registered_model, str(registered_version), mlflow_uri or None)
        saved_model = packaged_saved_model(downloaded) if downloaded.is_dir() else None
    if saved_model is None:
        model = load_model(Path(model_dir) / "model.keras")
    version, path = publish_model(base, name, model=model, saved_model=saved_model, client=client)
    if registered_model and registered_version:
        tag_registry_version(mlflow_uri, registered_model, registered_version, version, path)
    return {"serving_version": version, "path": path, "model_name": name}
