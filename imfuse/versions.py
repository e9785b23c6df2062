"""Integer version folders, as TF Serving reads a model's base path.

TF Serving loads only subfolders named by an integer and ignores the rest, which is how
exports stage their work (`.tmp-*`, `.claim-*`) beside live versions. Every place that
lists versions (export, batch inference, serving, the local pipeline, the S3 publisher)
reads them through here so they agree on what counts.
"""

from __future__ import annotations

import os
from pathlib import Path


def version_number(name: str) -> int | None:
    """The version a folder or S3 prefix name stands for (ASCII digits only), else None."""
    return int(name) if name.isascii() and name.isdigit() else None


def is_saved_model(path: str | os.PathLike) -> bool:
    """A SavedModel folder: saved_model.pb or .pbtxt in it (TF Serving's rule for a complete version)."""
    return any((Path(path) / name).is_file() for name in ("saved_model.pb", "saved_model.pbtxt"))


def version_dirs(base: str | os.PathLike) -> dict[int, Path]:
    """Integer-named subfolders of `base` by version ({} when `base` is not a folder)."""
    base = Path(base)
    if not base.is_dir():
        return {}
    numbered = ((version_number(child.name), child) for child in base.iterdir())
    return {number: child for number, child in numbered if number is not None and child.is_dir()}


def saved_model_versions(base: str | os.PathLike) -> dict[int, Path]:
    """Complete integer version folders under a base path (the others are ignored, as TF Serving does)."""
    return {v: path for v, path in version_dirs(base).items() if is_saved_model(path)}
