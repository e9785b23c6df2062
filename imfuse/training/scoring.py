"""Scoring for the evaluation and the benchmarks: held-out images, pairs, Gatys terms.

Pairs are eval-split content x (train styles = "seen", unseen styles); every pair is scored
at one size, for the model and for the identity baseline (the content image itself).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from imfuse.errors import DataError
from imfuse.images import decode_image, resize_to
from imfuse.losses import LossWeights, perceptual_losses, style_grams
from imfuse.tracking import EVAL_IMAGES_PER_SECOND, eval_metric

TERMS = ("loss", "content_loss", "style_loss", "tv_loss")
SEEN, UNSEEN = "seen", "unseen"
SPLIT_OF = {SEEN: "train", UNSEEN: "unseen"}
# Real images no training reads (imfuse.data.demo.REFERENCE_STYLES), over the eval contents: a
# gate on them keeps a fine-tune from trading real styles for its dataset's own (a main-job fine-tune
# on 60 generated styles beat the base on their unseen split and was 2.6x worse on real paintings).
REFERENCE = "reference"


@dataclass
class EvalImage:
    rgb: np.ndarray  # (S, S, 3) float32 in [0, 1]
    source: str


def center_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop resized to size x size (every pair is scored at one scale)."""
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return resize_to(rgb[top : top + side, left : left + side], (size, size))


def read_split(data_dir: str | os.PathLike, kind: str, split: str, size: int, limit: int | None = None) -> list[EvalImage]:
    """Images of kind/split in shard order, decoded and squared (imfuse.data.reader)."""
    from imfuse.data.reader import read_examples

    return [EvalImage(center_square(decode_image(data, source).rgb, size), source)
            for source, data in read_examples(data_dir, kind, split, limit)]


def read_eval_images(data_dir: str | os.PathLike, size: int, max_pairs: int | None, reference: bool = False):
    """(eval contents, {seen: train styles, unseen: unseen styles[, reference: REFERENCE styles]},
    pairs) at `size`; DataError naming an empty split. Reference pairs come on top of max_pairs,
    one per reference style."""
    contents = read_split(data_dir, "content", "eval", size, max_pairs)
    styles = {g: read_split(data_dir, "style", SPLIT_OF[g], size, max_pairs) for g in (SEEN, UNSEEN)}
    for name, items in (("content/eval", contents), ("style/train", styles[SEEN]), ("style/unseen", styles[UNSEEN])):
        if not items:
            raise DataError(f"{os.path.join(data_dir, name)}: no images; evaluation needs eval content, train and unseen styles")
    pairs = select_pairs(len(contents), len(styles[SEEN]), len(styles[UNSEEN]), max_pairs)
    if reference:
        from imfuse.data.demo import reference_styles
        from imfuse.images import load_image

        styles[REFERENCE] = [EvalImage(center_square(load_image(path).rgb, size), str(path))
                             for _, path in reference_styles()]
        if not styles[REFERENCE]:
            warnings.warn("no reference styles found (scikit-image's data folder): the gate compares on the "
                          "dataset's styles only", RuntimeWarning, stacklevel=2)
        pairs += [(s % len(contents), REFERENCE, s) for s in range(len(styles[REFERENCE]))]
    return contents, styles, pairs


def _diagonal(n_content: int, n_style: int) -> list[tuple[int, int]]:
    """All (content, style) index pairs ordered so any prefix spreads over contents and styles."""
    return [(c, (q + c) % n_style) for q in range(n_style) for c in range(n_content)]


def select_pairs(n_content: int, n_seen: int, n_unseen: int, max_pairs: int | None) -> list[tuple[int, str, int]]:
    """(content index, "seen"/"unseen", style index) pairs; capped at max_pairs, split evenly."""
    seen = [(c, SEEN, s) for c, s in _diagonal(n_content, n_seen)]
    unseen = [(c, UNSEEN, s) for c, s in _diagonal(n_content, n_unseen)]
    if max_pairs is not None and len(seen) + len(unseen) > max_pairs:
        n_unseen_take = min(len(unseen), max(max_pairs - len(seen), math.ceil(max_pairs / 2)))
        n_seen_take = min(len(seen), max_pairs - n_unseen_take)
        seen, unseen = seen[:n_seen_take], unseen[:n_unseen_take]
    return seen + unseen


class PairScorer:
    """Weighted Gatys terms of single images, with per-content / per-style targets cached."""

    def __init__(self, lossnet, weights: LossWeights):
        self.lossnet, self.weights = lossnet, weights
        self._content: dict[int, dict] = {}
        self._grams: dict[tuple[str, int], dict] = {}
        self._fn = tf.function(
            lambda images, feats, grams: perceptual_losses(lossnet, images, feats, grams, weights),
            reduce_retracing=True,
        )

    def content_targets(self, idx: int, rgb: np.ndarray) -> dict:
        if idx not in self._content:
            feats = self.lossnet(rgb[None])
            self._content[idx] = {k: feats[k] for k in self.lossnet.content_layers}
        return self._content[idx]

    def style_targets(self, key: tuple[str, int], rgb: np.ndarray) -> dict:
        if key not in self._grams:
            self._grams[key] = style_grams(self.lossnet, rgb[None])
        return self._grams[key]

    def score(self, image: np.ndarray, content_feats: dict, grams: dict) -> dict[str, float]:
        terms = self._fn(np.asarray(image, np.float32)[None], content_feats, grams)
        return {k: float(terms[k]) for k in TERMS}


def mean(rows: list[dict], term: str) -> float:
    return float(np.mean([r[term] for r in rows])) if rows else float("nan")


def style_ratio(rows: list[dict]) -> float:
    """Geometric mean over pairs of the model's style loss / the photo's own (identity).

    Styles' Gram values differ by 100x, so a mean of style losses is decided by the loudest
    style of the set; every pair counts alike here. Scored for two models on the same pairs
    (the gate), the identity terms cancel: it is the geometric mean of their per-pair ratios.
    """
    if not rows:
        return float("nan")
    ratios = [r["model"]["style_loss"] / max(r["identity"]["style_loss"], 1e-12) for r in rows]
    return float(np.exp(np.mean(np.log(np.maximum(ratios, 1e-12)))))


def stylize_batch(model, contents: np.ndarray, style: np.ndarray) -> np.ndarray:
    """Contents (B, S, S, 3) each stylised with one style image -> (B, S, S, 3) in [0, 1].

    Through the model's compiled calls (an evaluation makes dozens), the style embedded once."""
    from imfuse.networks import compiled_calls

    embed, stylize = compiled_calls(model)
    embedding = embed(np.asarray(style, np.float32)[None])
    out = stylize(np.asarray(contents, np.float32), embedding)
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def score_model(model, scorer, contents, styles, pairs, progress) -> tuple[list[dict], float]:
    """Stylise every pair (grouped by style), score model output and identity; time the model."""
    groups: dict[tuple[str, int], list[int]] = {}
    for c, group, s in pairs:
        groups.setdefault((group, s), []).append(c)
    stylize_batch(model, np.stack([contents[pairs[0][0]].rgb]), styles[pairs[0][1]][pairs[0][2]].rgb)  # warm-up
    results: dict[tuple[int, str, int], dict] = {}
    seconds, count = 0.0, 0
    for (group, s), content_ids in tqdm(groups.items(), desc="evaluate", unit="style", disable=not progress):
        style = styles[group][s]
        batch = np.stack([contents[c].rgb for c in content_ids])
        start = time.perf_counter()
        stylized = stylize_batch(model, batch, style.rgb)
        seconds += time.perf_counter() - start
        count += len(content_ids)
        grams = scorer.style_targets((group, s), style.rgb)
        for c, image in zip(content_ids, stylized):
            feats = scorer.content_targets(c, contents[c].rgb)
            results[(c, group, s)] = {
                "content": contents[c].source,
                "style": style.source,
                "style_group": group,
                "model": scorer.score(image, feats, grams),
                "identity": scorer.score(contents[c].rgb, feats, grams),
            }
    rows = [results[p] for p in pairs]
    return rows, count / max(seconds, 1e-9)


def metrics_from_rows(rows: list[dict], images_per_second: float, gatys: dict) -> dict[str, float]:
    """Means over the dataset's pairs (reference pairs apart), and per group."""
    by_group = {g: [r for r in rows if r["style_group"] == g] for g in (SEEN, UNSEEN, REFERENCE)}
    if not by_group[REFERENCE]:
        del by_group[REFERENCE]
    rows = by_group[SEEN] + by_group[UNSEEN]
    model = [r["model"] for r in rows]
    ident = [r["identity"] for r in rows]
    m = {eval_metric(t): mean(model, t) for t in TERMS}
    m.update({eval_metric(f"identity_{t}"): mean(ident, t) for t in TERMS})
    for group, members in by_group.items():
        m[eval_metric(f"style_loss_{group}")] = mean([r["model"] for r in members], "style_loss")
        m[eval_metric(f"style_ratio_{group}")] = style_ratio(members)
        m[eval_metric(f"content_loss_{group}")] = mean([r["model"] for r in members], "content_loss")
        m[eval_metric(f"identity_style_loss_{group}")] = mean([r["identity"] for r in members], "style_loss")
    m[EVAL_IMAGES_PER_SECOND] = float(images_per_second)
    m[eval_metric("pairs")] = float(len(rows))
    if gatys.get("pairs"):
        for term in TERMS:
            m[eval_metric(f"gatys_{term}")] = gatys[f"gatys_{term}"]
        for key in ("model_style_loss", "identity_style_loss", "seconds_per_image"):
            m[eval_metric(f"gatys_{key}")] = gatys[key]
    return m
