"""The base models shipped inside the package: real stylisation without training anything.

Each is produced by the project's own `imfuse train` (`scripts/train_base.sh`; see
`imfuse/base_models/README.md`), and the JSON record beside the weights says how (config,
dataset hash, steps, metrics). `imfuse stylize --method model`, `imfuse export` and
`imfuse serve` use it when no model is given; `imfuse train --init-from base` fine-tunes it.

The weights ship as float16 in a compressed `.npz` (0.6 MB for reduced, not a 2.5 MB `.keras`
file in git; a base that would pass 2 MB, the full one, keeps its large kernels in int8); the first use builds the `.keras` model from them into a cache folder keyed by the
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


# Files over this many bytes do not belong in git: a larger base ships its big kernels in int8.
MAX_BASE_BYTES = 2 * 1024 * 1024
FLOAT16 = "float16"
INT8 = "int8 per output channel (kernels of 4096+ values; float16 scales and the rest)"
_INT8_MIN_SIZE = 4096


def _encode(weights, storage: str) -> dict:
    """npz arrays of `weights`: float16 as arr_i; int8 as q_i (values) + s_i (scale per output channel)."""
    import numpy as np

    arrays = {}
    for i, w in enumerate(weights):
        if storage == INT8 and w.ndim >= 2 and w.size >= _INT8_MIN_SIZE:
            flat = w.reshape(-1, w.shape[-1])
            scale = (np.abs(flat).max(axis=0) / 127).astype(np.float16)
            scale[scale == 0] = 1
            arrays[f"q_{i}"] = np.round(flat / scale.astype(np.float32)).astype(np.int8).reshape(w.shape)
            arrays[f"s_{i}"] = scale
        else:
            arrays[f"arr_{i}"] = w.astype(np.float16)
    return arrays


def _decode(arrays) -> list:
    import numpy as np

    count = len({name.split("_")[1] for name in arrays.files})
    return [arrays[f"arr_{i}"].astype(np.float32) if f"arr_{i}" in arrays.files
            else arrays[f"q_{i}"].astype(np.float32) * arrays[f"s_{i}"].astype(np.float32)
            for i in range(count)]


def save_base_weights(model, variant: str, record: dict) -> Path:
    """Write BASE_DIR/<variant>.npz and <variant>.json (record + architecture + weight storage).

    float16 weights, unless that file would be over MAX_BASE_BYTES: then the large kernels are
    stored as int8 per output channel (the full base: 3.7 -> 1.7 MB), and the record says so.
    """
    import numpy as np

    path = BASE_DIR / f"{variant}.npz"
    weights = model.get_weights()
    for storage in (FLOAT16, INT8):
        np.savez_compressed(path, **_encode(weights, storage))
        if path.stat().st_size <= MAX_BASE_BYTES:
            break
    record = {**record, "variant_config": model.variant.to_dict(), "layout": int(model.layout),
              "weights_storage": storage}
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
        model.set_weights(_decode(arrays))
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
