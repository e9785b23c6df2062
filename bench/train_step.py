"""Training throughput: full vs reduced variant, side by side, and the input wait.

Runs the real `imfuse.training.train` loop (real tf.data reader over a Beam-prepared
dataset of ../shared/data at 256 px, predictor weights none) for a few steps per variant,
drops the warm-up steps and reports images/s and the fraction of step time spent
waiting for the next batch. Targets (issue 4): reduced >= 4x full, input wait < 5 %.
It also times the style networks alone (forward + backward, no loss network), which
shows how much of a step the shared VGG loss network takes.

    python bench/train_step.py [--steps 6] [--warmup 2] [--batch-size 2] [--image-size 256]
        [--precision auto float32] [--jit] [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
VARIANTS = ("full", "reduced")


def prepare(out: Path, size: int) -> Path:
    from imfuse.data.prepare import PrepareConfig, prepare_dataset

    prepare_dataset(
        PrepareConfig(
            content=str(SHARED / "content"),
            styles=str(SHARED / "styles"),
            out=str(out),
            content_size=size,
            style_size=size,
            style_large_size=size,
            progress=False,
        )
    )
    return out


def time_training(data: Path, variant: str, precision: str, args, work: Path) -> dict:
    """Per-step wall and input-wait times of a real run, warm-up steps dropped."""
    from imfuse.training import TrainConfig, train

    steps: list[tuple[float, float]] = []  # (step seconds, wait seconds)

    def on_log(step: int, metrics: dict) -> None:
        if step > args.warmup:
            seconds = args.batch_size / metrics["train/images_per_second"]
            steps.append((seconds, seconds * metrics["train/input_wait_fraction"]))

    config = TrainConfig(
        data_dir=str(data),
        out_dir=str(work / f"{variant}-{precision}"),
        variant=variant,
        steps=args.warmup + args.steps,
        batch_size=args.batch_size,
        image_size=args.image_size,
        style_size=args.image_size,
        loss_precision=precision,
        log_every=1,
        checkpoint_every=10_000,
        jit=args.jit,
    )
    train(config, on_log=on_log, progress=False)
    total = sum(s for s, _ in steps)
    return {
        "images_per_second": len(steps) * args.batch_size / total,
        "step_s": statistics.median(s for s, _ in steps),
        "input_wait": sum(w for _, w in steps) / total,
    }


def time_networks(variant: str, args) -> float:
    """Images/s of the style networks alone: predictor + transformer, forward + backward."""
    import numpy as np
    import tensorflow as tf

    from imfuse.networks import build_model

    model = build_model(variant, "none", style_size=args.image_size)
    rng = np.random.default_rng(0)
    shape = (args.batch_size, args.image_size, args.image_size, 3)
    content = tf.constant(rng.random(shape, np.float32))
    style = tf.constant(rng.random(shape, np.float32))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model({"content": content, "style": style}, training=True))
        return tape.gradient(loss, model.trainable_variables)

    for _ in range(args.warmup):
        step()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    return args.steps * args.batch_size / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps (tracing, caches)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--precision", nargs="+", default=["auto", "float32"], help="loss-network precisions")
    parser.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--data", type=Path, help="prepared dataset (default: ../shared/data, prepared here)")
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1 (the first step includes tracing)")

    from imfuse.precision import dtype_policy_for

    with tempfile.TemporaryDirectory(prefix="imfuse-bench-train-") as tmp:
        work = Path(tmp)
        data = args.data or prepare(work / "data", args.image_size)
        print(f"train step, {args.image_size} px, batch {args.batch_size}, {args.steps} timed steps after "
              f"{args.warmup} warm-up, predictor weights none, cpu count {os.cpu_count()}")
        print(f"{'loss-net precision':<26}{'full img/s':>12}{'reduced img/s':>15}{'ratio':>8}"
              f"{'full wait':>11}{'reduced wait':>14}")
        worst_wait, ratios = 0.0, []
        for precision in args.precision:
            row = {v: time_training(data, v, precision, args, work) for v in VARIANTS}
            ratio = row["reduced"]["images_per_second"] / row["full"]["images_per_second"]
            ratios.append(ratio)
            worst_wait = max(worst_wait, row["full"]["input_wait"], row["reduced"]["input_wait"])
            label = f"{precision} ({dtype_policy_for(precision)})"
            print(f"{label:<26}{row['full']['images_per_second']:>12.3f}{row['reduced']['images_per_second']:>15.3f}"
                  f"{ratio:>7.2f}x{row['full']['input_wait']:>10.2%}{row['reduced']['input_wait']:>14.2%}",
                  flush=True)
        nets = {v: time_networks(v, args) for v in VARIANTS}
        print(f"{'style networks alone':<26}{nets['full']:>12.3f}{nets['reduced']:>15.3f}"
              f"{nets['reduced'] / nets['full']:>7.2f}x   (fwd+bwd, no loss network)")
        print(f"target reduced >= 4x full: best {max(ratios):.2f}x -> {'PASS' if max(ratios) >= 4 else 'FAIL'}")
        print(f"target input wait < 5%: worst {worst_wait:.2%} -> {'PASS' if worst_wait < 0.05 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
