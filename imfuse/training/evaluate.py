"""`imfuse evaluate`: Gatys losses of a trained model on held-out pairs, against baselines.

Pairs are eval-split content x (train styles = "seen", unseen styles). The same pairs are
scored for the identity baseline (the content image itself) and, on a small subset, for
Gatys optimisation (the quality the feed-forward model approximates). The verdict
(blessing) compares the gate metric with the registry's current champion.
"""

from __future__ import annotations

import gzip
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from imfuse.errors import ConfigError, DataError
from imfuse.images import decode_image, resize_to
from imfuse.losses import LossWeights
from imfuse.training.report import Blessing, decide_blessing, write_json

TERMS = ("loss", "content_loss", "style_loss", "tv_loss")
SEEN, UNSEEN = "seen", "unseen"
_SPLIT_OF = {SEEN: "train", UNSEEN: "unseen"}


@dataclass
class EvalConfig:
    """Options of `imfuse evaluate` (CLI flags map onto these)."""

    model_path: str
    data_dir: str
    out_dir: str | None = None  # default: <model dir>/eval
    tracking_uri: str | None = None
    run_id: str | None = None  # default: <model dir>/mlflow_run.json
    loss_network: str | None = None  # default: imfuse.lossnet.DEFAULT_LOSS_NETWORK
    image_size: int = 128
    max_pairs: int | None = None
    gatys_subset: int = 2
    gatys_steps: int = 50
    gate_metric: str = "eval/style_loss_unseen"
    gate_tolerance: float = 0.0
    registered_model: str | None = None  # default: imfuse-<variant of the model>
    weights: LossWeights = field(default_factory=LossWeights)
    grid_contents: int = 4
    grid_styles: int = 6
    log_mlflow: bool = True
    progress: bool = True

    def validate(self) -> None:
        if not 32 <= self.image_size <= 2048:
            raise ConfigError(f"--image-size must be between 32 and 2048 px, got {self.image_size}")
        if self.max_pairs is not None and self.max_pairs < 2:
            raise ConfigError(f"--max-pairs must be at least 2 (one seen, one unseen), got {self.max_pairs}")
        if self.gatys_subset < 0:
            raise ConfigError(f"--gatys-subset must be >= 0, got {self.gatys_subset}")
        if self.gatys_steps < 1:
            raise ConfigError(f"--gatys-steps must be >= 1, got {self.gatys_steps}")
        if not self.gate_tolerance >= 0:
            raise ConfigError(f"--gate-tolerance must be >= 0, got {self.gate_tolerance}")
        if not self.gate_metric.startswith("eval/"):
            raise ConfigError(f"--gate-metric must be an eval/ metric, got '{self.gate_metric}'")
        if not Path(self.model_path).is_file():
            raise ConfigError(f"model file not found: {self.model_path}")
        if not Path(self.data_dir).is_dir():
            raise DataError(f"dataset directory not found: {self.data_dir}")


@dataclass
class EvalImage:
    rgb: np.ndarray  # (S, S, 3) float32 in [0, 1]
    source: str


@dataclass
class EvalResult:
    report: dict
    blessing: Blessing
    out_dir: Path
    run_id: str | None


# ---------------------------------------------------------------------------- data
def center_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop resized to size x size (every pair is scored at one scale)."""
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return resize_to(rgb[top : top + side, left : left + side], (size, size))


def read_split(data_dir: str | os.PathLike, kind: str, split: str, size: int, limit: int | None = None) -> list[EvalImage]:
    """Images of DIR/<kind>/<split>/*.tfrecord[.gz] in file order, decoded and squared."""
    from imfuse.data.examples import decode_example, read_tfrecords

    folder = Path(data_dir) / kind / split
    files = sorted(p for p in folder.glob("*.tfrecord*") if p.is_file())
    images: list[EvalImage] = []
    for path in files:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            for i, record in enumerate(read_tfrecords(handle, str(path))):
                features = decode_example(record)
                if not features.get("image"):
                    raise DataError(f"{path}: record {i} has no 'image' feature")
                source = features.get("source", [f"{path.name}#{i}".encode()])[0]
                source = source.decode("utf-8", "replace") if isinstance(source, bytes) else str(source)
                decoded = decode_image(bytes(features["image"][0]), source)
                images.append(EvalImage(center_square(decoded.rgb, size), source))
                if limit is not None and len(images) >= limit:
                    return images
    return images


def _diagonal(n_content: int, n_style: int) -> list[tuple[int, int]]:
    """All (content, style) index pairs ordered so any prefix spreads over contents and styles."""
    order = []
    for k in range(n_content * n_style):
        c, q = k % n_content, k // n_content
        order.append((c, (q + c) % n_style))
    return order


def select_pairs(n_content: int, n_seen: int, n_unseen: int, max_pairs: int | None) -> list[tuple[int, str, int]]:
    """(content index, "seen"/"unseen", style index) pairs; capped at max_pairs, split evenly."""
    seen = [(c, SEEN, s) for c, s in _diagonal(n_content, n_seen)]
    unseen = [(c, UNSEEN, s) for c, s in _diagonal(n_content, n_unseen)]
    if max_pairs is not None and len(seen) + len(unseen) > max_pairs:
        n_unseen_take = min(len(unseen), max(max_pairs - len(seen), math.ceil(max_pairs / 2)))
        n_seen_take = min(len(seen), max_pairs - n_unseen_take)
        seen, unseen = seen[:n_seen_take], unseen[:n_unseen_take]
    return seen + unseen


# ---------------------------------------------------------------------------- scoring
class PairScorer:
    """Weighted Gatys terms of single images, with per-content / per-style targets cached."""

    def __init__(self, lossnet, weights: LossWeights):
        import tensorflow as tf

        from imfuse.losses import perceptual_losses, style_grams

        self.lossnet, self.weights = lossnet, weights
        self._style_grams = style_grams
        self._content: dict[int, dict] = {}
        self._grams: dict[tuple[str, int], dict] = {}
        self._fn = tf.function(
            lambda images, feats, grams: perceptual_losses(lossnet, images, feats, grams, weights),
            reduce_retracing=True,
        )

    def content_targets(self, idx: int, rgb: np.ndarray) -> dict:
        if idx not in self._content:
            feats = self.lossnet(rgb[None])
            self._content[idx] = {k: feats[k] for k in self.lossnet.content_layers}
        return self._content[idx]

    def style_targets(self, key: tuple[str, int], rgb: np.ndarray) -> dict:
        if key not in self._grams:
            self._grams[key] = self._style_grams(self.lossnet, rgb[None])
        return self._grams[key]

    def score(self, image: np.ndarray, content_feats: dict, grams: dict) -> dict[str, float]:
        terms = self._fn(np.asarray(image, np.float32)[None], content_feats, grams)
        return {k: float(terms[k]) for k in TERMS}


def _mean(rows: list[dict], term: str) -> float:
    return float(np.mean([r[term] for r in rows])) if rows else float("nan")


def stylize_batch(model, contents: np.ndarray, style: np.ndarray) -> np.ndarray:
    """Contents (B, S, S, 3) each stylised with one style image -> (B, S, S, 3) in [0, 1]."""
    style_batch = np.repeat(style[None], len(contents), axis=0)
    out = model({"content": contents, "style": style_batch}, training=False)
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def _score_model(model, scorer, contents, styles, pairs, progress) -> tuple[list[dict], float]:
    """Stylise every pair (grouped by style), score model output and identity; time the model."""
    groups: dict[tuple[str, int], list[int]] = {}
    for c, group, s in pairs:
        groups.setdefault((group, s), []).append(c)
    stylize_batch(model, np.stack([contents[pairs[0][0]].rgb]), styles[pairs[0][1]][pairs[0][2]].rgb)  # warm-up
    results: dict[tuple[int, str, int], dict] = {}
    seconds, count = 0.0, 0
    for (group, s), content_ids in tqdm(groups.items(), desc="evaluate", unit="style", disable=not progress):
        style = styles[group][s]
        batch = np.stack([contents[c].rgb for c in content_ids])
        start = time.perf_counter()
        stylized = stylize_batch(model, batch, style.rgb)
        seconds += time.perf_counter() - start
        count += len(content_ids)
        grams = scorer.style_targets((group, s), style.rgb)
        for c, image in zip(content_ids, stylized):
            feats = scorer.content_targets(c, contents[c].rgb)
            results[(c, group, s)] = {
                "content": contents[c].source,
                "style": style.source,
                "style_group": group,
                "model": scorer.score(image, feats, grams),
                "identity": scorer.score(contents[c].rgb, feats, grams),
            }
    rows = [results[p] for p in pairs]
    return rows, count / max(seconds, 1e-9)


def _gatys_baseline(cfg, lossnet, scorer, contents, styles, pairs, rows, progress) -> dict:
    """Gatys optimisation on the first `gatys_subset` pairs (unseen and seen interleaved)."""
    from imfuse.optimize import OptimizeConfig, optimize_image

    unseen = [i for i, p in enumerate(pairs) if p[1] == UNSEEN]
    seen = [i for i, p in enumerate(pairs) if p[1] == SEEN]
    order = [i for pair in zip(unseen, seen) for i in pair] + unseen[len(seen):] + seen[len(unseen):]
    chosen = order[: cfg.gatys_subset]
    # No XLA: each pair compiles afresh, and at eval sizes the compile (~5 s) outweighs the
    # speed-up for tens of steps (64 px, 50 steps: 2.3 s without, 11 s with, 2-core CPU).
    opt = OptimizeConfig(steps=cfg.gatys_steps, size=cfg.image_size, weights=cfg.weights, jit_compile=False)
    entries, seconds = [], 0.0
    for i in tqdm(chosen, desc="gatys baseline", unit="pair", disable=not progress):
        c, group, s = pairs[i]
        style = styles[group][s]
        start = time.perf_counter()
        image = optimize_image(contents[c].rgb, [(style.rgb, 1.0)], opt, lossnet=lossnet, progress=False)
        seconds += time.perf_counter() - start
        if image.shape[:2] != (cfg.image_size, cfg.image_size):
            image = resize_to(image, (cfg.image_size, cfg.image_size))
        scores = scorer.score(image, scorer.content_targets(c, contents[c].rgb), scorer.style_targets((group, s), style.rgb))
        entries.append({**{k: rows[i][k] for k in ("content", "style", "style_group")},
                        "gatys": scores, "model": rows[i]["model"], "identity": rows[i]["identity"]})
    if not entries:
        return {"pairs": [], "steps": cfg.gatys_steps}
    summary = {f"{who}_{term}": _mean([e[who] for e in entries], term) for who in ("gatys", "model", "identity") for term in TERMS}
    return {"pairs": entries, "steps": cfg.gatys_steps, "seconds_per_image": seconds / len(entries), **summary}


def _metrics(rows: list[dict], images_per_second: float, gatys: dict) -> dict[str, float]:
    model = [r["model"] for r in rows]
    ident = [r["identity"] for r in rows]
    by_group = {g: [r for r in rows if r["style_group"] == g] for g in (SEEN, UNSEEN)}
    m = {f"eval/{t}": _mean(model, t) for t in TERMS}
    m.update({f"eval/identity_{t}": _mean(ident, t) for t in TERMS})
    for group, members in by_group.items():
        m[f"eval/style_loss_{group}"] = _mean([r["model"] for r in members], "style_loss")
        m[f"eval/content_loss_{group}"] = _mean([r["model"] for r in members], "content_loss")
        m[f"eval/identity_style_loss_{group}"] = _mean([r["identity"] for r in members], "style_loss")
    m["eval/images_per_second"] = float(images_per_second)
    m["eval/pairs"] = float(len(rows))
    if gatys.get("pairs"):
        for term in TERMS:
            m[f"eval/gatys_{term}"] = gatys[f"gatys_{term}"]
        m["eval/gatys_model_style_loss"] = gatys["model_style_loss"]
        m["eval/gatys_identity_style_loss"] = gatys["identity_style_loss"]
        m["eval/gatys_seconds_per_image"] = gatys["seconds_per_image"]
    return m


# ---------------------------------------------------------------------------- pictures
def _grid(cfg, model, contents, styles, out_dir: Path) -> Path:
    from imfuse.training.plots import sample_grid

    grid_contents = contents[: cfg.grid_contents]
    n_seen = min(len(styles[SEEN]), math.ceil(cfg.grid_styles / 2))
    n_unseen = min(len(styles[UNSEEN]), cfg.grid_styles - n_seen)
    picked = [(SEEN, s) for s in styles[SEEN][:n_seen]] + [(UNSEEN, s) for s in styles[UNSEEN][:n_unseen]]
    batch = np.stack([c.rgb for c in grid_contents])
    columns = [stylize_batch(model, batch, s.rgb) for _, s in picked]
    cells = [[columns[j][i] for j in range(len(picked))] for i in range(len(grid_contents))]
    return sample_grid(
        [c.rgb for c in grid_contents], [s.rgb for _, s in picked], cells, out_dir / "sample_grid.png",
        style_labels=[g for g, _ in picked], tile=min(cfg.image_size, 160),
    )


# ---------------------------------------------------------------------------- tracking
def _tracking_target(cfg: EvalConfig, run_dir: Path) -> tuple[str, str | None]:
    """(tracking URI, run id): explicit > MLFLOW_TRACKING_URI > the run's mlflow_run.json > default."""
    from imfuse.tracking.runs import read_run_file, resolve_tracking_uri

    saved = read_run_file(run_dir) or {}
    explicit = cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    uri = resolve_tracking_uri(explicit or saved.get("tracking_uri"))
    run_id = cfg.run_id or (saved.get("run_id") if (not explicit or saved.get("tracking_uri") == uri) else None)
    return uri, run_id


def _last_step(history: Path) -> int:
    from imfuse.training.progress import read_history

    records = read_history(history)
    return max((step for step, _ in records), default=0)


def _baseline_model(champion_info, reg_name: str, uri: str | None, run_dir: Path) -> tuple[str, str] | None:
    """(label, .keras path) of the model the candidate must not be worse than, or None.

    The registry's champion when there is one (TFX Evaluator's baseline model), else the
    model this run was warm-started from (train_config.json `init_from`): a fine-tune is
    never blessed for being worse than where it began.
    """
    if champion_info is not None:
        from imfuse.training.warm_start import registered_keras

        found = registered_keras(reg_name, str(champion_info.version), uri)
        if found is not None:
            return f"champion v{champion_info.version}", str(found)
    from imfuse.training.checkpoints import read_run_config

    init = ((read_run_config(str(run_dir)) or {}).get("config") or {}).get("init_from")
    if init and Path(init).is_file():
        return f"init model {Path(init).name}", init
    return None


def _score_baseline(baseline, scorer, contents, styles, pairs, cfg) -> dict[str, float]:
    """The baseline model's gate metrics on exactly the candidate's pairs and size."""
    from imfuse.networks import load_model

    rows, _ = _score_model(load_model(baseline[1]), scorer, contents, styles, pairs, cfg.progress)
    skip = ("eval/identity", "eval/images_per_second", "eval/pairs")  # the candidate's own
    return {k: v for k, v in _metrics(rows, 0.0, {}).items() if not k.startswith(skip)}


def evaluate(cfg: EvalConfig) -> EvalResult:
    """Score the model, write report/grid/curves/blessing, log them to the training run."""
    cfg.validate()
    from imfuse.lossnet import DEFAULT_LOSS_NETWORK, build_loss_network
    from imfuse.networks import load_model
    from imfuse.tracking import registered_model_name

    model_path = Path(cfg.model_path).resolve()
    run_dir = model_path.parent
    out_dir = Path(cfg.out_dir or run_dir / "eval").resolve()
    model = load_model(model_path)
    variant = getattr(getattr(model, "variant", None), "name", "reduced")
    reg_name = cfg.registered_model or registered_model_name(variant)
    loss_network = cfg.loss_network or DEFAULT_LOSS_NETWORK

    uri = run_id = None
    champion_info = None
    if cfg.log_mlflow:  # before the slow part: an unreachable server fails in seconds
        from imfuse.tracking.registry import champion_metric

        uri, run_id = _tracking_target(cfg, run_dir)
        champion_info, _ = champion_metric(reg_name, cfg.gate_metric, uri)
    baseline = _baseline_model(champion_info, reg_name, uri, run_dir)

    limit = cfg.max_pairs
    contents = read_split(cfg.data_dir, "content", "eval", cfg.image_size, limit)
    styles = {g: read_split(cfg.data_dir, "style", _SPLIT_OF[g], cfg.image_size, limit) for g in (SEEN, UNSEEN)}
    for name, items in (("content/eval", contents), ("style/train", styles[SEEN]), ("style/unseen", styles[UNSEEN])):
        if not items:
            raise DataError(f"{Path(cfg.data_dir) / name}: no images; evaluation needs eval content, train and unseen styles")
    pairs = select_pairs(len(contents), len(styles[SEEN]), len(styles[UNSEEN]), cfg.max_pairs)

    lossnet = build_loss_network(loss_network)
    scorer = PairScorer(lossnet, cfg.weights)
    rows, images_per_second = _score_model(model, scorer, contents, styles, pairs, cfg.progress)
    gatys = _gatys_baseline(cfg, lossnet, scorer, contents, styles, pairs, rows, cfg.progress) if cfg.gatys_subset else {}
    metrics = _metrics(rows, images_per_second, gatys)
    if cfg.gate_metric not in metrics:
        raise ConfigError(f"unknown --gate-metric '{cfg.gate_metric}'; known: {', '.join(sorted(metrics))}")

    baseline_metrics = _score_baseline(baseline, scorer, contents, styles, pairs, cfg) if baseline else {}
    metrics.update({k.replace("eval/", "eval/baseline_", 1): v for k, v in baseline_metrics.items()})
    blessing = decide_blessing(
        cfg.gate_metric,
        metrics[cfg.gate_metric],
        baseline_metrics.get(cfg.gate_metric),
        candidate_style_loss=metrics["eval/style_loss"],
        identity_style_loss=metrics["eval/identity_style_loss"],
        tolerance=cfg.gate_tolerance,
        champion_version=champion_info.version if baseline and baseline[0].startswith("champion") else None,
        baseline=baseline[0] if baseline else None,
    )

    grid = _grid(cfg, model, contents, styles, out_dir)
    history = run_dir / "history.jsonl"
    from imfuse.training.plots import loss_curves

    curves = loss_curves(history, out_dir / "curves")
    manifest = Path(cfg.data_dir) / "manifest.json"
    from imfuse.data.manifest import peek_dataset_hash

    report = {
        "model": str(model_path),
        "variant": variant,
        "registered_model": reg_name,
        "data_dir": str(Path(cfg.data_dir).resolve()),
        "dataset_hash": peek_dataset_hash(cfg.data_dir),
        "loss_network": loss_network,
        "loss_configuration": lossnet.describe(),
        "image_size": cfg.image_size,
        "weights": {"content": cfg.weights.content, "style": cfg.weights.style, "tv": cfg.weights.tv},
        "counts": {"contents": len(contents), "seen_styles": len(styles[SEEN]), "unseen_styles": len(styles[UNSEEN]), "pairs": len(pairs)},
        "metrics": metrics,
        "pairs": rows,
        "baselines": {
            "identity": {t: metrics[f"eval/identity_{t}"] for t in TERMS},
            "gatys": gatys or {"pairs": [], "skipped": "gatys_subset is 0"},
        },
        "blessing": blessing.to_dict(),
        "baseline_model": {"label": baseline[0], "path": baseline[1]} if baseline else None,
        "tracking_uri": uri,
        "run_id": run_id,
        "artifacts": {"grid": grid.name, "curves": [f"curves/{p.name}" for p in curves]},
    }
    if not curves:
        report["artifacts"]["curves_note"] = f"no loss history at {history}"
    write_json(out_dir / "blessing.json", blessing.to_dict())

    if cfg.log_mlflow:
        run_id = _log(cfg, uri, run_id, report, metrics, blessing, out_dir, manifest, history, loss_network, variant)
        report["run_id"] = run_id
    write_json(out_dir / "eval_report.json", report)
    if cfg.log_mlflow:
        from imfuse.tracking.runs import log_to_run

        log_to_run(uri, run_id, artifacts=[(out_dir / "eval_report.json", "eval")])
    return EvalResult(report=report, blessing=blessing, out_dir=out_dir, run_id=run_id)


def _log(cfg, uri, run_id, report, metrics, blessing, out_dir, manifest, history, loss_network, variant) -> str:
    from imfuse.tracking import TAG_BLESSED, TAG_DATASET_HASH, TAG_GIT_COMMIT, TAG_LOSS_NETWORK, TAG_VARIANT
    from imfuse.tracking.runs import git_commit, log_to_run, start_run

    if run_id is None:
        run_id = start_run(
            uri,
            run_name=f"evaluate-{Path(cfg.model_path).stem}",
            tags={TAG_VARIANT: variant, TAG_LOSS_NETWORK: loss_network,
                  TAG_DATASET_HASH: report["dataset_hash"] or "unknown", TAG_GIT_COMMIT: git_commit()},
        )
    artifacts = [(out_dir / "blessing.json", "eval"), (out_dir / "sample_grid.png", "eval")]
    if (out_dir / "curves").is_dir():
        artifacts.append((out_dir / "curves", "eval/curves"))
    if manifest.is_file():
        artifacts.append((manifest, "dataset"))
    log_to_run(
        uri,
        run_id,
        metrics=metrics,
        step=_last_step(history),
        artifacts=artifacts,
        tags={
            TAG_BLESSED: str(blessing.blessed).lower(),
            "imfuse.eval.gate_metric": cfg.gate_metric,
            "imfuse.eval.loss_network": loss_network,
            "imfuse.eval.image_size": cfg.image_size,
            "imfuse.eval.dataset_hash": report["dataset_hash"] or "unknown",
        },
    )
    return run_id
