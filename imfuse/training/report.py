"""The blessing decision (TFX Evaluator semantics) and the JSON files evaluation writes.

Kept free of TensorFlow and MLflow so the gate logic is a pure, directly tested function.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path


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
) -> Blessing:
    """Blessed iff (no champion, or candidate <= champion * (1 + tolerance)) and the candidate's
    style loss is below the identity baseline's (stylising must beat doing nothing).

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
    )
    if not math.isfinite(candidate):
        return Blessing(blessed=False, reason=f"candidate {metric} is {candidate}", **common)
    beats_identity = candidate_style_loss < identity_style_loss
    identity_text = (
        f"style loss {candidate_style_loss:.6g} {'<' if beats_identity else '>='} "
        f"identity {identity_style_loss:.6g}"
    )
    if champion is None:
        gate_ok, gate_text = True, f"no champion or init model to compare with; candidate {metric} = {candidate:.6g}"
    else:
        bound = champion * (1.0 + tolerance)
        gate_ok = candidate <= bound
        who = baseline or (f"champion v{champion_version}" if champion_version is not None else "champion")
        gate_text = (
            f"candidate {metric} {candidate:.6g} {'<=' if gate_ok else '>'} {who} {champion:.6g}"
            f" x (1 + {tolerance:g}) = {bound:.6g}"
        )
    return Blessing(blessed=gate_ok and beats_identity, reason=f"{gate_text}; {identity_text}", **common)


def write_json(path: str | os.PathLike, data: dict) -> Path:
    """Atomic JSON write (a reader never sees half a report)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
