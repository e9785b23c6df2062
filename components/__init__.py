"""KFP v2 components of the imfuse training pipeline, one module per stage.

Each is a lightweight Python component whose `base_image` is the project image
(`components/Dockerfile`, tag = package version, `install_kfp_package=False`: the image
already has imfuse and kfp, so nothing is pip-installed when a step starts). kfp.local's
SubprocessRunner ignores `base_image`, so the same definitions run in this venv.
Component bodies call plain functions in `components.steps`; at run time `kfp.dsl` has
no `component` decorator, so this package imports the component modules lazily.
"""

from __future__ import annotations

import importlib

_COMPONENTS = {
    "prepare_data": "components.prepare",
    "train_model": "components.train",
    "evaluate_model": "components.evaluate",
    "register_model": "components.register",
    "export_deploy_model": "components.export_deploy",
    "IMAGE": "components.image",
    "GPU_IMAGE": "components.image",
    "image": "components.image",
}

__all__ = sorted(_COMPONENTS)


def __getattr__(name: str):
    if name in _COMPONENTS:
        return getattr(importlib.import_module(_COMPONENTS[name]), name)
    raise AttributeError(f"module 'components' has no attribute {name!r}")
