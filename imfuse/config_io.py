"""Shared helper for the project's config dataclasses (saved as JSON, read back)."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from imfuse.errors import ConfigError

T = TypeVar("T")


def config_from_dict(cls: type[T], data: dict, what: str) -> T:
    """Rebuild a config dataclass from its `asdict` form; unknown keys are a ConfigError
    (a file written by another imfuse version must not be half-understood)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what} option(s): {', '.join(unknown)}")
    return cls(**data)
