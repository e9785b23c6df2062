"""The evaluation's baselines: Gatys optimisation on a few pairs, and the model a candidate
must not be worse than (the registry's champion, else the model it was fine-tuned from)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from tqdm.auto import tqdm

from imfuse.images import resize_to
from imfuse.training.scoring import SEEN, TERMS, UNSEEN, mean, metrics_from_rows, score_model


def gatys_baseline(cfg, lossnet, scorer, contents, styles, pairs, rows, progress) -> dict:
    """Gatys optimisation on the first `gatys_subset` pairs (unseen and seen interleaved)."""
    from imfuse.gatys import OptimizeConfig, optimize_image

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


def baseline_model(champion_info, reg_name: str, uri: str | None, run_dir: Path) -> tuple[str, str] | None:
    """(label, .keras path) of the model the candidate must not be worse than, or None.

    The registry's champion when there is one (TFX Evaluator's baseline model), else the
    model this run was warm-started from (train_config.json `init_from`): a fine-tune is
    never blessed for being worse than where it began.
    """
    if champion_info is not None:
        from imfuse.errors import ModelError
        from imfuse.training.warm_start import registered_keras

        with contextlib.suppress(ModelError):  # a champion without a .keras model: the init model
            return f"champion v{champion_info.version}", str(registered_keras(reg_name, str(champion_info.version), uri))
    from imfuse.training.checkpoints import read_run_config

    init = ((read_run_config(str(run_dir)) or {}).get("config") or {}).get("init_from")
    if init and Path(init).is_file():
        return f"init model {Path(init).name}", init
    return None


def score_baseline(baseline, scorer, contents, styles, pairs, cfg) -> dict[str, float]:
    """The baseline model's gate metrics on exactly the candidate's pairs and size."""
    from imfuse.networks import load_model

    rows, _ = score_model(load_model(baseline[1]), scorer, contents, styles, pairs, cfg.progress)
    skip = ("eval/identity", "eval/images_per_second", "eval/pairs")  # the candidate's own
    return {k: v for k, v in metrics_from_rows(rows, 0.0, {}).items() if not k.startswith(skip)}
