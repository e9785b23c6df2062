"""Gatys optimisation step: imfuse's compiled step vs a plain eager Keras loop.

The baseline is the loop written the obvious way, as in the keras-io neural style
transfer example but eager (no tf.function): GradientTape over the same loss network,
Gram matrices by reshape + matmul, optimizer.apply_gradients. Same content/style,
same loss network, same resolution. Target: ours >= 2x faster per step at 512 px.

Ours is timed in float32 and with the loss network in bfloat16 (the CLI default on
CPUs with AVX512-BF16/AMX, like this one), each as a compiled tf.function.

    python bench/gatys_step.py [--size 512] [--steps 8] [--xla]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import imfuse  # noqa: E402,F401  (first: it switches TensorFlow's oneDNN kernels on, see imfuse/__init__)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from imfuse.images import load_image  # noqa: E402
from imfuse.lossnet import build_loss_network  # noqa: E402
from imfuse.losses import LossWeights, style_grams  # noqa: E402
from imfuse.gatys import OptimizeConfig, run_optimization, working_size  # noqa: E402
from imfuse.images import resize_to  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def eager_baseline(lossnet, content, style, steps, weights, return_image=False):
    """The obvious eager loop (keras-io style), timed per step; with return_image, also
    its final image (bench/gatys_quality_time's target)."""

    def gram(x):
        x = tf.transpose(x[0], (2, 0, 1))
        features = tf.reshape(x, (tf.shape(x)[0], -1))
        return tf.matmul(features, tf.transpose(features))

    def compute_loss(combination):
        feats = lossnet(combination)
        loss = tf.zeros(())
        c = feats[lossnet.content_layers[0]]
        loss += weights.content * tf.reduce_mean(tf.square(c - content_feats[lossnet.content_layers[0]]))
        for name in lossnet.style_layers:
            f = feats[name]
            size = tf.cast(tf.reduce_prod(tf.shape(f)[1:]), tf.float32)
            g = gram(f) / size
            layer_w = lossnet.style_layer_weights.get(name, 1.0)
            loss += weights.style * layer_w * tf.reduce_mean(tf.square(g - targets[name][0]))
        a = tf.square(combination[:, 1:, :, :] - combination[:, :-1, :, :])
        b = tf.square(combination[:, :, 1:, :] - combination[:, :, :-1, :])
        loss += weights.tv * (tf.reduce_mean(a) + tf.reduce_mean(b))
        return loss

    content_feats = lossnet(content[None])
    targets = style_grams(lossnet, style[None])
    image = tf.Variable(content[None])
    optimizer = tf.keras.optimizers.Adam(learning_rate=0.02)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        with tf.GradientTape() as tape:
            loss = compute_loss(image)
        grads = tape.gradient(loss, image)
        optimizer.apply_gradients([(grads, image)])
        image.assign(tf.clip_by_value(image, 0.0, 1.0))
        float(loss)
        times.append(time.perf_counter() - start)
    if return_image:
        return times, image.numpy()[0]
    return times[1:]  # first step includes one-off setup


def ours(lossnet, content, style, steps, size, jit):
    config = OptimizeConfig(steps=steps + 1, size=size, jit_compile=jit)
    stamps = []
    import imfuse.gatys as opt

    original = opt.tqdm

    class Clock(original):  # timestamp each finished step through the progress bar
        def update(self, n=1):
            stamps.append(time.perf_counter())
            return super().update(n)

    opt.tqdm = Clock
    try:
        run_optimization(content, [(style, 1.0)], config, lossnet, progress=False)
    finally:
        opt.tqdm = original
    return list(np.diff(stamps))  # drops the compile-heavy first step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--xla", action="store_true")
    args = parser.parse_args()
    lossnet = build_loss_network()
    content_full = load_image(DATA / "content" / "tubingen.jpg").rgb
    style_full = load_image(DATA / "styles" / "starry_night.jpg").rgb
    hw = working_size(content_full.shape[:2], args.size)
    content = resize_to(content_full, hw)
    style = resize_to(style_full, working_size(style_full.shape[:2], args.size))
    lossnet_bf16 = build_loss_network(dtype_policy="mixed_bfloat16")
    compiled = "XLA" if args.xla else "tf.function"
    print(f"gatys step at {hw[1]}x{hw[0]} px, loss network {lossnet.name}, {args.steps} steps, median s/step")
    rows = []
    for _ in range(2):  # interleave runs so machine load affects all three alike
        rows.append((
            statistics.median(eager_baseline(lossnet, content, style, args.steps, LossWeights())),
            statistics.median(ours(lossnet, content, style, args.steps, args.size, args.xla)),
            statistics.median(ours(lossnet_bf16, content, style, args.steps, args.size, args.xla)),
        ))
    base, f32, bf16 = (min(col) for col in zip(*rows))
    print(f"  eager keras loop, float32 (baseline): {base:.3f} s/step")
    print(f"  imfuse {compiled}, float32:          {f32:.3f} s/step  ratio {base / f32:.2f}x")
    print(f"  imfuse {compiled}, bfloat16 lossnet: {bf16:.3f} s/step  ratio {base / bf16:.2f}x (target >= 2x)")


if __name__ == "__main__":
    main()
