"""KFP component `register-model`: MLflow registry version, challenger (+ champion) (logic: steps/register.py)."""

# No `from __future__ import annotations`: KFP reads the real types of the signature.
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Input, Model

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register_model(
    model: Input[Model],
    mlflow_uri: str = "",
    promote: bool = True,
) -> NamedTuple("RegisterOutputs", [("registered_model", str), ("version", int), ("aliases", str)]):
    """New version of imfuse-<variant> (alias challenger; champion too when `promote`)."""
    from collections import namedtuple

    from components.steps.register import register_stage

    info = register_stage(model.path, mlflow_uri, promote, dict(model.metadata))
    print(f"registered {info['registered_model']} version {info['version']} (aliases: {', '.join(info['aliases'])})")
    outputs = namedtuple("RegisterOutputs", ["registered_model", "version", "aliases"])
    return outputs(info["registered_model"], info["version"], ",".join(info["aliases"]))
