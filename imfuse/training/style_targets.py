"""Fitted embeddings of a dataset's styles: the targets a style predictor is trained on.

A predictor trained end to end learns, from a few dozen styles, a conditioning that is
far from the best the transformer can draw (bench/quality: the shipped base at 2.38x
lite's style loss on unseen paintings, 0.93x with each style's embedding fitted by
imfuse.style_fit). Fitting every training style's embedding once gives the predictor
better targets; imfuse.training.predictor_distill then regresses its head onto them
(measured 2026-12-06: worse on unseen styles than the head it started from, since the fitted
optima are sharp; README, "The shipped base models").
One JSON file per style (imfuse.style_fit's format), so a long run resumes where it
stopped and a finished style is never fitted twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from imfuse.errors import ConfigError
from imfuse.style_fit import StyleFitConfig, fit_record, fit_style_embeddings, save_style_embedding

SPLITS = ("train", "eval")  # the styles a predictor learns from and is checked on (never unseen)
STYLES_PER_BATCH = 8


def target_path(out_dir: str | Path, source: str) -> Path:
    """One file per style source: its stem (readable) plus a hash of the full URI (unique)."""
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(source).stem)[:60]
    return Path(out_dir) / f"{stem}-{hashlib.sha256(source.encode()).hexdigest()[:10]}.json"


def _is_done(path: Path, model_path: str, config: StyleFitConfig) -> bool:
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return body.get("model") == model_path and body.get("config") == asdict(config)


def fit_dataset_styles(
    data_dir: str,
    out_dir: str,
    model_name: str = "base",
    splits: tuple[str, ...] = SPLITS,
    config: StyleFitConfig | None = None,
    styles_per_batch: int = STYLES_PER_BATCH,
    progress: bool = True,
) -> dict:
    """Fit the embedding of every style in `splits` of a prepared dataset, `styles_per_batch`
    at a time, on the dependency-shipped photos (never a benchmark's held-out ones).
    Returns counts; styles already fitted with the same model and config are skipped."""
    from tqdm.auto import tqdm

    from imfuse.base_model import resolve_model_path
    from imfuse.lossnet import build_loss_network
    from imfuse.networks import load_model
    from imfuse.precision import dtype_policy_for
    from imfuse.style_fit import default_fit_photos
    from imfuse.training.scoring import read_split

    config = config or StyleFitConfig()
    config.validate()
    if styles_per_batch < 1:
        raise ConfigError(f"styles per batch must be >= 1, got {styles_per_batch}")
    styles = [s for split in splits for s in read_split(data_dir, "style", split, config.size)]
    if not styles:
        raise ConfigError(f"{data_dir} has no styles in splits {', '.join(splits)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Files name the resolved model (the shipped base's path holds its weights' hash), so a
    # rerun after the base changed fits again instead of reusing another model's embeddings.
    model_path = str(resolve_model_path(model_name))
    todo = [s for s in styles if not _is_done(target_path(out, s.source), model_path, config)]
    if todo:
        model = load_model(model_path)
        lossnet = build_loss_network(dtype_policy=dtype_policy_for(config.precision))
        photos = default_fit_photos(config.size)
        with tqdm(total=len(todo), desc="styles fitted", unit="style", disable=not progress) as bar:
            for start in range(0, len(todo), styles_per_batch):
                chunk = todo[start : start + styles_per_batch]
                results = fit_style_embeddings(model, [s.rgb for s in chunk], photos, config, lossnet, progress=False)
                for style, result in zip(chunk, results):
                    record = fit_record(config, model_path, style.source, "dependency photos", lossnet.name)
                    save_style_embedding(target_path(out, style.source), result, record)
                bar.update(len(chunk))
    return {"styles": len(styles), "fitted": len(todo), "skipped": len(styles) - len(todo)}


def load_style_targets(out_dir: str | Path, sources: list[str]) -> dict[str, np.ndarray]:
    """source -> fitted embedding, for the sources that have a file in `out_dir`."""
    from imfuse.style_fit import load_style_embedding

    found = {}
    for source in sources:
        path = target_path(out_dir, source)
        if path.is_file():
            found[source] = load_style_embedding(path)
    return found
