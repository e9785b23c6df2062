"""Training loop, checkpoints and evaluation.

`TrainConfig` is light; `train`/`TrainResult` (and the evaluation API) import
TensorFlow, so they load on first use.
"""

from __future__ import annotations

import importlib

from imfuse.training.config import TrainConfig

_LAZY = {
    "train": "imfuse.training.trainer",
    "TrainResult": "imfuse.training.trainer",
    "evaluate": "imfuse.training.evaluate",
    "EvalConfig": "imfuse.training.evaluate",
}

__all__ = ["TrainConfig", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
