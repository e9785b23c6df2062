"""`--init-from`: where a warm-started training run takes its first weights.

The continue-training-from-production pattern: begin from the shipped base model, a
`.keras` file, or a registered version (`models:/NAME@ALIAS`, `models:/NAME/VERSION`).
"""

from __future__ import annotations

import os
from pathlib import Path

from imfuse.base_model import BASE, base_model_path, shipped_variants
from imfuse.errors import ConfigError
from imfuse.tracking import GATE_METRIC, registered_model_name
from imfuse.tracking.registry import champion_metric, download_model

MODELS_SCHEME = "models:/"
AUTO = "auto"  # the registry's champion when there is one, else the shipped base, else none


def registered_keras(name: str, which: str, tracking_uri: str | None) -> Path:
    """Local `.keras` file of registered version/alias `which` of `name` (ModelError if it holds none)."""
    from imfuse.export import packaged_keras

    return packaged_keras(download_model(name, which, tracking_uri))


def _registered(spec: str, tracking_uri: str | None) -> str:
    ref = spec[len(MODELS_SCHEME):]
    name, _, which = ref.partition("@" if "@" in ref else "/")
    if not name or not which:
        raise ConfigError(f"--init-from {spec!r}: use models:/NAME@ALIAS or models:/NAME/VERSION")
    return str(registered_keras(name, which, tracking_uri))


def auto_spec(variant: str, tracking_uri: str | None = None) -> str | None:
    """What 'auto' stands for, decided without downloading anything: the registry's champion
    (models:/NAME/VERSION), else 'base' for a shipped variant, else None."""
    name = registered_model_name(variant)
    champion, _ = champion_metric(name, GATE_METRIC, tracking_uri)
    if champion is not None:
        return f"{MODELS_SCHEME}{name}/{champion.version}"
    return BASE if variant in shipped_variants() else None


def resolve_init(spec: str, variant: str, tracking_uri: str | None = None) -> str | None:
    """'auto' | 'base' | PATH | models:/... -> a local `.keras` path (ConfigError if there is
    none); 'auto' gives None when there is neither a champion nor a shipped base."""
    if spec == AUTO:
        spec = auto_spec(variant, tracking_uri)
        if spec is None:
            return None
    if spec == BASE:
        return str(base_model_path(variant))
    if spec.startswith(MODELS_SCHEME):
        return _registered(spec, tracking_uri)
    path = os.path.expanduser(spec)
    if not (path.endswith(".keras") and os.path.isfile(path)):
        raise ConfigError(f"--init-from {spec!r}: not 'base', a models:/ URI or an existing .keras file")
    return path
