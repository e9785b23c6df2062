"""Shared helpers for the project's config dataclasses (saved as JSON, read back; the
one source of the CLI flags' defaults)."""

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


def field_default(cls: type, name: str):
    """A config dataclass field's default, for the CLI flag that fills it: the dataclass is
    the one source of defaults."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise ValueError(f"{cls.__name__}.{name} has no default")


def config_from_args(cls: type[T], args, **overrides) -> T:
    """cls(...) from the argparse fields named like its own (plus overrides): flags and
    config fields keep one name, so the mapping is not written out by hand."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **overrides})
