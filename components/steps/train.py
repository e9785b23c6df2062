"""Pipeline step 2: train a style network; the run directory is a KFP `Model` artefact.

The step runs the library's tracked training (`imfuse.training.tracked`, the flow
`imfuse train` runs too: params, step metrics, tags, mlflow_run.json), never registering:
registration is the pipeline's decision, after evaluation. `train_args` is the same
training as an `imfuse train` command line, for the distributed step's pods. Only what
later steps need is copied into the artefact (model.keras and the run records), not the
checkpoints with their optimizer state.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


# TrainConfig fields a pipeline training sets and their `imfuse train` flags, in argv order:
# the required ones always, the optional ones where they differ from TrainConfig's defaults.
REQUIRED_FLAGS = {"data_dir": "--data", "out_dir": "--out", "variant": "--variant", "steps": "--steps",
                  "image_size": "--image-size", "style_size": "--style-size", "batch_size": "--batch-size"}
OPTIONAL_FLAGS = {"init_from": "--init-from", "learning_rate": "--learning-rate", "teacher": "--teacher",
                  "content_weight": "--content-weight", "style_weight": "--style-weight", "tv_weight": "--tv-weight"}


def train_config(
    data_dir: str, run_dir: str, variant: str, steps: int, image_size: int, batch_size: int, mlflow_uri: str,
    init_from: str = "", learning_rate: float = 0.0, teacher: str = "", distill_only: bool = False,
    *, resolve: bool = True,
):
    """The TrainConfig of one pipeline training (empty/0: TrainConfig's defaults); `resolve`
    turns init_from (auto, base, models:/...) into its .keras path as `imfuse train` does.

    distill_only: the teacher's L1 term alone (Gatys weights 0), which skips the loss network."""
    from imfuse.training.config import TrainConfig
    from imfuse.training.warm_start import resolve_init

    options = dict(data_dir=data_dir, out_dir=run_dir, variant=variant, steps=int(steps), image_size=int(image_size),
                   style_size=int(image_size), batch_size=int(batch_size))
    if init_from:
        options["init_from"] = resolve_init(init_from, variant, mlflow_uri or None) if resolve else init_from
    if learning_rate > 0:
        options["learning_rate"] = float(learning_rate)
    if teacher:
        options["teacher"] = teacher
    if distill_only:
        options.update(content_weight=0.0, style_weight=0.0, tv_weight=0.0)
    return TrainConfig(**options)


def train_args(data_dir: str, run_dir: str, variant: str, steps: int, image_size: int, batch_size: int,
               mlflow_uri: str, *extra) -> list[str]:
    """The `imfuse train` command line of train_config(...) (a test parses it back), for the
    distributed step's pods; init_from stays as given, each pod resolves it."""
    import dataclasses

    config = train_config(data_dir, run_dir, variant, steps, image_size, batch_size, mlflow_uri, *extra, resolve=False)
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    argv = ["train"]
    for name, flag in {**REQUIRED_FLAGS, **OPTIONAL_FLAGS}.items():
        value = getattr(config, name)
        if name in REQUIRED_FLAGS or value != defaults[name]:
            argv += [flag, str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)]
    return argv + (["--mlflow-uri", mlflow_uri] if mlflow_uri else [])


def train_stage(
    data_dir: str, out_dir: str, variant: str, steps: int, image_size: int, batch_size: int, mlflow_uri: str,
    init_from: str = "", learning_rate: float = 0.0, teacher: str = "", distill_only: bool = False,
) -> dict:
    """Train into a scratch run dir, copy the run's files to `out_dir`; returns its metadata."""
    from imfuse.training.tracked import train_tracked

    with tempfile.TemporaryDirectory(prefix="imfuse-train-") as scratch:
        run_dir = Path(scratch) / "run"
        config = train_config(data_dir, str(run_dir), variant, steps, image_size, batch_size, mlflow_uri, init_from,
                              learning_rate, teacher, distill_only)
        train_tracked(config, mlflow_uri or None)  # the bar goes to the step log (and the live line)
        return collect_run(run_dir, out_dir, variant, steps, image_size, batch_size)


def collect_run(run_dir: str | Path, out_dir: str, variant: str, steps: int, image_size: int, batch_size: int) -> dict:
    """Copy a finished run's files (model, history, config, MLflow run; not the checkpoints)
    to `out_dir`; returns its metadata.

    Shared by the in-pod step and the distributed one (there `run_dir` is the chief's --out)."""
    from imfuse.tracking.runs import RUN_FILE, read_run_file
    from imfuse.training.checkpoints import CONFIG_FILE, HISTORY_FILE, MODEL_FILE
    from imfuse.training.progress import read_history

    run_dir = Path(run_dir)
    missing = [name for name in (MODEL_FILE, RUN_FILE) if not (run_dir / name).is_file()]
    if missing:
        raise RuntimeError(f"imfuse train finished without {', '.join(missing)} in {run_dir}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in (MODEL_FILE, HISTORY_FILE, CONFIG_FILE, RUN_FILE):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, out / name)
    history = read_history(run_dir / HISTORY_FILE)
    run = read_run_file(out)
    return {
        "mlflow_run_id": run["run_id"],
        "tracking_uri": run.get("tracking_uri", ""),
        "variant": variant,
        "steps": int(steps),
        "image_size": int(image_size),
        "batch_size": int(batch_size),
        "metrics": dict(history[-1][1]) if history else {},  # the last record's (train/loss, ...)
    }
