"""The blessing decision (TFX Evaluator semantics) and the JSON files evaluation writes.

Kept free of TensorFlow and MLflow so the gate logic is a pure, directly tested function.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from imfuse.fsutil import atomic_write_text
from imfuse.tracking import eval_metric


@dataclass
class Blessing:
    """Verdict on a candidate: the gate metric (lower is better) against the champion,
    and the candidate's style loss against the identity baseline."""

    blessed: bool
    metric: str
    candidate: float
    champion: float | None
    reason: str
    tolerance: float = 0.0
    champion_version: int | None = None
    candidate_style_loss: float | None = None
    identity_style_loss: float | None = None
    # The same rule on the reference pairs (real styles no training reads), when they were scored.
    reference_candidate: float | None = None
    reference_champion: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line for the CLI: PASS/FAIL with the numbers."""
        return f"{'PASS' if self.blessed else 'FAIL'} (blessed={str(self.blessed).lower()}): {self.reason}"


def decide_blessing(
    metric: str,
    candidate: float,
    champion: float | None,
    candidate_style_loss: float,
    identity_style_loss: float,
    tolerance: float = 0.0,
    champion_version: int | None = None,
    baseline: str | None = None,
    reference: tuple[float, float] | None = None,
) -> Blessing:
    """Blessed iff (no champion, or candidate <= champion * (1 + tolerance)) and the candidate's
    style loss is below the identity baseline's (stylising must beat doing nothing), and, where
    `reference` (candidate, champion) is given, the same rule holds on the reference pairs.

    `champion` is the baseline model's value scored in the same evaluation, on the same
    pairs and size; `baseline` names that model ("champion v3", "init model x.keras")."""
    common = dict(
        metric=metric,
        candidate=float(candidate),
        champion=None if champion is None else float(champion),
        tolerance=float(tolerance),
        champion_version=champion_version,
        candidate_style_loss=float(candidate_style_loss),
        identity_style_loss=float(identity_style_loss),
        reference_candidate=None if reference is None else float(reference[0]),
        reference_champion=None if reference is None else float(reference[1]),
    )
    if not math.isfinite(candidate):
        return Blessing(blessed=False, reason=f"candidate {metric} is {candidate}", **common)
    beats_identity = candidate_style_loss < identity_style_loss
    identity_text = (
        f"style loss {candidate_style_loss:.6g} {'<' if beats_identity else '>='} "
        f"identity {identity_style_loss:.6g}"
    )
    def within(cand: float, champ: float) -> tuple[bool, float]:
        bound = champ * (1.0 + tolerance)
        return cand <= bound, bound  # False for NaN

    if champion is None:
        gate_ok, gate_text = True, f"no champion or init model to compare with; candidate {metric} = {candidate:.6g}"
    else:
        gate_ok, bound = within(candidate, champion)
        who = baseline or (f"champion v{champion_version}" if champion_version is not None else "champion")
        gate_text = (
            f"candidate {metric} {candidate:.6g} {'<=' if gate_ok else '>'} {who} {champion:.6g}"
            f" x (1 + {tolerance:g}) = {bound:.6g}"
        )
        if reference is not None:
            ref_ok, ref_bound = within(*reference)
            gate_ok = gate_ok and ref_ok
            gate_text += (f"; on real reference styles {reference[0]:.6g} {'<=' if ref_ok else '>'} "
                          f"{ref_bound:.6g}")
    return Blessing(blessed=gate_ok and beats_identity, reason=f"{gate_text}; {identity_text}", **common)


def eval_report(cfg, *, model_path: Path, variant: str, registered_model: str, lossnet, contents, styles, pairs,
                metrics: dict, rows: list, gatys: dict, blessing: Blessing, baseline, tracking_uri: str | None,
                run_id: str | None, grid: Path, curves: list[Path], history: Path) -> dict:
    """eval_report.json: what was scored (model, data, sizes, weights), every pair's and the
    averaged metrics, the baselines, the verdict and the artefacts' names."""
    from imfuse.data.manifest import peek_dataset_hash
    from imfuse.training.scoring import SEEN, TERMS, UNSEEN

    report = {
        "model": str(model_path),
        "variant": variant,
        "registered_model": registered_model,
        "data_dir": str(Path(cfg.data_dir).resolve()),
        "dataset_hash": peek_dataset_hash(cfg.data_dir),
        "loss_network": lossnet.name,
        "loss_configuration": lossnet.describe(),
        "image_size": cfg.image_size,
        "weights": {"content": cfg.weights.content, "style": cfg.weights.style, "tv": cfg.weights.tv},
        "counts": {"contents": len(contents), "seen_styles": len(styles[SEEN]), "unseen_styles": len(styles[UNSEEN]), "pairs": len(pairs)},
        "metrics": metrics,
        "pairs": rows,
        "baselines": {
            "identity": {t: metrics[eval_metric(f"identity_{t}")] for t in TERMS},
            "gatys": gatys or {"pairs": [], "skipped": "gatys_subset is 0"},
        },
        "blessing": blessing.to_dict(),
        "baseline_model": {"label": baseline.label, "path": baseline.path} if baseline else None,
        "tracking_uri": tracking_uri,
        "run_id": run_id,
        "artifacts": {"grid": grid.name, "curves": [f"curves/{p.name}" for p in curves]},
    }
    if not curves:
        report["artifacts"]["curves_note"] = f"no loss history at {history}"
    return report


def write_json(path: str | os.PathLike, data: dict) -> Path:
    """Atomic JSON write (a reader never sees half a report)."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n")
    return Path(path)


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
