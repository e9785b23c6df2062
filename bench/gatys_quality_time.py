"""Gatys time-to-quality: how long imfuse takes to reach the loss a plain eager loop reaches.

The baseline is bench/gatys_step's eager Keras Adam loop (keras-io style, float32, no
tf.function) run for --steps steps at --size px; its final image's loss is the target.
Each imfuse configuration then runs `imfuse.gatys.run_optimization` with `stop_loss` set
to that target (so it ends as soon as its own loss gets there, at most --max-steps at full
size) and is timed from the call to the returned image, tracing included. Every returned
image is scored again by one float32 evaluator (the baseline's loss network and weights),
so a bfloat16 run's own, rounded loss cannot claim a result it did not reach. Target
(issue #15): >= 3x faster than the baseline, on every CPU.

    python bench/gatys_quality_time.py                      # 512 px, 300 baseline steps
    python bench/gatys_quality_time.py --size 256 --steps 100 --configs adam,adam/levels=2
    python bench/gatys_quality_time.py --save /tmp/gqt      # PNGs of every result, to look at
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from gatys_step import DATA, eager_baseline  # noqa: E402
from imfuse.gatys import OptimizeConfig, run_optimization, working_size  # noqa: E402
from imfuse.images import load_image, resize_to, save_image  # noqa: E402
from imfuse.losses import LossWeights  # noqa: E402
from imfuse.lossnet import build_loss_network  # noqa: E402
from imfuse.precision import cpu_summary, cpu_has_fast_bf16  # noqa: E402

DEFAULT_CONFIGS = "adam,adam/levels=2,adam/levels=3,lbfgs,lbfgs/levels=2"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=512, help="longer side in px (the baseline's and the target's)")
    p.add_argument("--steps", type=int, default=300, help="baseline steps; its final loss is the target")
    p.add_argument("--max-steps", type=int, default=600, help="cap on each configuration's steps at full size")
    p.add_argument("--content", default="tubingen.jpg", help="photo in ../shared/data/content")
    p.add_argument("--style", default="starry_night.jpg", help="painting in ../shared/data/styles")
    p.add_argument("--configs", default=DEFAULT_CONFIGS,
                   help="comma-separated OPTIMIZER[/field=value...] (OptimizeConfig fields, e.g. "
                        "adam/levels=2/coarse_steps=150); each runs in float32, and in bfloat16 too where "
                        "the CPU has native bfloat16")
    p.add_argument("--save", help="folder for a PNG of the baseline's and every configuration's result")
    return p.parse_args(argv)


def parse_config(spec: str, base: OptimizeConfig) -> OptimizeConfig:
    """'adam/levels=2/coarse_steps=150' -> OptimizeConfig with those fields set."""
    optimizer, *fields = spec.split("/")
    config = replace(base, optimizer=optimizer)
    for field in fields:
        name, _, value = field.partition("=")
        current = getattr(config, name)  # AttributeError names an unknown field
        config = replace(config, **{name: type(current)(value)})
    config.validate()
    return config


def float32_loss(lossnet, weights, content, style):
    """Loss of any image under the baseline's float32 loss network: one yardstick for all."""
    from imfuse.training.scoring import PairScorer

    scorer = PairScorer(lossnet, weights)
    content_features, grams = scorer.content_targets(0, content), scorer.style_targets(("style", 0), style)
    return lambda image: scorer.score(image, content_features, grams)["loss"]


def run_ours(config, lossnet, content_full, style_full):
    """(seconds, full-size steps, image) of one run_optimization call with a stop loss."""
    started = time.perf_counter()
    result = run_optimization(content_full, [(style_full, 1.0)], config, lossnet, progress=False)
    seconds = time.perf_counter() - started
    return seconds, len(result.history) - result.final_level_start, result.image


def main(argv=None) -> int:
    args = parse_args(argv)
    print(cpu_summary(), flush=True)
    content_full = load_image(DATA / "content" / args.content).rgb
    style_full = load_image(DATA / "styles" / args.style).rgb
    hw = working_size(content_full.shape[:2], args.size)
    content = resize_to(content_full, hw)
    style = resize_to(style_full, working_size(style_full.shape[:2], args.size))
    weights = LossWeights()
    lossnet = build_loss_network()
    evaluate = float32_loss(lossnet, weights, content, style)

    started = time.perf_counter()
    _, image = eager_baseline(lossnet, content, style, args.steps, weights, return_image=True)
    base_seconds = time.perf_counter() - started
    target = evaluate(image)
    start_loss = evaluate(content)
    print(f"{args.content} x {args.style} at {hw[1]}x{hw[0]} px, loss network {lossnet.name}")
    print(f"baseline: eager Keras Adam loop, float32, {args.steps} steps: {base_seconds:.1f} s, "
          f"loss {start_loss:.4g} -> {target:.4g} (the target)")
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
        save_image(image, Path(args.save) / "baseline.png")

    precisions = ["float32"] + (["bfloat16"] if cpu_has_fast_bf16() else [])
    nets = {p: lossnet if p == "float32" else build_loss_network(dtype_policy="mixed_bfloat16") for p in precisions}
    base = OptimizeConfig(steps=args.max_steps, size=args.size, weights=weights, stop_loss=target)
    print(f"{'configuration':34}{'precision':>10}{'seconds':>9}{'steps':>7}{'loss/target':>13}{'speed-up':>10}")
    best = 0.0
    for spec in args.configs.split(","):
        for precision in precisions:
            config = replace(parse_config(spec, base), precision=precision)
            seconds, steps, image = run_ours(config, nets[precision], content_full, style_full)
            ratio = evaluate(image) / target
            reached = ratio <= 1.0 + 1e-6
            speedup = base_seconds / seconds
            best = max(best, speedup if reached else 0.0)
            note = "" if reached else "  (target not reached)"
            print(f"{spec:34}{precision:>10}{seconds:9.1f}{steps:7d}{ratio:13.4f}{speedup:9.2f}x{note}", flush=True)
            if args.save:
                save_image(image, Path(args.save) / f"{spec.replace('/', '_').replace('=', '')}_{precision}.png")
    print(f"best speed-up to the baseline's {args.steps}-step loss: {best:.2f}x (target >= 3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
