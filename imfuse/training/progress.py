"""Per-step bookkeeping of a training run: window averages, images/s, input wait,
the tqdm bar and history.jsonl. Kept apart from the step maths so both stay short."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from imfuse.tracking import TRAIN_IMAGES_PER_SECOND, train_metric
from imfuse.training.checkpoints import HISTORY_FILE

LogFn = Callable[[int, dict[str, float]], None]


@dataclass
class StepTimer:
    """Wall time split into 'waiting for the next batch' and 'everything'. The first step
    of a process (tracing/compilation) is excluded so the rates describe steady state."""

    wait_s: float = 0.0
    total_s: float = 0.0
    steps: int = 0
    _seen_first: bool = False

    def add(self, wait_s: float, total_s: float) -> None:
        if not self._seen_first:
            self._seen_first = True
            return
        self.wait_s += wait_s
        self.total_s += total_s
        self.steps += 1

    @property
    def input_wait_fraction(self) -> float:
        return self.wait_s / self.total_s if self.total_s > 0 else 0.0

    def images_per_second(self, batch: int) -> float:
        return self.steps * batch / self.total_s if self.total_s > 0 else 0.0


@dataclass
class ProgressLog:
    """Averages the loss terms over each log window and hands them to every sink."""

    run_dir: str | None
    batch_size: int
    start_step: int
    total_steps: int
    on_log: LogFn | None = None
    show_bar: bool = True
    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0
    window: StepTimer = field(default_factory=StepTimer)
    overall: StepTimer = field(default_factory=StepTimer)

    def __post_init__(self) -> None:
        self.bar = tqdm(
            total=self.total_steps, initial=self.start_step, desc="train", unit="step", disable=not self.show_bar
        )

    def step(self, terms: dict[str, float], wait_s: float, total_s: float) -> None:
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.count += 1
        self.window.add(wait_s, total_s)
        self.overall.add(wait_s, total_s)
        self.bar.update(1)

    def flush(self, step: int, learning_rate: float) -> dict[str, float]:
        """Emit the window's averages (CONTRACTS names) for `step`; returns them."""
        if self.count == 0:
            return {}
        # the train step's loss terms (loss, content_loss, ...) -> the CONTRACTS metric names
        metrics = {train_metric(k): v / self.count for k, v in self.sums.items()}
        rate = self.window.images_per_second(self.batch_size) or self.overall.images_per_second(self.batch_size)
        metrics[TRAIN_IMAGES_PER_SECOND] = rate
        metrics[train_metric("learning_rate")] = learning_rate
        metrics[train_metric("input_wait_fraction")] = (
            self.window.input_wait_fraction if self.window.steps else self.overall.input_wait_fraction
        )
        metrics = {k: float(v) for k, v in metrics.items() if math.isfinite(v)}
        shown = {"loss": ".4g", "content_loss": ".3g", "style_loss": ".3g", "tv_loss": ".3g"}
        self.bar.set_postfix(
            **{k.split("_")[0]: format(metrics.get(train_metric(k), float("nan")), f) for k, f in shown.items()},
            img_s=f"{rate:.2f}",
        )
        if self.run_dir is not None:
            append_history(self.run_dir, step, metrics)
        if self.on_log is not None:
            self.on_log(step, metrics)
        self.sums, self.count, self.window = {}, 0, StepTimer(_seen_first=True)
        return metrics

    def close(self) -> None:
        self.bar.close()


def append_history(run_dir: str, step: int, metrics: dict[str, float]) -> None:
    """One JSON line per log step; fsync so a kill -9 loses at most the line being written."""
    path = Path(run_dir) / HISTORY_FILE
    line = json.dumps({"step": int(step), "metrics": metrics, "time": time.time()}, sort_keys=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_history(path: str | os.PathLike) -> list[tuple[int, dict[str, float]]]:
    """history.jsonl (or the run folder holding it) -> [(step, {metric: value})].

    Accepts {"step", "metrics": {...}} lines and flat ones; skips a torn last line (a kill
    mid-write) so a resumed or crashed run's history still reads.
    """
    path = Path(path)
    if path.is_dir():
        path = path / HISTORY_FILE
    records: list[tuple[int, dict[str, float]]] = []
    if not path.is_file():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if not isinstance(item, dict) or "step" not in item:
            continue
        metrics = item.get("metrics") if isinstance(item.get("metrics"), dict) else item
        values = {
            k: float(v)
            for k, v in metrics.items()
            if k not in ("step", "time") and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        records.append((int(item["step"]), values))
    return records
