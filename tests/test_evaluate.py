"""`imfuse evaluate` on a tiny prepared dataset of real images, against a real MLflow server."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imfuse.cli import main
from imfuse.tracking import GATE_METRIC
from imfuse.training.scoring import select_pairs

try:
    from tests.mlflow_server import mlflow_server, register_file  # noqa: F401 - pytest fixture
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from mlflow_server import mlflow_server, register_file  # noqa: F401

SIZE = 48
SETS = {
    ("content", "eval"): ["content/chicago.jpg", "content/stata.jpg"],
    ("style", "train"): ["styles/starry_night.jpg", "styles/the_scream.jpg"],
    ("style", "unseen"): ["styles/shipwreck.jpg", "styles/frida_kahlo.jpg"],
}


def _png(path: Path) -> bytes:
    im = Image.open(path).convert("RGB")
    im.thumbnail((64, 64))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def _square(png: bytes) -> np.ndarray:
    """What evaluation should score: centre square, resized to SIZE (independent of evaluate.py)."""
    from imfuse.images import resize_to

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32) / 255.0
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return resize_to(rgb[top : top + side, left : left + side], (SIZE, SIZE))


def _write_manifest(data: Path, shards: dict) -> None:
    """A manifest the readers accept (format, shards, verified hash), as `imfuse data prepare` writes."""
    from imfuse.data.manifest import FORMAT, dataset_hash

    manifest = {"format": FORMAT, "counts": {}, "shards": shards}
    manifest["dataset_hash"] = dataset_hash(manifest)
    (data / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def setup(tmp_path_factory, shared_data, mlflow_server):
    """Prepared-dataset layout (CONTRACTS features), an untrained reduced model in a tracked run."""
    from imfuse.data.examples import encode_example, write_tfrecords
    from imfuse.networks import build_model, save_model
    from imfuse.tracking.runs import TrainingRun

    root = tmp_path_factory.mktemp("evaluate")
    data = root / "data"
    pngs = {}
    shards: dict = {}
    for (kind, split), names in SETS.items():
        folder = data / kind / split
        folder.mkdir(parents=True)
        records = []
        for name in names:
            png = pngs[str(shared_data / name)] = _png(shared_data / name)
            records.append(encode_example({
                "image": png, "height": 1, "width": 1, "source": str(shared_data / name),
                "sha256": hashlib.sha256(png).hexdigest(), "split": split, "kind": kind,
            }))
        with open(folder / "part-00000-of-00001.tfrecord", "wb") as fh:
            write_tfrecords(fh, records)
        rel = f"{kind}/{split}/part-00000-of-00001.tfrecord"
        shards.setdefault(kind, {})[split] = [{"path": rel, "examples": len(records)}]
    _write_manifest(data, shards)

    run_dir = root / "run"
    model_path = Path(save_model(build_model("reduced", predictor_weights="none"), run_dir / "model.keras"))
    with open(run_dir / "history.jsonl", "w") as fh:
        for step in (5, 10, 15):
            metrics = {"train/loss": 9.0 / step, "train/content_loss": 1.0, "train/style_loss": 6.0 / step, "train/tv_loss": 0.1}
            fh.write(json.dumps({"step": step, "metrics": metrics}) + "\n")
    with TrainingRun(mlflow_server, run_dir, "reduced", {"data_dir": str(data), "loss_network": "vgg16-hed"}) as run:
        version = register_file(run, model_path, name="eval-reduced")
    return {"data": data, "run_dir": run_dir, "model": model_path, "pngs": pngs, "run_id": run.run_id, "version": version}


def _evaluate(setup, url, *extra) -> int:
    return main([
        "evaluate", "--model", str(setup["model"]), "--data", str(setup["data"]), "--mlflow-uri", url,
        "--image-size", str(SIZE), "--registered-model", "eval-reduced", "--no-progress", *extra,
    ])


def test_select_pairs_balances_seen_and_unseen():
    pairs = select_pairs(3, 2, 4, None)
    assert len(pairs) == 3 * 2 + 3 * 4 and len(set(pairs)) == len(pairs)
    capped = select_pairs(3, 2, 4, 5)
    assert [g for _, g, _ in capped].count("unseen") == 3 and len(capped) == 5
    assert {c for c, _, _ in capped} == {0, 1, 2}  # a prefix already covers every content


def test_evaluate_report_matches_recomputation_and_is_logged(setup, mlflow_server, capsys):
    import keras
    import tensorflow as tf
    from mlflow import MlflowClient

    from imfuse.losses import LossWeights, perceptual_losses, style_grams
    from imfuse.lossnet import build_loss_network

    rc = _evaluate(setup, mlflow_server, "--gatys-subset", "1", "--gatys-steps", "3", "--fail-if-not-blessed")
    out = capsys.readouterr().out
    eval_dir = setup["run_dir"] / "eval"
    report = json.loads((eval_dir / "eval_report.json").read_text())
    blessing = json.loads((eval_dir / "blessing.json").read_text())
    assert rc == (0 if blessing["blessed"] else 3)
    assert ("PASS" if blessing["blessed"] else "FAIL") in out and blessing["reason"] in out
    assert blessing["champion"] is None and blessing["metric"] == GATE_METRIC == "eval/style_ratio_unseen"
    assert report["blessing"] == blessing and report["run_id"] == setup["run_id"]

    # every pair recomputed directly with imfuse.losses on the same images
    pairs = [p for p in report["pairs"] if p["style_group"] != "reference"]
    reference = [p for p in report["pairs"] if p["style_group"] == "reference"]
    assert len(pairs) == 2 * 2 + 2 * 2
    # one pair per real reference style, outside the dataset's means, in a ratio of its own
    assert sorted(Path(p["style"]).name for p in reference) == sorted(
        ["brick.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "retina.jpg"])
    ref_ratios = [p["model"]["style_loss"] / p["identity"]["style_loss"] for p in reference]
    assert report["metrics"]["eval/style_ratio_reference"] == pytest.approx(np.exp(np.mean(np.log(ref_ratios))), rel=1e-6)
    model = keras.saving.load_model(setup["model"], compile=False)
    lossnet = build_loss_network("vgg16-hed")
    weights = LossWeights()
    for pair in pairs:
        content = _square(setup["pngs"][pair["content"]])
        style = _square(setup["pngs"][pair["style"]])
        stylized = np.clip(model({"content": content[None], "style": style[None]}, training=False).numpy(), 0, 1)
        feats = lossnet(tf.constant(content[None]))
        target = {k: feats[k] for k in lossnet.content_layers}
        grams = style_grams(lossnet, tf.constant(style[None]))
        for who, image in (("model", stylized), ("identity", content[None])):
            direct = perceptual_losses(lossnet, tf.constant(image), target, grams, weights)
            for term in ("loss", "content_loss", "style_loss", "tv_loss"):
                assert pair[who][term] == pytest.approx(float(direct[term]), rel=2e-3, abs=1e-6), (who, term)
    m = report["metrics"]
    unseen = [p["model"]["style_loss"] for p in pairs if p["style_group"] == "unseen"]
    assert m["eval/style_loss_unseen"] == pytest.approx(np.mean(unseen))
    unseen_ratios = [p["model"]["style_loss"] / p["identity"]["style_loss"] for p in pairs if p["style_group"] == "unseen"]
    assert m["eval/style_ratio_unseen"] == pytest.approx(np.exp(np.mean(np.log(unseen_ratios))), rel=1e-6)
    assert m["eval/content_loss"] == pytest.approx(np.mean([p["model"]["content_loss"] for p in pairs]))
    assert m["eval/identity_style_loss"] == pytest.approx(np.mean([p["identity"]["style_loss"] for p in pairs]))
    assert m["eval/identity_content_loss"] == 0.0
    assert m["eval/images_per_second"] > 0
    gatys = report["baselines"]["gatys"]
    assert len(gatys["pairs"]) == 1 and gatys["pairs"][0]["style_group"] == "unseen"
    assert m["eval/gatys_style_loss"] < gatys["pairs"][0]["identity"]["style_loss"]  # 3 Adam steps already help

    grid = Image.open(eval_dir / "sample_grid.png")
    assert grid.size == (4 + 52 * 5, 4 + 52 * 3)  # header + 2 contents, first column + 4 styles
    assert sorted(p.name for p in (eval_dir / "curves").iterdir()) == [
        "curve_train_content_loss.png", "curve_train_loss.png", "curve_train_style_loss.png", "curve_train_tv_loss.png"
    ]

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    run = client.get_run(setup["run_id"])
    for name in ("eval/content_loss", "eval/style_loss_seen", "eval/style_loss_unseen", "eval/style_ratio_unseen",
                 "eval/identity_style_loss", "eval/images_per_second", "eval/gatys_style_loss"):
        assert run.data.metrics[name] == pytest.approx(m[name])
    assert client.get_metric_history(setup["run_id"], "eval/content_loss")[0].step == 15
    assert run.data.tags["imfuse.blessed"] == str(blessing["blessed"]).lower()
    logged = {a.path for a in client.list_artifacts(setup["run_id"], "eval")}
    assert {"eval/eval_report.json", "eval/blessing.json", "eval/sample_grid.png", "eval/curves"} <= logged
    assert [a.path for a in client.list_artifacts(setup["run_id"], "dataset")] == ["dataset/manifest.json"]


def test_evaluate_blessing_fails_against_a_better_champion(setup, mlflow_server, tmp_path, capsys):
    """The champion (here the shipped base model) is scored on the candidate's own pairs, at
    its size, in this evaluation (TFX's baseline model), not read from its old run."""
    from imfuse.base_model import base_model_path
    from imfuse.tracking.registry import promote
    from imfuse.tracking.runs import TrainingRun, log_to_run

    with TrainingRun(mlflow_server, tmp_path / "champ", "reduced", {}) as run:
        version = register_file(run, base_model_path(), name="eval-reduced")
    # a value logged under other settings must not be what the gate compares with
    log_to_run(mlflow_server, run.run_id, metrics={GATE_METRIC: 1e30})
    promote("eval-reduced", version, mlflow_server)

    out_dir = tmp_path / "eval"
    rc = _evaluate(setup, mlflow_server, "--gatys-subset", "0", "--max-pairs", "2", "--out", str(out_dir),
                   "--fail-if-not-blessed")
    blessing = json.loads((out_dir / "blessing.json").read_text())
    report = json.loads((out_dir / "eval_report.json").read_text())
    m = report["metrics"]
    assert rc == 3 and blessing["blessed"] is False
    assert blessing["champion"] == pytest.approx(m["eval/baseline_style_ratio_unseen"])
    assert blessing["champion"] < m[GATE_METRIC]
    assert blessing["champion_version"] == version and report["baseline_model"]["label"] == f"champion v{version}"
    assert f"> champion v{version}" in blessing["reason"]
    assert "FAIL" in capsys.readouterr().out
    # the grid shows what the gate compared: each content stylised by the candidate, then by the champion
    grid = np.asarray(Image.open(out_dir / "sample_grid.png").convert("RGB"), dtype=np.int16)
    tile, step = SIZE, SIZE + 4
    assert grid.shape[:2] == (4 + step * 5, 4 + step * 5)  # header + 2 contents x 2 models; first column + 4 styles
    cell = lambda r, c: grid[4 + r * step + 14: 4 + r * step + tile, 4 + c * step: 4 + c * step + tile]  # below labels
    assert np.array_equal(cell(1, 0), cell(2, 0))  # the same photo on both rows
    assert np.abs(cell(1, 1) - cell(2, 1)).mean() > 1  # two models, two pictures
    assert "on real reference styles" in blessing["reason"]
    assert m["eval/baseline_style_ratio_reference"] == pytest.approx(blessing["reference_champion"])
    # without --fail-if-not-blessed a refusal exits 0; without the reference styles they are
    # neither scored nor gated
    rc = _evaluate(setup, mlflow_server, "--gatys-subset", "0", "--max-pairs", "2", "--out", str(out_dir),
                   "--no-reference-styles")
    report = json.loads((out_dir / "eval_report.json").read_text())
    assert rc == 0 and report["blessing"]["blessed"] is False
    assert "eval/style_ratio_reference" not in report["metrics"] and "reference" not in report["blessing"]["reason"]
    assert all(p["style_group"] != "reference" for p in report["pairs"])


def test_a_fine_tune_worse_than_its_init_model_is_not_blessed(setup, tmp_path):
    """Without a champion the baseline is the model training started from (init_from)."""
    from imfuse.base_model import base_model_path
    from imfuse.networks import build_model, save_model
    from imfuse.training.evaluate import EvalConfig, evaluate

    run_dir = tmp_path / "run"
    model = Path(save_model(build_model("reduced"), run_dir / "model.keras"))
    (run_dir / "train_config.json").write_text(json.dumps({"config": {"init_from": str(base_model_path())}}))
    cfg = EvalConfig(model_path=str(model), data_dir=str(setup["data"]), image_size=SIZE, max_pairs=2,
                     gatys_subset=0, log_mlflow=False, progress=False)
    result = evaluate(cfg)
    assert result.blessing.blessed is False and "init model reduced.keras" in result.blessing.reason
    assert result.report["metrics"]["eval/baseline_style_ratio_unseen"] == pytest.approx(result.blessing.champion)


def test_evaluate_bad_input_is_one_line_exit_2(setup, tmp_path, capsys):
    rc = main(["evaluate", "--model", str(setup["model"]), "--data", str(tmp_path / "missing"), "--no-mlflow"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "dataset directory not found" in err and "\n" not in err
    partial = tmp_path / "partial"
    (partial / "content" / "eval").mkdir(parents=True)
    rc = main(["evaluate", "--model", str(setup["model"]), "--data", str(partial), "--no-mlflow", "--image-size", "32"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "no manifest" in err and "\n" not in err
    # a real manifest whose content/eval split is empty
    styles = json.loads((setup["data"] / "manifest.json").read_text())["shards"]["style"]
    _write_manifest(partial, {"style": styles})
    shutil.copytree(setup["data"] / "style", partial / "style")
    rc = main(["evaluate", "--model", str(setup["model"]), "--data", str(partial), "--no-mlflow", "--image-size", "32"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "content/eval: no images" in err and "\n" not in err
    rc = main(["evaluate", "--model", str(setup["model"]), "--data", str(setup["data"]), "--image-size", "8"])
    assert rc == 2 and "--image-size" in capsys.readouterr().err
