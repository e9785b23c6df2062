"""Distil a trained model's style predictor into a cheaper one, keeping its transformer.

A new style costs the predictor's forward pass. The vgg16_hed predictor reads VGG16 to
block4_conv1 at 256 px (about 27 GFLOPs), far more than the tiny transformer at 512 px.
A student that reads fewer VGG blocks from a smaller copy of the style (for example blocks
1-3 at 128 px, about 1/7 of the work) can learn to give the same conditioning: only its
small MLP head is trained, to reproduce the teacher's style parameters (what the
transformer actually receives) on augmented crops of the training styles. The teacher's
heads and transformer are copied unchanged, so the student is a drop-in model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imfuse.errors import ConfigError
from imfuse.networks.config import VARIANTS, VariantConfig


@dataclass
class PredictorDistillConfig:
    """One distillation run; `init_from` names the teacher model (a path or 'base:VARIANT')."""

    data_dir: str
    out: str
    init_from: str = "base:tiny"  # a vgg16_hed model (the reduced base's predictor is Magenta's)
    # the tiny variant's own geometry: what a fresh tiny model reads
    predictor_layers: int = VARIANTS["tiny"].predictor_layers
    predictor_pool: int = VARIANTS["tiny"].predictor_pool
    crops: int = 3072  # augmented training-style crops (each style's centre crop is added)
    epochs: int = 200
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("crops", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        # VariantConfig's own checks, before any model is loaded
        VariantConfig(predictor_layers=self.predictor_layers, predictor_pool=self.predictor_pool)
        if self.learning_rate <= 0:
            raise ConfigError(f"--learning-rate must be positive, got {self.learning_rate}")
        if not str(self.out).endswith(".keras"):
            raise ConfigError(f"--out must be a .keras path, got {self.out}")


def student_like(teacher, predictor_layers: int, predictor_pool: int):
    """A model of the teacher's architecture with the cheaper predictor; heads and
    transformer hold the teacher's weights; the predictor's head is untrained, or the
    teacher's own where the geometry is the same."""
    from imfuse.networks.model import StyleTransferModel

    if teacher.variant.predictor != "vgg16_hed":
        raise ConfigError(
            f"only a vgg16_hed predictor can be distilled this way; the teacher's is {teacher.variant.predictor!r}"
        )
    cfg = VariantConfig.from_dict(
        {**teacher.variant.to_dict(), "predictor_layers": predictor_layers, "predictor_pool": predictor_pool}
    )
    student = StyleTransferModel(cfg, layout=teacher.layout, name=teacher.name)
    student.style_heads.set_weights(teacher.style_heads.get_weights())
    student.transformer.set_weights(teacher.transformer.get_weights())
    if (teacher.variant.predictor_layers, teacher.variant.predictor_pool) == (predictor_layers, predictor_pool):
        student.predictor.set_weights(teacher.predictor.get_weights())  # the same geometry: start from its head
    student.predictor_init = f"distilled from {teacher.predictor_init}"
    return student


def _crops(data_dir: str, split: str, count: int, seed: int, size: int, augment: bool) -> np.ndarray:
    """`count` style crops (augmented: random scale, flips, hue) or the split's centre crops."""
    from imfuse.data.reader import count_examples, make_dataset

    if augment:
        ds = make_dataset(data_dir, "style", split, batch_size=32, image_size=size, training=True,
                          repeat=True, seed=seed, augment=True)
    else:
        count = min(count, count_examples(data_dir, "style", split))
        ds = make_dataset(data_dir, "style", split, batch_size=32, image_size=size, training=False, repeat=False)
    out = []
    for batch in ds:
        out.append(batch.numpy())
        if sum(len(b) for b in out) >= count:
            break
    return np.concatenate(out)[:count] if out else np.zeros((0, size, size, 3), np.float32)


def _targets(teacher, student_stats, images: np.ndarray, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """(student's statistics, teacher's style parameters) for every image, in chunks."""
    import tensorflow as tf

    xs, ys = [], []
    for start in range(0, len(images), 16):
        chunk = tf.constant(images[start : start + 16])
        xs.append(student_stats(chunk).numpy())
        ys.append(teacher.style_heads(teacher.embed_preprocessed(chunk)).numpy())
        if progress:
            progress(len(chunk))
    return np.concatenate(xs), np.concatenate(ys)


def relative_error(pred: np.ndarray, target: np.ndarray, reference_mean: np.ndarray) -> float:
    """Squared error over the target's spread around `reference_mean` (1 - R^2): 0 is a
    perfect copy, 1 is no better than giving every style the average conditioning."""
    spread = float(np.sum((target - reference_mean) ** 2))
    return float(np.sum((pred - target) ** 2) / max(spread, 1e-12))


def distill_predictor(cfg: PredictorDistillConfig, progress_factory=None) -> tuple[object, dict]:
    """Train the student's predictor head on the teacher's style parameters; returns
    (student model, metrics). The teacher is loaded from `cfg.init_from`."""
    import keras
    import tensorflow as tf

    from imfuse.base_model import resolve_model_path
    from imfuse.data.reader import count_examples
    from imfuse.networks import load_model

    if count_examples(cfg.data_dir, "style", "train") < 1:
        raise ConfigError(f"{cfg.data_dir} has no training styles to distil the predictor on")
    teacher = load_model(resolve_model_path(cfg.init_from))
    student = student_like(teacher, cfg.predictor_layers, cfg.predictor_pool)
    size = int(teacher.variant.style_size)
    # the vgg16_hed predictor's frozen statistics layer and its trainable head
    stats = student.predictor.get_layer("vgg16_hed_stats")
    head = [student.predictor.get_layer(name) for name in ("stats_hidden", "bottleneck")]

    def bar(total, desc):
        return progress_factory(total, desc) if progress_factory else None

    # Augmented crops (scale, flips, hue: new styles) and every training style as it is.
    train_images = np.concatenate([
        _crops(cfg.data_dir, "train", cfg.crops, cfg.seed, size, augment=True),
        _crops(cfg.data_dir, "train", cfg.crops, cfg.seed, size, augment=False),
    ])
    held_images = _crops(cfg.data_dir, "eval", cfg.crops, cfg.seed, size, augment=False)
    pbar = bar(len(train_images) + len(held_images), "teacher targets")
    x_train, y_train = _targets(teacher, stats, train_images, pbar.update if pbar else None)
    x_held, y_held = (_targets(teacher, stats, held_images, pbar.update if pbar else None)
                      if len(held_images) else (None, None))
    if pbar:
        pbar.close()

    # The head is fitted through the (frozen) style heads: what matters is the conditioning
    # the transformer receives, not the bottleneck's coordinates.
    keras.utils.set_random_seed(cfg.seed)
    stats_in = keras.Input(shape=(x_train.shape[1],))
    x = stats_in
    for layer in head:
        x = layer(x)
    student.style_heads.trainable = False
    fit_model = keras.Model(stats_in, student.style_heads(x))
    steps = cfg.epochs * max(1, len(x_train) // cfg.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, steps)
    fit_model.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse")
    mean = y_train.mean(axis=0)
    before = relative_error(fit_model.predict(x_train, verbose=0), y_train, mean)
    pbar = bar(cfg.epochs, "head epochs")
    callbacks = [keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: pbar.update(1))] if pbar else []
    fit_model.fit(x_train, y_train, batch_size=cfg.batch_size, epochs=cfg.epochs, shuffle=True, verbose=0,
                  callbacks=callbacks)
    if pbar:
        pbar.close()
    student.style_heads.trainable = True
    metrics = {
        "predictor/train_relative_error_initial": round(before, 6),
        "predictor/train_relative_error": round(relative_error(fit_model.predict(x_train, verbose=0), y_train, mean), 6),
        "predictor/train_crops": len(x_train),
    }
    if x_held is not None:
        metrics["predictor/heldout_relative_error"] = round(
            relative_error(fit_model.predict(x_held, verbose=0), y_held, mean), 6
        )
        metrics["predictor/heldout_styles"] = len(x_held)
    # The student's own predictor gives what the fitted graph gave.
    check = student.style_heads(student.embed_preprocessed(tf.constant(train_images[:4]))).numpy()
    if not np.allclose(check, fit_model.predict(x_train[:4], verbose=0), atol=1e-3):
        raise RuntimeError("distilled predictor head does not reproduce the fitted outputs")
    return student, metrics


def save_distilled(student, cfg: PredictorDistillConfig, metrics: dict) -> Path:
    """model.keras plus `<name>.distill.json` (config and metrics) beside it."""
    from imfuse.networks import save_model
    from imfuse.training.report import write_json

    out = Path(cfg.out)
    save_model(student, out)
    write_json(out.with_suffix(".distill.json"), {"config": dataclasses.asdict(cfg), "metrics": metrics})
    return out
