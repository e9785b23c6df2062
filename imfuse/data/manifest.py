"""manifest.json: what a prepared dataset holds, and the hash that names its version.

The hash covers what a training run depends on (every shard's path, example count and
SHA-256, the counts and the content-affecting options) and nothing about where or when
it was written, so the same input prepared twice gets the same hash.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from imfuse.errors import DataError

MANIFEST = "manifest.json"
QUARANTINE = "quarantine.jsonl"
FORMAT = "imfuse-dataset/1"
HASHED_KEYS = ("format", "counts", "shards", "image_sizes", "options", "features")


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def dataset_hash(manifest: dict) -> str:
    """sha256 over the hashed keys of a manifest, as "sha256:<hex>"."""
    body = {k: manifest.get(k) for k in HASHED_KEYS}
    return "sha256:" + hashlib.sha256(canonical_json(body)).hexdigest()


def reason_counts(quarantine: list[dict]) -> dict[str, int]:
    return dict(sorted(Counter(item["code"] for item in quarantine).items()))


def read_manifest(data_dir: str | Path) -> dict:
    """Load and sanity-check DIR/manifest.json (DataError naming the file otherwise)."""
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise DataError(
            f"{path}: no manifest; is '{data_dir}' a dataset made by `imfuse data prepare`?"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{path}: not an {FORMAT} manifest")
    if manifest.get("dataset_hash") != dataset_hash(manifest):
        raise DataError(f"{path}: manifest hash does not match its content (edited or corrupt)")
    return manifest


def read_dataset_hash(data_dir: str | Path) -> str:
    """A prepared dataset's version id, verified against its manifest (DataError otherwise)."""
    if not Path(data_dir).is_dir():
        raise DataError(f"data directory not found: {data_dir} (create it with `imfuse data prepare`)")
    return str(read_manifest(data_dir)["dataset_hash"])


def peek_dataset_hash(data_dir: str | Path | None) -> str | None:
    """The id a folder's manifest.json records, unverified, or None: for tags on runs of any folder."""
    if not data_dir:
        return None
    try:
        manifest = json.loads((Path(data_dir) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = manifest.get("dataset_hash") if isinstance(manifest, dict) else None
    return str(value) if value else None


def shard_entries(manifest: dict, kind: str, split: str) -> list[dict]:
    return list(manifest.get("shards", {}).get(kind, {}).get(split, []))
