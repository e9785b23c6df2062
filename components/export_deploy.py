"""KFP component `export-deploy`: SavedModel published to the serving base path (logic: steps/export_deploy.py)."""

# No `from __future__ import annotations`: KFP reads the real types of the signature.
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Input, Model

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def export_deploy_model(
    model: Input[Model],
    serving_base_path: str = "",
    model_name: str = "imfuse",
    registered_model: str = "",
    registered_version: int = 0,
    mlflow_uri: str = "",
) -> NamedTuple("ExportOutputs", [("serving_version", int), ("path", str)]):
    """Export the SavedModel to BASE/<model_name>/<next version>/ (local folder or s3://)."""
    from collections import namedtuple

    from components.steps.export_deploy import export_stage

    info = export_stage(model.path, serving_base_path, model_name, registered_model, registered_version, mlflow_uri)
    print(f"published {info['model_name']} version {info['serving_version']} at {info['path']}")
    outputs = namedtuple("ExportOutputs", ["serving_version", "path"])
    return outputs(info["serving_version"], info["path"])
