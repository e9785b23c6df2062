"""Ghiasi-style arbitrary style training: one content batch + one style batch per step.

The predictor embeds the style batch, the transformer stylises the content batch with
those embeddings, and Gatys content/style/TV losses on the frozen loss network (content
features of the content batch, per-example Gram targets of the style batch) drive Adam.
This module never imports MLflow: metrics leave through the `on_log` callback.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import keras
import tensorflow as tf

from imfuse.data.manifest import read_dataset_hash
from imfuse.errors import ConfigError, TrainingError
from imfuse.losses import LossWeights, balanced_mean, batch_means, perceptual_terms, style_grams
from imfuse.lossnet import build_loss_network
from imfuse.networks import build_model, load_model, preprocess_style, save_model
from imfuse.networks.model import saved_variant_config
from imfuse.precision import dtype_policy_for, dtype_policy_scope
from imfuse.training import checkpoints as ckpt
from imfuse.training.config import EXPONENTIAL_FINAL_FRACTION, TrainConfig, resume_mismatches
from imfuse.training.progress import LogFn, ProgressLog
from imfuse.training.teacher import load_teacher

CheckpointFn = Callable[[int, str], None]


@dataclass
class TrainResult:
    """What a finished `train` call produced (paths and steady-state rates)."""

    run_dir: str
    model_path: str
    start_step: int
    step: int
    metrics: dict[str, float]
    images_per_second: float
    input_wait_fraction: float
    jit: bool


@keras.saving.register_keras_serializable(package="imfuse")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak`, then cosine (to 0), exponential (to 1 %) or constant."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0, kind: str = "cosine"):
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.kind = kind

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = float(self.warmup_steps)
        span = float(max(self.total_steps - self.warmup_steps, 1))
        t = tf.clip_by_value((step - warmup) / span, 0.0, 1.0)
        if self.kind == "cosine":
            decayed = self.peak * 0.5 * (1.0 + tf.cos(math.pi * t))
        elif self.kind == "exponential":
            decayed = self.peak * tf.pow(EXPONENTIAL_FINAL_FRACTION, t)
        else:
            decayed = tf.constant(self.peak, tf.float32)
        if self.warmup_steps <= 0:
            return decayed
        return tf.where(step < warmup, self.peak * (step + 1.0) / warmup, decayed)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps, "kind": self.kind}


def make_strategy(name: str) -> tf.distribute.Strategy:
    """default: one device; mirrored: all GPUs of this node; multiworker: the cluster in TF_CONFIG."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise ConfigError(
                "--strategy multiworker needs the TF_CONFIG environment variable describing the cluster "
                '(e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}})'
            )
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"cannot start MultiWorkerMirroredStrategy from TF_CONFIG: {exc}") from None
    return tf.distribute.get_strategy()


def _is_chief_task(task_type: str | None, index, cluster: dict) -> bool:
    """Only the chief (or worker 0 without a chief) writes the run directory."""
    return task_type == "chief" or (task_type == "worker" and int(index) == 0 and "chief" not in cluster)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run directory, by its role in the strategy's cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not getattr(resolver, "task_type", None):
        return True
    return _is_chief_task(resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict())


def resolve_jit(jit: bool | None) -> bool:
    """Default: XLA on GPU, where it fuses the many small norm ops; off on CPU, where
    bench/train_step.py measured no gain and compilation costs a long first step."""
    if jit is not None:
        return bool(jit)
    return bool(tf.config.list_physical_devices("GPU"))


def _input_dataset(config: TrainConfig, global_batch: int, seed: int, dataset_fn) -> tf.data.Dataset:
    if dataset_fn is None:
        from imfuse.data.reader import make_dataset as dataset_fn
    common = {"batch_size": global_batch, "training": True, "repeat": True, "seed": seed}
    # Training reads the train splits only; `unseen` styles are kept for evaluation.
    content = dataset_fn(
        config.data_dir, "content", "train", image_size=config.image_size, augment=config.augment, **common
    )
    style = dataset_fn(
        config.data_dir, "style", "train", image_size=config.style_size, augment=config.augment,
        max_zoom=config.style_zoom, **common
    )
    zipped = tf.data.Dataset.zip((content, style))
    teacher = config.teacher_model()
    if teacher:
        zipped = zipped.map(_teacher_targets(teacher), num_parallel_calls=1)
    zipped = zipped.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return zipped.with_options(options)


def _teacher_targets(spec: str):
    """tf.data map (content, style) -> (content, style, teacher's stylised content).

    The teacher runs in the input pipeline (NumPy/ONNX, outside the compiled step), so its
    time overlaps the previous step's compute.
    """
    teach = load_teacher(spec)

    def add_target(content, style):
        target = tf.numpy_function(teach, [content, style], tf.float32, stateful=False)
        return content, style, tf.ensure_shape(target, content.shape)

    return add_target


def _warm_start(model, init_path: str) -> None:
    """Copy every weight of the model at `init_path` into `model` (same architecture)."""
    init = load_model(init_path)
    ours = {k: v for k, v in model.variant.to_dict().items() if k != "name"}
    theirs = {k: v for k, v in init.variant.to_dict().items() if k != "name"}
    if ours != theirs or init.layout != model.layout:
        changed = sorted(k for k in ours if ours[k] != theirs.get(k)) or ["layout"]
        raise ConfigError(
            f"--init-from {init_path} is a different architecture from variant '{model.variant.name}' "
            f"(differs in: {', '.join(changed)}); warm starts need the same variant"
        )
    model.set_weights(init.get_weights())


# How a warm start's predictor sees a style is part of what it inherits, like its weights: how
# much of the VGG trunk it reads (a champion from before the reduced variant's cheaper predictor
# keeps its own) and the size it resizes a style to (the base's 256 px: taking the main job's
# 128 px crop size instead doubled the base's unseen-style loss before a step was taken).
INHERITED_GEOMETRY = ("predictor_layers", "predictor_pool", "style_size")


def _inherited_geometry(config: TrainConfig, resuming: bool) -> dict:
    """A warm start's predictor geometry: on resume the run's own record (the init file may have
    gone since, from a cleaned cache), else the init model's; {} for a fresh model."""
    if not config.init_from:
        return {}
    recorded = (ckpt.read_run_config(config.out_dir) or {}).get("variant_config") if resuming else None
    if recorded:
        return {k: recorded[k] for k in INHERITED_GEOMETRY if k in recorded}
    if resuming and not os.path.isfile(config.init_from):
        return {}
    saved = saved_variant_config(config.init_from).to_dict()
    return {k: saved[k] for k in INHERITED_GEOMETRY}


def _build(config: TrainConfig, strategy, resuming: bool):
    """Loss network, model and optimizer inside the strategy scope."""
    with strategy.scope():
        # Its own policy (features come back float32), independent of --mixed-precision.
        lossnet = build_loss_network(config.loss_network, dtype_policy=dtype_policy_for(config.loss_precision))
        with dtype_policy_scope("mixed_float16" if config.mixed_precision else keras.config.dtype_policy()):
            # On resume the checkpoint restores every weight: skip reading the initial weights.
            init = "none" if resuming else config.predictor_weights
            overrides = {**config.variant_overrides(), **_inherited_geometry(config, resuming)}
            model = build_model(config.variant, predictor_weights=init, **overrides)
            model.predictor_init = config.predictor_weights
            if config.init_from and not resuming:
                _warm_start(model, config.init_from)
                model.predictor_init = f"init-from {config.init_from}"
            if config.train_only == "predictor":
                model.transformer.trainable = False
                model.style_heads.trainable = False
            elif config.train_only == "transformer":  # the init's style conditioning stays as it is
                model.predictor.trainable = False
                model.style_heads.trainable = False
        schedule = WarmupSchedule(config.learning_rate, config.steps, config.warmup_steps, config.lr_schedule)
        optimizer = keras.optimizers.Adam(learning_rate=schedule)
        if config.mixed_precision:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="train_step")
    return lossnet, model, optimizer, schedule, step


def content_feature_network(lossnet) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """The loss network cut after its content layers: content targets need no deeper
    features, and skipping block 4 saves about a third of that pass."""
    model = lossnet.model
    outputs = [model.outputs[lossnet.layers.index(name)] for name in lossnet.content_layers]
    truncated = keras.Model(model.inputs, outputs, name=f"{model.name}_content")
    truncated.trainable = False

    def features(images: tf.Tensor) -> dict[str, tf.Tensor]:
        result = truncated(images, training=False)
        result = result if isinstance(result, (list, tuple)) else [result]
        return dict(zip(lossnet.content_layers, result))

    return features


def make_train_step(
    strategy, model, lossnet, optimizer, weights, mixed: bool, jit: bool, teacher_weight: float = 0.0,
    balance_styles: bool = False,
):
    """Compiled distributed step: (content, style[, teacher target]) per-replica batches -> mean loss terms.

    The forward pass and gradients are one XLA cluster when `jit`; the optimizer update
    stays outside it because cross-replica gradient aggregation is not XLA-compilable.
    `balance_styles` weighs every image's loss alike in relative terms (losses.balanced_mean)
    instead of letting the styles with the largest Gram values drive the gradient.
    """
    replicas = strategy.num_replicas_in_sync
    variables = model.trainable_variables

    content_net = content_feature_network(lossnet)

    # Pure distillation (all Gatys weights 0) skips the loss network: 2-3x faster steps.
    gatys = any(w > 0 for w in (weights.content, weights.style, weights.tv))

    @tf.function(jit_compile=jit, reduce_retracing=True)
    def gradients(content, style, style_input, target):
        if gatys:
            content_features = content_net(content)
            target_grams = style_grams(lossnet, style)  # (B, C, C): one style per content image
        with tf.GradientTape() as tape:
            embedding = model.predictor(style_input, training=True)
            stylized = tf.cast(model.stylize_with_embedding(content, embedding, training=True), tf.float32)
            if gatys:
                per_image = perceptual_terms(lossnet, stylized, content_features, target_grams, weights)
            else:
                zero = tf.zeros(tf.shape(stylized)[:1], tf.float32)
                per_image = {"content_loss": zero, "style_loss": zero, "tv_loss": zero}
            if target is not None:
                per_image["teacher_loss"] = teacher_weight * tf.reduce_mean(tf.abs(stylized - target), axis=[1, 2, 3])
            terms = batch_means(per_image)
            objective = balanced_mean(tf.add_n(list(per_image.values()))) if balance_styles else terms["loss"]
            loss = objective / replicas  # replicas' gradients are summed
            scaled = optimizer.scale_loss(loss) if mixed else loss
        grads = tape.gradient(scaled, variables)
        return grads, terms

    def replica_step(content, style, target=None):
        # The predictor's crop+antialiased resize has no XLA kernel: do it before the cluster.
        grads, terms = gradients(content, style, preprocess_style(style, model.variant.style_size), target)
        optimizer.apply_gradients(zip(grads, variables))
        if not mixed:  # with loss scaling, non-finite gradients are skipped by design
            terms["grad_norm"] = tf.linalg.global_norm(grads) * replicas
        return terms

    @tf.function
    def train_step(batch):
        per_replica = strategy.run(replica_step, args=tuple(batch))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica.items()}

    return train_step


def _check_finite(step: int, terms: dict[str, float], last_checkpoint: str | None) -> None:
    bad = [name for name, value in terms.items() if not math.isfinite(value)]
    if not bad:
        return
    kept = f"the last good checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was written yet"
    values = ", ".join(f"{name}={terms[name]}" for name in bad)
    hint = "lower --learning-rate or the loss weights"
    raise TrainingError(f"training diverged at step {step}: non-finite {values}; {kept}; {hint}")


def _float32_copy(model, config: TrainConfig):
    """A float32 model with the trained weights: saved files must run on any device."""
    if not config.mixed_precision:
        return model
    from imfuse.networks.model import StyleTransferModel

    with dtype_policy_scope("float32"):  # the trained model's own architecture (a warm start's predictor too)
        copy = StyleTransferModel(model.variant, predictor_init=model.predictor_init, layout=model.layout,
                                  name=model.name)
    copy.set_weights(model.get_weights())
    return copy


def check_run_dir(config: TrainConfig) -> tuple[str, dict | None]:
    """Cheap checks before anything heavy starts: options, dataset, and that the run
    directory (if it holds a run) was started with compatible options.

    Returns (dataset hash, saved run record or None).
    """
    config.validate()
    data_hash = read_dataset_hash(config.data_dir)
    saved = ckpt.read_run_config(config.out_dir)
    if saved is None:
        return data_hash, None
    mismatches = resume_mismatches(saved.get("config", {}), config)
    if saved.get("dataset_hash") not in (None, data_hash):
        mismatches.append(f"dataset: {saved['dataset_hash']} -> {data_hash}")
    if mismatches:
        raise ConfigError(
            f"{config.out_dir} holds a run with different options ({'; '.join(mismatches)}); "
            "rerun with the original options to resume, or use a new --out directory"
        )
    return data_hash, saved


def chief_from_tf_config(environ: dict | None = None) -> bool:
    """Whether this process is the chief per TF_CONFIG, before any strategy exists."""
    raw = (environ if environ is not None else os.environ).get("TF_CONFIG")
    if not raw:
        return True
    try:
        spec = json.loads(raw)
    except ValueError:
        raise ConfigError("TF_CONFIG is not valid JSON") from None
    task = spec.get("task", {})
    return _is_chief_task(task.get("type"), task.get("index", 0), spec.get("cluster", {}))


def _run_record(config: TrainConfig, data_hash: str, lossnet, model, replicas: int, start_step: int) -> dict:
    """train_config.json: everything needed to reproduce or audit the run."""
    return {
        "config": config.to_dict(),
        "dataset_hash": data_hash,
        "loss_network": {**lossnet.describe(), "dtype_policy": dtype_policy_for(config.loss_precision)},
        "variant_config": model.variant.to_dict(),
        "replicas": replicas,
        "resumed_from_step": start_step,
    }


def train(
    config: TrainConfig,
    *,
    on_log: LogFn | None = None,
    on_checkpoint: CheckpointFn | None = None,
    progress: bool = True,
    dataset_fn=None,
) -> TrainResult:
    """Train (or resume) the run in `config.out_dir` up to `config.steps` steps.

    `on_log(step, metrics)` gets the CONTRACTS metric names every `log_every` steps;
    `on_checkpoint(step, path)` after each checkpoint. `dataset_fn` replaces
    `imfuse.data.reader.make_dataset` (same signature).
    """
    data_hash, _ = check_run_dir(config)
    strategy = make_strategy(config.strategy)
    chief = is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ConfigError(f"--batch-size {config.batch_size} must be a multiple of the {replicas} replicas")
    if config.mixed_precision and not tf.config.list_physical_devices("GPU"):
        warnings.warn(
            "--mixed-precision is meant for GPUs (float16 tensor cores); on CPU it is usually slower",
            RuntimeWarning,
            stacklevel=2,
        )
    # Every worker restores from the chief's checkpoints (out_dir is shared storage in a
    # multi-worker job), so all resume at the same step with the same weights. Saving is
    # collective: non-chief workers save too, into a scratch folder of their own.
    chief_checkpoints = os.path.join(config.out_dir, ckpt.CHECKPOINT_DIR)
    run_dir = config.out_dir if chief else tempfile.mkdtemp(prefix="imfuse-worker-")
    os.makedirs(run_dir, exist_ok=True)

    keras.utils.set_random_seed(config.seed)
    resuming = tf.train.latest_checkpoint(chief_checkpoints) is not None
    lossnet, model, optimizer, schedule, step_var = _build(config, strategy, resuming)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step_var)
    restore_from = ckpt.make_manager(checkpoint, chief_checkpoints, config.keep_checkpoints)
    last_checkpoint = ckpt.restore_latest(checkpoint, restore_from)
    start_step = int(step_var.numpy())
    manager = (
        restore_from if chief
        else ckpt.make_manager(checkpoint, os.path.join(run_dir, ckpt.CHECKPOINT_DIR), keep=1)
    )
    if chief:
        ckpt.trim_history(run_dir, start_step)
        ckpt.write_run_config(run_dir, _run_record(config, data_hash, lossnet, model, replicas, start_step))

    jit = resolve_jit(config.jit)
    result_metrics: dict[str, float] = {}
    log = ProgressLog(
        run_dir if chief else None,
        config.batch_size,
        start_step,
        config.steps,
        on_log=on_log if chief else None,
        show_bar=progress and chief,
    )
    try:
        if start_step < config.steps:
            # Different data order after a resume, yet reproducible for the same step.
            data_seed = config.seed + start_step
            tf.random.set_seed(data_seed)
            dataset = _input_dataset(config, config.batch_size, data_seed, dataset_fn)
            data = strategy.experimental_distribute_dataset(dataset)
            weights = LossWeights(config.content_weight, config.style_weight, config.tv_weight)
            train_step = make_train_step(
                strategy, model, lossnet, optimizer, weights, config.mixed_precision, jit,
                teacher_weight=config.teacher_weight if config.teacher_model() else 0.0,
                balance_styles=config.balance_styles,
            )
            iterator = iter(data)
            for step in range(start_step + 1, config.steps + 1):
                started = time.perf_counter()
                batch = next(iterator)
                fetched = time.perf_counter()
                terms = {k: float(v) for k, v in train_step(batch).items()}
                _check_finite(step, terms, last_checkpoint)
                step_var.assign(step)
                log.step(terms, fetched - started, time.perf_counter() - started)
                if step % config.log_every == 0 or step == config.steps:
                    result_metrics = log.flush(step, float(schedule(step - 1)))
                if step % config.checkpoint_every == 0 or step == config.steps:
                    last_checkpoint = manager.save(checkpoint_number=step)
                    if on_checkpoint is not None and chief:
                        on_checkpoint(step, last_checkpoint)
    finally:
        log.close()

    model_path = os.path.join(run_dir, ckpt.MODEL_FILE)
    save_model(_float32_copy(model, config), model_path)
    if not chief:  # its checkpoints were only its share of a collective save
        shutil.rmtree(os.path.join(run_dir, ckpt.CHECKPOINT_DIR), ignore_errors=True)
    return TrainResult(
        run_dir=run_dir,
        model_path=model_path,
        start_step=start_step,
        step=int(step_var.numpy()),
        metrics=result_metrics,
        images_per_second=log.overall.images_per_second(config.batch_size),
        input_wait_fraction=log.overall.input_wait_fraction,
        jit=jit,
    )

