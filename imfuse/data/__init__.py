"""Dataset stage: Beam ingest (`prepare_dataset`), demo data, and the tf.data reader.

Submodules import Beam or TensorFlow only when used, so `import imfuse.data` is cheap.
Layout and feature names are fixed in docs/CONTRACTS.md; see `imfuse.data.examples`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PrepareConfig": "imfuse.data.prepare",
    "prepare_dataset": "imfuse.data.prepare",
    "write_demo_data": "imfuse.data.demo",
    "make_dataset": "imfuse.data.reader",
    "count_examples": "imfuse.data.reader",
    "read_manifest": "imfuse.data.manifest",
    "match_sources": "imfuse.data.sources",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'imfuse.data' has no attribute {name!r}")
