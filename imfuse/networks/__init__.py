"""Style networks: transformer, style predictor, combined model, describe.

See docs/ARCHITECTURE.md; REFERENCE-ARCH.md gives the layout these follow. The variant
configs are light; the model API imports TensorFlow, so it loads on first use (the CLI
builds its parser, defaults included, without TensorFlow).
"""

from __future__ import annotations

import importlib

from imfuse.networks.config import VARIANTS, VariantConfig, variant_config

_MODEL_NAMES = (
    "StyleTransferModel",
    "build_model",
    "cached_on",
    "compiled_calls",
    "compute_precision",
    "load_model",
    "preprocess_style",
    "save_model",
    "with_precision",
)
_ALIASES = {"StyleModel": "StyleTransferModel"}  # name used in docs/ARCHITECTURE.md

__all__ = ["VARIANTS", "VariantConfig", "variant_config", *_MODEL_NAMES, *_ALIASES]


def __getattr__(name: str):
    if name in _MODEL_NAMES or name in _ALIASES:
        return getattr(importlib.import_module("imfuse.networks.model"), _ALIASES.get(name, name))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
