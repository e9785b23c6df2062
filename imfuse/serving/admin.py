"""The model-management control plane: who may reload the config, and to which paths.

HandleReloadConfigRequest can unload every model and point the server at any folder,
so `imfuse serve` keeps it off unless --enable-model-management is given, and then
serves it only on a separate admin port bound to 127.0.0.1 (never the Predict port).
A reloaded config may only name base paths inside the configured model roots
(--model-root; by default the folders holding the base paths given at start), checked
on resolved paths so `..` and symlinks cannot step outside; the store is then given the
resolved paths, so a symlink swapped after the check cannot redirect later polls.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import grpc

from imfuse.serving.config import ModelConfig
from imfuse.serving.status import StatusError, invalid_argument

ADMIN_HOST = "127.0.0.1"
from imfuse.serving.defaults import ADMIN_PORT as DEFAULT_ADMIN_PORT  # noqa: E402


@dataclass(frozen=True)
class ModelRoots:
    """Folders a reloaded model config's base paths must lie inside."""

    roots: tuple[Path, ...]

    @classmethod
    def of(cls, roots: list[str] | tuple[str, ...], models: list[ModelConfig]) -> "ModelRoots":
        """The given roots, or the parents of the start-up base paths when none are given."""
        chosen = [Path(r) for r in roots] if roots else [Path(m.base_path).parent for m in models]
        return cls(tuple(dict.fromkeys(p.expanduser().resolve() for p in chosen)))

    def confine(self, models: list[ModelConfig]) -> list[ModelConfig]:
        """The models with their base paths resolved and checked: load these, not the originals.

        PERMISSION_DENIED names the first base path outside every root (nothing else happens).
        """
        confined = []
        for m in models:
            if "://" in m.base_path:
                raise invalid_argument(
                    f"model {m.name!r}: base_path must be a local folder for imfuse serve, got a URL",
                )
            resolved = Path(m.base_path).expanduser().resolve()
            if not any(resolved != root and resolved.is_relative_to(root) for root in self.roots):
                raise StatusError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"model {m.name!r}: base_path {m.base_path!r} is outside the allowed model roots "
                    f"{[str(r) for r in self.roots]} (--model-root); config not applied",
                )
            confined.append(replace(m, base_path=str(resolved)))
        return confined
