"""`--init-from`: where a warm-started training run takes its first weights.

The continue-training-from-production pattern: begin from the shipped base model, a
`.keras` file, or a registered version (`models:/NAME@ALIAS`, `models:/NAME/VERSION`).
"""

from __future__ import annotations

import os
from pathlib import Path

from imfuse.errors import ConfigError

MODELS_SCHEME = "models:/"
AUTO = "auto"  # the registry's champion when there is one, else the shipped base, else none


def registered_keras(name: str, which: str, tracking_uri: str | None) -> Path:
    """Local `.keras` file of registered version/alias `which` of `name` (ModelError if it holds none)."""
    from imfuse.export import packaged_keras
    from imfuse.tracking.registry import download_model

    return packaged_keras(download_model(name, which, tracking_uri))


def _registered(spec: str, tracking_uri: str | None) -> str:
    ref = spec[len(MODELS_SCHEME):]
    if "@" in ref:
        name, _, which = ref.partition("@")
    else:
        name, _, which = ref.partition("/")
    if not name or not which:
        raise ConfigError(f"--init-from {spec!r}: use models:/NAME@ALIAS or models:/NAME/VERSION")
    return str(registered_keras(name, which, tracking_uri))


def _champion(variant: str, tracking_uri: str | None):
    """The registry's champion of `variant` (its best version by the gate metric), or None."""
    from imfuse.tracking import GATE_METRIC, registered_model_name
    from imfuse.tracking.registry import champion_metric

    return champion_metric(registered_model_name(variant), GATE_METRIC, tracking_uri)[0]


def _auto(variant: str, tracking_uri: str | None) -> str | None:
    from imfuse.base_model import base_model_path, shipped_variants
    from imfuse.tracking import registered_model_name

    champion = _champion(variant, tracking_uri)
    if champion is not None:
        return str(registered_keras(registered_model_name(variant), str(champion.version), tracking_uri))
    if variant in shipped_variants():
        return str(base_model_path(variant))
    return None


def starts_from_base(spec: str, variant: str, tracking_uri: str | None = None) -> bool:
    """Whether --init-from `spec` begins at the shipped base model: 'base', or 'auto' while no
    champion is registered (decided without downloading anything)."""
    from imfuse.base_model import BASE, shipped_variants

    if variant not in shipped_variants() or spec not in (AUTO, BASE):
        return False
    return spec == BASE or _champion(variant, tracking_uri) is None


def resolve_init(spec: str, variant: str, tracking_uri: str | None = None) -> str | None:
    """'auto' | 'base' | PATH | models:/... -> a local `.keras` path (ConfigError if there is
    none); 'auto' gives None when there is neither a champion nor a shipped base."""
    from imfuse.base_model import BASE, base_model_path

    if spec == AUTO:
        return _auto(variant, tracking_uri)
    if spec == BASE:
        return str(base_model_path(variant))
    if spec.startswith(MODELS_SCHEME):
        return _registered(spec, tracking_uri)
    path = os.path.expanduser(spec)
    if not (path.endswith(".keras") and os.path.isfile(path)):
        raise ConfigError(f"--init-from {spec!r}: not 'base', a models:/ URI or an existing .keras file")
    return path
