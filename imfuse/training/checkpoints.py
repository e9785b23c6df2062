"""Checkpoints and run-directory files, written so that a kill -9 never leaves a torn file.

tf.train.CheckpointManager writes each checkpoint under a temporary name and only then
points the `checkpoint` state file (itself replaced atomically) at it; everything else in
the run directory goes through `imfuse.fsutil.atomic_write_text` / `imfuse.networks.save_model`
(tmp + os.replace).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import tensorflow as tf

from imfuse.errors import ConfigError, TrainingError
from imfuse.fsutil import atomic_write_text

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "train_config.json"
HISTORY_FILE = "history.jsonl"
MODEL_FILE = "model.keras"


def read_run_config(run_dir: str | os.PathLike) -> dict | None:
    """The saved train_config.json of a run dir, None for a fresh dir."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path} to resume the run ({exc}); use a new --out directory") from None


def write_run_config(run_dir: str | os.PathLike, record: dict) -> None:
    atomic_write_text(Path(run_dir) / CONFIG_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")


def trim_history(run_dir: str | os.PathLike, last_step: int) -> None:
    """Drop history lines after the restored step (they will be recomputed) and torn lines."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut by kill -9
        if isinstance(record, dict) and int(record.get("step", 0)) <= last_step:
            kept.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))


def make_manager(checkpoint: tf.train.Checkpoint, directory: str, keep: int) -> tf.train.CheckpointManager:
    return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=keep, checkpoint_name="ckpt")


def restore_latest(checkpoint: tf.train.Checkpoint, manager: tf.train.CheckpointManager) -> str | None:
    """Restore the newest readable checkpoint (older ones if the newest is damaged).

    Returns the path restored, or None when there is none. A checkpoint whose variables
    do not match the model (different architecture) is a ConfigError, not a fallback.
    """
    failures = []
    for path in reversed(manager.checkpoints):
        try:
            status = checkpoint.restore(path)
        except (tf.errors.NotFoundError, tf.errors.DataLossError, tf.errors.OutOfRangeError) as exc:
            failures.append(f"{os.path.basename(path)}: {type(exc).__name__}")
            continue
        try:
            status.assert_existing_objects_matched()
        except AssertionError as exc:
            raise ConfigError(
                f"checkpoint {path} does not match the model being trained ({str(exc)[:200]}); "
                "use a new --out directory or the original options"
            ) from None
        return path
    if failures:
        raise TrainingError(
            f"no readable checkpoint in {manager.directory} ({'; '.join(failures)}); "
            "delete the folder to start over"
        )
    return None
