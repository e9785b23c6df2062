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

    With a registry version, `imfuse.publish.publish_registered` publishes what the registry
    holds (as `imfuse export --from-registry` does); otherwise RUN_DIR/model.keras is exported.
    """
    from imfuse.errors import ConfigError
    from imfuse.publish import check_base_path, publish_model, publish_registered
    from imfuse.serving.defaults import MODEL_NAME

    base = (serving_base_path or os.environ.get("IMFUSE_SERVING_BASE_PATH", "")).strip()
    name = (model_name or os.environ.get("IMFUSE_MODEL_NAME", "") or MODEL_NAME).strip()
    if not base:
        raise ConfigError("no serving base path: set the pipeline parameter serving_base_path or IMFUSE_SERVING_BASE_PATH")
    check_base_path(base)  # a bad base path fails before the model is loaded
    if registered_model and registered_version:
        version, path = publish_registered(base, name, registered_model, registered_version,
                                           mlflow_uri=mlflow_uri or None, client=client)
    else:
        from imfuse.networks import load_model
        from imfuse.training.checkpoints import MODEL_FILE

        version, path = publish_model(base, name, model=load_model(Path(model_dir) / MODEL_FILE), client=client)
    return {"serving_version": version, "path": path, "model_name": name}
