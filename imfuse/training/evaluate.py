"""`imfuse evaluate`: Gatys losses of a trained model on held-out pairs, against baselines.

The flow, one module each: scoring (`scoring`: pairs, Gatys terms, identity), baselines
(`baselines`: Gatys optimisation on a subset, the champion or the warm-start model), the
gate and report (`report`), and MLflow logging (`eval_logging`). The verdict (blessing)
compares the gate metric with the baseline model scored on the same pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imfuse.errors import ConfigError, DataError
from imfuse.losses import LossWeights
from imfuse.lossnet import DEFAULT_LOSS_NETWORK, build_loss_network
from imfuse.networks import load_model
from imfuse.tracking import (EVAL_IDENTITY_STYLE_LOSS, EVAL_STYLE_LOSS, EVAL_STYLE_RATIO_REFERENCE, GATE_METRIC,
                             baseline_metric, eval_metric, registered_model_name)
from imfuse.training.baselines import baseline_model, gatys_baseline, score_baseline
from imfuse.training.checkpoints import HISTORY_FILE
from imfuse.training.eval_logging import evaluation_run, log_evaluation, tracking_target
from imfuse.training.plots import loss_curves, sample_grid
from imfuse.training.report import Blessing, decide_blessing, eval_report, write_json
from imfuse.training.scoring import (SEEN, UNSEEN, PairScorer, metrics_from_rows, read_eval_images, score_model,
                                     stylize_batch)


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
    gate_metric: str = GATE_METRIC
    gate_tolerance: float = 0.0
    registered_model: str | None = None  # default: imfuse-<variant of the model>
    weights: LossWeights = field(default_factory=LossWeights)
    grid_contents: int = 4
    grid_styles: int = 6
    # Also score real images no training reads (scoring.REFERENCE) and gate on them like on the
    # unseen styles: a fine-tune must not get worse on real styles than its baseline model.
    reference_styles: bool = True
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
        if not self.gate_metric.startswith(eval_metric("")):
            raise ConfigError(f"--gate-metric must be an eval/ metric, got '{self.gate_metric}'")
        if not Path(self.model_path).is_file():
            raise ConfigError(f"model file not found: {self.model_path}")
        if not Path(self.data_dir).is_dir():
            raise DataError(f"dataset directory not found: {self.data_dir}")


@dataclass
class EvalResult:
    report: dict
    blessing: Blessing
    out_dir: Path
    run_id: str | None


def _grid(cfg, models: list[tuple[str, object]], contents, styles, out_dir: Path) -> Path:
    """Each grid content once per model (the candidate, then its gate baseline), so the picture
    shows what the gate compared."""
    grid_contents = contents[: cfg.grid_contents]
    n_seen = min(len(styles[SEEN]), math.ceil(cfg.grid_styles / 2))
    n_unseen = min(len(styles[UNSEEN]), cfg.grid_styles - n_seen)
    picked = [(SEEN, s) for s in styles[SEEN][:n_seen]] + [(UNSEEN, s) for s in styles[UNSEEN][:n_unseen]]
    batch = np.stack([c.rgb for c in grid_contents])
    columns = {label: [stylize_batch(model, batch, s.rgb) for _, s in picked] for label, model in models}
    order = [(i, label) for i in range(len(grid_contents)) for label, _ in models]
    return sample_grid(
        [grid_contents[i].rgb for i, _ in order], [s.rgb for _, s in picked],
        [[column[i] for column in columns[label]] for i, label in order], out_dir / "sample_grid.png",
        style_labels=[g for g, _ in picked], tile=min(cfg.image_size, 160),
        row_labels=[label for _, label in order] if len(models) > 1 else None,
    )


def _short_label(baseline) -> str:
    """The baseline's grid label, short enough for a tile: "champion v3" or "init model"."""
    return f"champion v{baseline.champion_version}" if baseline.champion_version is not None else "init model"


def evaluate(cfg: EvalConfig) -> EvalResult:
    """Score the model, write report/grid/curves/blessing, log them to the training run."""
    cfg.validate()
    model_path = Path(cfg.model_path).resolve()
    run_dir = model_path.parent
    out_dir = Path(cfg.out_dir or run_dir / "eval").resolve()
    model = load_model(model_path)
    variant = getattr(getattr(model, "variant", None), "name", "reduced")
    reg_name = cfg.registered_model or registered_model_name(variant)
    # the tracking server and the champion before the slow part: an unreachable server fails in seconds
    uri, run_id = tracking_target(cfg, run_dir) if cfg.log_mlflow else (None, None)
    baseline = baseline_model(reg_name, cfg.gate_metric, uri, run_dir)
    contents, styles, pairs = read_eval_images(cfg.data_dir, cfg.image_size, cfg.max_pairs, cfg.reference_styles)

    lossnet = build_loss_network(cfg.loss_network or DEFAULT_LOSS_NETWORK)
    scorer = PairScorer(lossnet, cfg.weights)
    rows, images_per_second = score_model(model, scorer, contents, styles, pairs, cfg.progress)
    gatys = gatys_baseline(cfg, lossnet, scorer, contents, styles, pairs, rows, cfg.progress) if cfg.gatys_subset else {}
    metrics = metrics_from_rows(rows, images_per_second, gatys)
    if cfg.gate_metric not in metrics:
        raise ConfigError(f"unknown --gate-metric '{cfg.gate_metric}'; known: {', '.join(sorted(metrics))}")
    baseline_keras = load_model(baseline.path) if baseline else None
    baseline_metrics = score_baseline(baseline_keras, scorer, contents, styles, pairs, cfg) if baseline else {}
    metrics.update({baseline_metric(k): v for k, v in baseline_metrics.items()})
    blessing = decide_blessing(
        cfg.gate_metric, metrics[cfg.gate_metric], baseline_metrics.get(cfg.gate_metric),
        candidate_style_loss=metrics[EVAL_STYLE_LOSS], identity_style_loss=metrics[EVAL_IDENTITY_STYLE_LOSS],
        tolerance=cfg.gate_tolerance, champion_version=baseline and baseline.champion_version,
        baseline=baseline and baseline.label,
        reference=(metrics[EVAL_STYLE_RATIO_REFERENCE], baseline_metrics[EVAL_STYLE_RATIO_REFERENCE])
        if EVAL_STYLE_RATIO_REFERENCE in baseline_metrics else None,
    )

    history = run_dir / HISTORY_FILE
    report = eval_report(
        cfg, model_path=model_path, variant=variant, registered_model=reg_name, lossnet=lossnet, contents=contents,
        styles=styles, pairs=pairs, metrics=metrics, rows=rows, gatys=gatys, blessing=blessing, baseline=baseline,
        tracking_uri=uri, run_id=run_id,
        grid=_grid(cfg, [("candidate", model)] + ([(_short_label(baseline), baseline_keras)] if baseline else []),
                   contents, styles, out_dir),
        curves=loss_curves(history, out_dir / "curves"), history=history,
    )
    if cfg.log_mlflow:
        report["run_id"] = run_id = evaluation_run(cfg, uri, run_id, report)
    write_json(out_dir / "blessing.json", blessing.to_dict())
    write_json(out_dir / "eval_report.json", report)
    if cfg.log_mlflow:
        log_evaluation(cfg, uri, run_id, report, out_dir, history)
    return EvalResult(report=report, blessing=blessing, out_dir=out_dir, run_id=run_id)
