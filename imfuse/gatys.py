"""Gatys et al. optimisation: the image itself is the variable.

A product feature (`imfuse stylize --method optimize`: best quality, slow) and the
quality baseline for evaluation. The step is one compiled tf.function; L-BFGS runs
SciPy's L-BFGS-B on the same compiled loss-and-gradient with [0, 1] box bounds.
Coarse-to-fine (`levels` > 1) first solves at half (quarter, ...) size, where a step costs
a quarter as much and the large shapes settle in fewer steps, then upsamples the result
as the next level's start (bench/gatys_quality_time measures the time to a given loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from imfuse.color import preserve_color as merge_color
from imfuse.color import rgb_to_yiq
from imfuse.errors import ConfigError
from imfuse.images import resize_to
from imfuse.losses import LossWeights, mix_grams, perceptual_losses, style_grams
from imfuse.precision import dtype_policy_for

OPTIMIZERS = ("adam", "lbfgs")


@dataclass
class OptimizeConfig:
    # L-BFGS reaches the loss of 300 Adam steps in about 45 iterations, 9x sooner at 512 px
    # (bench/gatys_quality_time), so 100 iterations end well below it.
    steps: int = 100
    size: int = 512  # longer side of the working resolution
    optimizer: str = "lbfgs"
    learning_rate: float = 0.02  # Adam step in [0, 1] pixel units
    weights: LossWeights = field(default_factory=LossWeights)
    init: str = "content"  # or "noise"
    preserve_color: bool = False
    jit_compile: bool = False  # XLA measured slower on CPU here (bench/gatys_step); useful on GPU
    precision: str = "auto"  # loss-network compute: auto picks bfloat16 where the CPU has it
    seed: int = 0
    levels: int = 1  # coarse-to-fine: 2 = solve at size/2 first, then at size
    coarse_steps: int = 100  # steps at each level coarser than `size`
    stop_loss: float | None = None  # end early once the loss at full size falls to this

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer '{self.optimizer}'; choose adam or lbfgs")
        if self.steps < 1:
            raise ConfigError(f"--steps must be >= 1 (got {self.steps})")
        if not 16 <= self.size <= 4096:
            raise ConfigError(f"--size must be between 16 and 4096 px (got {self.size})")
        if self.init not in ("content", "noise"):
            raise ConfigError(f"unknown init '{self.init}'; choose content or noise")
        if self.learning_rate <= 0:
            raise ConfigError("learning rate must be positive")
        if self.levels < 1 or self.size >> (self.levels - 1) < 16:
            raise ConfigError(f"--levels must be >= 1 and keep the coarsest level >= 16 px (got {self.levels} at {self.size} px)")
        if self.levels > 1 and self.coarse_steps < 1:
            raise ConfigError(f"--coarse-steps must be >= 1 (got {self.coarse_steps})")
        dtype_policy_for(self.precision)


@dataclass
class OptimizeResult:
    image: np.ndarray  # float32 (H, W, 3) in [0, 1] at the working resolution
    history: list[dict[str, float]]  # losses per step (weighted terms), every level in order
    final_level_start: int = 0  # index in history of the first step at full size


def working_size(shape_hw: tuple[int, int], longer_side: int) -> tuple[int, int]:
    """Scale (H, W) so the longer side is `longer_side`, keeping aspect."""
    h, w = shape_hw
    scale = longer_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def _luminance3(rgb: np.ndarray) -> np.ndarray:
    return np.repeat(rgb_to_yiq(rgb)[..., :1], 3, axis=-1)


def _match_luminance(style_y: np.ndarray, content_y: np.ndarray) -> np.ndarray:
    """Shift/scale the style luminance to the content's mean and std (Gatys 2016)."""
    std = style_y.std() or 1.0
    return np.clip((style_y - style_y.mean()) / std * content_y.std() + content_y.mean(), 0, 1)


def level_sizes(size: int, levels: int) -> list[int]:
    """Longer sides of the coarse-to-fine levels, coarsest first: 512, 2 -> [256, 512]."""
    return [max(1, size >> k) for k in reversed(range(levels))]


def _prepare_inputs(content_rgb, styles, config, mask, size):
    hw = working_size(content_rgb.shape[:2], size)
    content = resize_to(content_rgb, hw)
    style_images = [resize_to(style_rgb, working_size(style_rgb.shape[:2], size)) for style_rgb, _ in styles]
    if config.preserve_color:
        content_in = _luminance3(content)
        style_images = [_match_luminance(_luminance3(s), content_in) for s in style_images]
    else:
        content_in = content
    mask_hw = None if mask is None else resize_to(np.repeat(mask[..., None], 3, axis=-1), hw)[..., 0]
    return content, content_in, style_images, mask_hw


def run_optimization(
    content_rgb: np.ndarray,
    styles: list[tuple[np.ndarray, float]],
    config: OptimizeConfig | None = None,
    lossnet=None,
    mask: np.ndarray | None = None,
    progress: bool = True,
    on_step: Callable[[int, int, dict[str, float]], None] | None = None,
) -> OptimizeResult:
    """Optimise an image to match the content's features and the styles' Gram matrices.

    styles: [(rgb, weight)]; several styles are mixed by a weighted average of their Gram
    matrices. mask (H, W) in [0, 1]: only the masked region is stylised (style statistics
    are matched inside it and the rest keeps the content's pixels exactly).
    on_step(done, total, losses) is called after every step (progress bars of other
    front ends, e.g. imfuse studio); an exception it raises stops the run and propagates
    (that is how a caller cancels).
    """
    config = config or OptimizeConfig()
    config.validate()
    if not styles:
        raise ConfigError("at least one style image is needed")
    if any(w <= 0 for _, w in styles):
        raise ConfigError("style weights must be positive")
    if lossnet is None:
        from imfuse.lossnet import build_loss_network

        lossnet = build_loss_network(dtype_policy=dtype_policy_for(config.precision))

    sizes = level_sizes(config.size, config.levels)
    total = config.steps + config.coarse_steps * (len(sizes) - 1)
    history: list[dict[str, float]] = []
    bar = tqdm(total=total, desc=f"gatys/{config.optimizer}", unit="step", disable=not progress)

    def record(terms):
        row = {k: float(v) for k, v in terms.items()}
        history.append(row)
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.4g}", style=f"{row['style_loss']:.4g}")
        if on_step is not None:
            on_step(len(history), total, row)

    image = None
    final_start = 0
    try:
        for level, size in enumerate(sizes):
            final = level == len(sizes) - 1
            content, content_in, style_images, mask_hw = _prepare_inputs(content_rgb, styles, config, mask, size)
            if image is None:
                start = content_in if config.init == "content" else (
                    np.random.default_rng(config.seed).uniform(0, 1, content_in.shape).astype(np.float32))
            else:  # the coarser level's result, upsampled
                start = np.clip(resize_to(image, content_in.shape[:2]), 0.0, 1.0)
            final_start = len(history)
            image, composite = _solve_level(
                lossnet, styles, content_in, style_images, mask_hw, start, config,
                steps=config.steps if final else config.coarse_steps,
                stop_loss=config.stop_loss if final else None, record=record,
            )
    finally:
        bar.close()

    image = np.clip(composite(tf.constant(image[None]))[0].numpy(), 0.0, 1.0)
    if config.preserve_color:
        image = merge_color(content, image)
        if mask_hw is not None:  # chroma merge must not touch the unmasked content pixels
            image = mask_hw[..., None] * image + (1 - mask_hw[..., None]) * content
    return OptimizeResult(image=image.astype(np.float32), history=history, final_level_start=final_start)


class _Stop(Exception):
    """Raised by a level's record hook once the loss reaches the config's stop_loss."""


def _solve_level(lossnet, styles, content_in, style_images, mask_hw, start, config, steps, stop_loss, record):
    """One resolution: compiled loss-and-gradient, then Adam or L-BFGS from `start`.

    Returns (image, composite), composite mapping the variable to the output (the mask's
    outside keeps the content)."""
    c = tf.constant(content_in[None])
    m = None if mask_hw is None else tf.constant(mask_hw[None, :, :, None])
    content_features = {k: tf.constant(v) for k, v in lossnet(c).items()}
    grams = mix_grams(
        [style_grams(lossnet, tf.constant(s[None])) for s in style_images], [w for _, w in styles]
    )
    weights = config.weights

    def composite(x):
        return x if m is None else m * x + (1.0 - m) * c

    @tf.function(jit_compile=config.jit_compile, reduce_retracing=True)
    def loss_and_grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            terms = perceptual_losses(lossnet, composite(x), content_features, grams, weights, m)
        return terms, tape.gradient(terms["loss"], x)

    def record_level(terms):
        record(terms)
        if stop_loss is not None and float(terms["loss"]) <= stop_loss:
            raise _Stop

    solve = _adam if config.optimizer == "adam" else _lbfgs
    return solve(loss_and_grad, start, config.learning_rate, steps, record_level), composite


def _adam(loss_and_grad, start: np.ndarray, learning_rate: float, steps: int, record) -> np.ndarray:
    x = tf.Variable(start[None])
    optimizer = tf.keras.optimizers.Adam(learning_rate=learning_rate, beta_1=0.9, epsilon=1e-3)

    @tf.function
    def step():
        terms, grad = loss_and_grad(x)
        optimizer.apply_gradients([(grad, x)])
        x.assign(tf.clip_by_value(x, 0.0, 1.0))
        return terms

    try:
        for _ in range(steps):
            # The terms are the loss of x before this step's update, the update is kept either way.
            record(step())
    except _Stop:
        pass
    return x.numpy()[0]


def _lbfgs(loss_and_grad, start: np.ndarray, _learning_rate: float, steps: int, record) -> np.ndarray:
    from scipy.optimize import Bounds, minimize

    shape = (1,) + start.shape

    def fun(flat):
        terms, grad = loss_and_grad(tf.constant(flat.reshape(shape), tf.float32))
        fun.last = terms
        return float(terms["loss"]), grad.numpy().astype(np.float64).ravel()

    def callback(intermediate_result):
        try:
            record(fun.last)
        except _Stop:
            raise StopIteration from None  # SciPy ends the run and returns the current x

    result = minimize(
        fun,
        start.astype(np.float64).ravel(),
        jac=True,
        method="L-BFGS-B",
        bounds=Bounds(np.zeros(start.size), np.ones(start.size)),
        callback=callback,
        options={"maxiter": steps, "maxfun": steps * 2},
    )
    return result.x.reshape(start.shape).astype(np.float32)


def optimize_image(
    content_rgb: np.ndarray,
    styles: list[tuple[np.ndarray, float]],
    config: OptimizeConfig | None = None,
    lossnet=None,
    mask: np.ndarray | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Like run_optimization, returning only the image."""
    return run_optimization(content_rgb, styles, config, lossnet, mask, progress).image
