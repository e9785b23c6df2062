"""The evaluation's baselines: Gatys optimisation on a few pairs, and the model a candidate
must not be worse than (the registry's champion, else the model it was fine-tuned from)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from imfuse.errors import ModelError
from imfuse.gatys import OptimizeConfig, optimize_image
from imfuse.images import resize_to
from imfuse.tracking import EVAL_IMAGES_PER_SECOND, eval_metric
from imfuse.tracking.registry import champion_metric
from imfuse.training.checkpoints import read_run_config
from imfuse.training.scoring import SEEN, TERMS, UNSEEN, mean, metrics_from_rows, score_model
from imfuse.training.warm_start import registered_keras


def gatys_baseline(cfg, lossnet, scorer, contents, styles, pairs, rows, progress) -> dict:
    """Gatys optimisation on the first `gatys_subset` pairs (unseen and seen interleaved)."""
    unseen = [i for i, p in enumerate(pairs) if p[1] == UNSEEN]
    seen = [i for i, p in enumerate(pairs) if p[1] == SEEN]
    order = [i for pair in zip(unseen, seen) for i in pair] + unseen[len(seen):] + seen[len(unseen):]
    chosen = order[: cfg.gatys_subset]
    # No XLA: each pair compiles afresh, and at eval sizes the compile (~5 s) outweighs the
    # speed-up for tens of steps (64 px, 50 steps: 2.3 s without, 11 s with, 2-core CPU).
    # Adam, as every recorded run's baseline was made (the CLI's default is L-BFGS).
    opt = OptimizeConfig(steps=cfg.gatys_steps, size=cfg.image_size, weights=cfg.weights, jit_compile=False,
                         optimizer="adam")
    entries, seconds = [], 0.0
    for i in tqdm(chosen, desc="gatys baseline", unit="pair", disable=not progress):
        c, group, s = pairs[i]
        style = styles[group][s]
        start = time.perf_counter()
        image = optimize_image(contents[c].rgb, [(style.rgb, 1.0)], opt, lossnet=lossnet, progress=False)
        seconds += time.perf_counter() - start
        if image.shape[:2] != (cfg.image_size, cfg.image_size):
            image = resize_to(image, (cfg.image_size, cfg.image_size))
        scores = scorer.score(image, scorer.content_targets(c, contents[c].rgb), scorer.style_targets((group, s), style.rgb))
        entries.append({**{k: rows[i][k] for k in ("content", "style", "style_group")},
                        "gatys": scores, "model": rows[i]["model"], "identity": rows[i]["identity"]})
    if not entries:
        return {"pairs": [], "steps": cfg.gatys_steps}
    summary = {f"{who}_{term}": mean([e[who] for e in entries], term) for who in ("gatys", "model", "identity") for term in TERMS}
    return {"pairs": entries, "steps": cfg.gatys_steps, "seconds_per_image": seconds / len(entries), **summary}


@dataclass
class BaselineModel:
    label: str  # "champion v3", "init model x.keras"
    path: str  # its .keras file
    champion_version: int | None = None  # the registry version, when it is the champion


def baseline_model(reg_name: str, gate_metric: str, uri: str | None, run_dir: Path) -> BaselineModel | None:
    """The model the candidate must not be worse than, or None.

    The registry's champion when there is one (TFX Evaluator's baseline model; looked up
    only with a tracking `uri`), else the model this run was warm-started from
    (train_config.json `init_from`): a fine-tune is never blessed for being worse than where it began.
    """
    if uri is not None:
        champion, _ = champion_metric(reg_name, gate_metric, uri)
        if champion is not None:
            with contextlib.suppress(ModelError):  # a champion without a .keras model: the init model
                keras = registered_keras(reg_name, str(champion.version), uri)
                return BaselineModel(f"champion v{champion.version}", str(keras), champion.version)
    init = ((read_run_config(str(run_dir)) or {}).get("config") or {}).get("init_from")
    if init and Path(init).is_file():
        return BaselineModel(f"init model {Path(init).name}", init)
    return None


def score_baseline(model, scorer, contents, styles, pairs, cfg) -> dict[str, float]:
    """The baseline model's gate metrics on exactly the candidate's pairs and size."""
    rows, _ = score_model(model, scorer, contents, styles, pairs, cfg.progress)
    skip = (eval_metric("identity"), EVAL_IMAGES_PER_SECOND, eval_metric("pairs"))  # the candidate's own
    return {k: v for k, v in metrics_from_rows(rows, 0.0, {}).items() if not k.startswith(skip)}
