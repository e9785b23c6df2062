"""Fit one style's embedding to the Gatys losses, once per style, for styles the predictor
never saw.

The predictor maps a new painting to the bottleneck in one pass, and on styles unlike its
training set it falls short (bench/quality: Turner's shipwreck at 6x lite's style loss).
The transformer can do much better with the right conditioning: L-BFGS (or Adam) on the
embedding alone, against the style's Gram matrices over a few photos, moves it there in minutes
(Dumoulin et al. 2017 fit a new style's normalisation parameters the same way). The result
is an ordinary embedding, so the CLI (`imfuse stylize --embedding`), the
`stylize_with_embedding` serving signature and `imfuse client` use it as they are: fit
once, reuse for every photo.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from imfuse.errors import ConfigError, ImageError
from imfuse.loss_config import CONTENT_WEIGHT, STYLE_WEIGHT, TV_WEIGHT

FORMAT = "imfuse-style-embedding/1"
OPTIMIZERS = ("adam", "lbfgs")
MAX_FIT_PHOTOS = 64  # every photo is held in memory at the fit size; a few dozen are plenty


@dataclass
class StyleFitConfig:
    # bench/quality's unseen styles (2-core AVX2-only EPYC, float32), geo/id and time a style: on
    # whole photos, 30 L-BFGS iterations 0.049 in 198 s, Adam's 100 steps at lr 0.1 0.059 in 267 s;
    # on 128 px centre crops (2026-12-07, eleventh session), 30 iterations 0.053 in 51 s, 60 0.035 in 94 s, 120 0.026
    # (with coloured speckles along edges by eye), 64 px crops 0.086.
    optimizer: str = "lbfgs"  # SciPy's L-BFGS on every photo at once; or "adam": minibatches, flips
    steps: int = 60  # L-BFGS iterations, or Adam steps (100 at lr 0.1 was Adam's best)
    learning_rate: float = 0.1  # Adam only, in embedding units (the predictor's outputs are O(1))
    batch_size: int = 4
    size: int = 256  # photos and the style are scored at this square size, as bench/quality does
    # Photos larger than this are cut to their centre crop of this size (0: whole photos). The style's
    # Grams stay at `size`, so the strokes keep their scale; a quarter of the pixels costs a quarter of the time.
    crop: int = 128
    precision: str = "auto"  # the loss network's compute: bfloat16 where the CPU has it
    seed: int = 0
    content_weight: float = CONTENT_WEIGHT
    style_weight: float = STYLE_WEIGHT
    tv_weight: float = TV_WEIGHT

    def validate(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not 32 <= self.size <= 1024:
            raise ConfigError(f"size must be between 32 and 1024 px, got {self.size}")
        if self.crop and self.crop < 32:
            raise ConfigError(f"crop must be 0 (whole photos) or at least 32 px, got {self.crop}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning rate must be positive, got {self.learning_rate}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        from imfuse.precision import dtype_policy_for

        dtype_policy_for(self.precision)


@dataclass
class StyleFitResult:
    embedding: np.ndarray  # (D,) float32: the fitted embedding
    predicted: np.ndarray  # (D,) float32: the predictor's, where the fit started
    history: list[dict[str, float]] = field(default_factory=list)  # batch losses per step


def default_fit_photos(size: int) -> list[np.ndarray]:
    """The photos that installed dependencies ship (imfuse.data.demo), centre squares at `size`:
    real photographs on every machine, none of them a benchmark's held-out image."""
    from imfuse.data.demo import dependency_photos
    from imfuse.images import load_image
    from imfuse.training.scoring import center_square

    photos = [center_square(load_image(path).rgb, size) for _, path in dependency_photos()]
    if not photos:
        raise ConfigError("no dependency-shipped photos found (scikit-learn, matplotlib, scikit-image); pass --photos")
    return photos


def fit_style_embedding(
    model,
    style_rgb: np.ndarray,
    photos: list[np.ndarray],
    config: StyleFitConfig | None = None,
    lossnet=None,
    progress: bool = True,
    on_step: Callable[[int, int, dict[str, float]], None] | None = None,
) -> StyleFitResult:
    """L-BFGS (or Adam) on the style's embedding, model weights frozen: each step stylises
    `photos` (square, config.size, cut to their centre config.crop; all of them for L-BFGS, a
    batch flipped at random for Adam) and lowers their Gatys losses against the style's Gram
    matrices at config.size."""
    import tensorflow as tf
    from tqdm.auto import tqdm

    from imfuse.losses import LossWeights, perceptual_losses, style_grams
    from imfuse.training.scoring import center_square

    config = config or StyleFitConfig()
    config.validate()
    if not photos:
        raise ConfigError("at least one photo is needed to fit a style")
    if len(photos) > MAX_FIT_PHOTOS:
        raise ConfigError(f"at most {MAX_FIT_PHOTOS} photos can fit a style, got {len(photos)}")
    shapes = {np.shape(p) for p in photos}
    if shapes != {(config.size, config.size, 3)}:
        raise ImageError(f"fit photos must be {config.size}x{config.size} RGB squares, got shapes {sorted(shapes)}")
    if lossnet is None:
        from imfuse.lossnet import build_loss_network
        from imfuse.precision import dtype_policy_for

        lossnet = build_loss_network(dtype_policy=dtype_policy_for(config.precision))
    weights = LossWeights(content=config.content_weight, style=config.style_weight, tv=config.tv_weight)
    style_rgb = np.asarray(style_rgb, np.float32)
    grams = style_grams(lossnet, tf.constant(center_square(style_rgb, config.size)[None]))  # (1, C, C) per layer
    # The start is what `imfuse stylize` would use: the predictor's embedding of the style as given.
    predicted = np.asarray(model.embed_style(style_rgb[None]), np.float32)
    stack = np.stack(photos).astype(np.float32)
    if 0 < config.crop < config.size:
        top = (config.size - config.crop) // 2
        stack = stack[:, top : top + config.crop, top : top + config.crop]
    batch = min(config.batch_size, len(stack))
    # Every photo (and for Adam its mirror image), with their content features computed once
    # here instead of at every step (the photos never change; only the embedding does).
    mirrored = [stack[:, :, ::-1]] if config.optimizer == "adam" else []
    variants = tf.constant(np.concatenate([stack, *mirrored]))
    chunks = [lossnet(variants[i : i + batch]) for i in range(0, len(variants), batch)]
    content_features = {k: tf.concat([c[k] for c in chunks], axis=0) for k in lossnet.content_layers}
    target_grams = {k: tf.repeat(v, batch, axis=0) for k, v in grams.items()}

    @tf.function(reduce_retracing=True)
    def loss_and_grad(index, e):  # index: rows of `variants`; e: (1, D)
        images = tf.gather(variants, index)
        targets = {k: tf.gather(v, index) for k, v in content_features.items()}
        chunk_grams = {k: v[: tf.shape(index)[0]] for k, v in target_grams.items()}
        with tf.GradientTape() as tape:
            tape.watch(e)
            out = model.stylize_with_embedding(images, tf.repeat(e, tf.shape(index)[0], axis=0))
            terms = perceptual_losses(lossnet, out, targets, chunk_grams, weights)
        return terms, tape.gradient(terms["loss"], e)

    history: list[dict[str, float]] = []
    steps_done = [0]
    with tqdm(total=config.steps, desc="fit style", unit="step", disable=not progress) as bar:

        def record(terms, start: bool = False):  # start: the loss before the first step, not a step
            terms = {k: float(v) for k, v in terms.items()}
            history.append(terms)
            if start:
                return
            steps_done[0] += 1
            bar.update(1)
            bar.set_postfix(style=f"{terms['style_loss']:.4g}")
            if on_step is not None:
                on_step(steps_done[0], config.steps, terms)

        solve = _lbfgs if config.optimizer == "lbfgs" else _adam
        fitted = solve(loss_and_grad, predicted, len(stack), batch, config, record)
    return StyleFitResult(embedding=fitted, predicted=predicted[0], history=history)


def _adam(loss_and_grad, start: np.ndarray, n: int, batch: int, config: StyleFitConfig, record) -> np.ndarray:
    """Minibatches of `batch` photos, each the photo or its mirror image at random."""
    import tensorflow as tf

    embedding = tf.Variable(start)
    optimizer = tf.keras.optimizers.Adam(config.learning_rate)
    rng = np.random.default_rng(config.seed)
    for _ in range(config.steps):
        index = rng.choice(n, batch, replace=False)
        index = index + n * (rng.random(batch) < 0.5)  # the mirrored copy, at random
        terms, grad = loss_and_grad(tf.constant(index), tf.convert_to_tensor(embedding))
        optimizer.apply_gradients([(grad, embedding)])
        record(terms)
    return embedding.numpy()[0]


def _lbfgs(loss_and_grad, start: np.ndarray, n: int, batch: int, config: StyleFitConfig, record) -> np.ndarray:
    """Every photo (none mirrored) in every evaluation: the deterministic objective L-BFGS needs."""
    import tensorflow as tf
    from scipy.optimize import minimize

    chunks = [tf.range(i, min(i + batch, n)) for i in range(0, n, batch)]
    shares = [int(index.shape[0]) / n for index in chunks]

    def fun(flat):
        e = tf.constant(flat[None], tf.float32)
        parts = [loss_and_grad(index, e) for index in chunks]
        first = not hasattr(fun, "terms")
        fun.terms = {k: sum(float(t[k]) * w for (t, _), w in zip(parts, shares)) for k in parts[0][0]}
        if first:  # the loss where the fit starts, as Adam's first record is
            record(fun.terms, start=True)
        return fun.terms["loss"], sum(g.numpy()[0].astype(np.float64) * w for (_, g), w in zip(parts, shares))

    result = minimize(fun, start[0].astype(np.float64), jac=True, method="L-BFGS-B",
                      callback=lambda _: record(fun.terms),
                      options={"maxiter": config.steps, "maxfun": 2 * config.steps})
    return result.x.astype(np.float32)


def save_style_embedding(path: str | os.PathLike, result: StyleFitResult, record: dict) -> Path:
    """A small JSON file: the embedding, the one it started from, and how it was made."""
    from imfuse.fsutil import atomic_write_text

    path = Path(path)
    if path.suffix != ".json":
        raise ConfigError(f"a fitted style is written as .json, got {path}")
    body = {
        "format": FORMAT,
        "embedding": [float(x) for x in result.embedding],
        "predicted": [float(x) for x in result.predicted],
        "loss_first": result.history[0] if result.history else None,
        "loss_last": result.history[-1] if result.history else None,
        **record,
    }
    atomic_write_text(path, json.dumps(body, indent=1))
    return path


def load_style_embedding(path: str | os.PathLike, dim: int | None = None) -> np.ndarray:
    """(D,) float32 from a file save_style_embedding wrote; a wrong file -> ConfigError."""
    path = Path(path)
    try:
        body = json.loads(path.read_text())
        if body.get("format") != FORMAT:
            raise ValueError(f"format is {body.get('format')!r}, expected {FORMAT!r}")
        embedding = np.asarray(body["embedding"], np.float32)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"cannot read fitted style {path}: {type(exc).__name__}: {exc}") from None
    if embedding.ndim != 1 or not np.isfinite(embedding).all():
        raise ConfigError(f"fitted style {path}: embedding must be a finite vector")
    if dim is not None and embedding.shape[0] != dim:
        raise ConfigError(f"fitted style {path} has {embedding.shape[0]} values; this model's embedding has {dim}")
    return embedding


def fit_record(config: StyleFitConfig, model_name: str, style: str, photos: str, lossnet_name: str) -> dict:
    """What a fitted style file says about its making."""
    return {"model": model_name, "style": style, "photos": photos, "loss_network": lossnet_name,
            "config": asdict(config)}
