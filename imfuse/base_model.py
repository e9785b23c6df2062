"""The base models shipped inside the package: real stylisation without training anything.

Each is produced by the project's own `imfuse train` (`scripts/train_base.sh`; see
`imfuse/base_models/README.md`), and the JSON record beside the weights says how (config,
dataset hash, steps, metrics). `imfuse stylize --method model`, `imfuse export` and
`imfuse serve` use it when no model is given; `imfuse train --init-from base` fine-tunes it.

The weights ship as float16 in a compressed `.npz` (1 MB, not a 2.5 MB `.keras` file in
git); the first use builds the `.keras` model from them into a cache folder keyed by the
weights' hash, so every consumer of a `.keras` path works unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from imfuse.errors import ConfigError

BASE_DIR = Path(__file__).resolve().parent / "base_models"
BASE = "base"


def cache_dir() -> Path:
    """Where shipped models are materialised: IMFUSE_CACHE, else ~/.cache/imfuse."""
    return Path(os.environ.get("IMFUSE_CACHE", Path.home() / ".cache" / "imfuse"))


def shipped_variants() -> list[str]:
    return sorted(p.stem for p in BASE_DIR.glob("*.npz"))


def save_base_weights(model, variant: str, record: dict) -> Path:
    """Write BASE_DIR/<variant>.npz (float16 weights) and <variant>.json (record + architecture)."""
    import numpy as np

    path = BASE_DIR / f"{variant}.npz"
    np.savez_compressed(path, *[w.astype(np.float16) for w in model.get_weights()])
    record = {**record, "variant_config": model.variant.to_dict(), "layout": int(model.layout)}
    (BASE_DIR / f"{variant}.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def base_model_path(variant: str = "reduced") -> Path:
    """The shipped model of `variant` as a `.keras` file (built from the weights on first use)."""
    weights = BASE_DIR / f"{variant}.npz"
    if not weights.is_file():
        raise ConfigError(
            f"no shipped base model for variant '{variant}' (shipped: {', '.join(shipped_variants()) or 'none'})"
        )
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    for root in (cache_dir(), Path(tempfile.gettempdir()) / "imfuse-cache"):  # read-only home: /tmp
        path = root / "base_models" / digest / f"{variant}.keras"
        if path.is_file():
            return path
        try:
            _materialise(variant, weights, path)
            return path
        except OSError:
            continue
    raise ConfigError(f"cannot write the base model's .keras file under {cache_dir()} or the temp folder")


def _materialise(variant: str, weights: Path, path: Path) -> None:
    import numpy as np

    from imfuse.networks.model import StyleTransferModel, save_model

    record = base_model_record(variant)
    model = StyleTransferModel(record["variant_config"], layout=record["layout"], name=f"imfuse_{variant}")
    with np.load(weights) as arrays:
        model.set_weights([arrays[f"arr_{i}"].astype(np.float32) for i in range(len(arrays.files))])
    model.predictor_init = f"shipped base model {variant}"
    save_model(model, path)  # atomic: concurrent first uses never read half a file


def resolve_model_path(spec: str | None, variant: str = "reduced") -> Path:
    """A model argument: None or 'base' -> the shipped base model of `variant`, 'base:VARIANT'
    -> that variant's (e.g. 'base:full' once train_base.sh has written full.npz); anything else is a path."""
    if spec in (None, "", BASE):
        return base_model_path(variant)
    if spec.startswith(BASE + ":"):
        return base_model_path(spec[len(BASE) + 1:])
    return Path(spec)


def base_model_record(variant: str = "reduced") -> dict:
    """How the shipped base model was made (command, config, dataset hash, steps, metrics)."""
    path = BASE_DIR / f"{variant}.json"
    return json.loads(path.read_text()) if path.is_file() else {}
