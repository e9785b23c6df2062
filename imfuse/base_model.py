"""The base models shipped inside the package: real stylisation without training anything.

Each is produced by the project's own `imfuse train` (see `imfuse/base_models/README.md`
for the exact command); the JSON record beside the weights says how (config, dataset
hash, steps, metrics). `imfuse stylize --method model`, `imfuse export` and `imfuse serve`
use it when no model is given; `imfuse train --init-from base` fine-tunes from it.
"""

from __future__ import annotations

import json
from pathlib import Path

from imfuse.errors import ConfigError

BASE_DIR = Path(__file__).resolve().parent / "base_models"
BASE = "base"


def base_model_path(variant: str = "reduced") -> Path:
    """The shipped `.keras` file of `variant`; ConfigError naming what exists otherwise."""
    path = BASE_DIR / f"{variant}.keras"
    if not path.is_file():
        shipped = sorted(p.stem for p in BASE_DIR.glob("*.keras")) or ["none"]
        raise ConfigError(f"no shipped base model for variant '{variant}' (shipped: {', '.join(shipped)})")
    return path


def resolve_model_path(spec: str | None, variant: str = "reduced") -> Path:
    """A model argument: None or 'base' -> the shipped base model; else the given path."""
    if spec in (None, "", BASE):
        return base_model_path(variant)
    return Path(spec)


def base_model_record(variant: str = "reduced") -> dict:
    """How the shipped base model was made (command, config, dataset hash, steps, metrics)."""
    path = BASE_DIR / f"{variant}.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text())
