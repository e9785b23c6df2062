"""imfuse.training.style_targets: every style of a dataset fitted once, resumably, and a
predictor head retargeted onto the fitted conditioning (distill-predictor --fitted)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imfuse.cli import main
from imfuse.style_fit import StyleFitConfig

SIZE = 64


@pytest.fixture(scope="module")
def fitted_dir(prepared_dataset, tmp_path_factory):
    from imfuse.training.style_targets import fit_dataset_styles

    out = tmp_path_factory.mktemp("fitted")
    config = StyleFitConfig(steps=2, size=SIZE, precision="float32", batch_size=1)
    # 8 a batch: two batches (each traces its own step function, the slow part at this size)
    counts = fit_dataset_styles(str(prepared_dataset), str(out), "base", ("train", "eval"), config, 8, progress=False)
    assert counts["fitted"] == counts["styles"] > 0 and counts["skipped"] == 0
    return out, config, counts


def test_every_style_gets_one_file_and_a_rerun_fits_nothing(prepared_dataset, fitted_dir):
    from imfuse.training.scoring import read_split
    from imfuse.training.style_targets import fit_dataset_styles, load_style_targets, target_path

    out, config, counts = fitted_dir
    sources = [s.source for split in ("train", "eval") for s in read_split(prepared_dataset, "style", split, SIZE)]
    assert len(list(out.glob("*.json"))) == len(sources) == counts["styles"]
    assert len({target_path(out, s) for s in sources}) == len(sources)
    body = json.loads(target_path(out, sources[0]).read_text())
    assert body["style"] == sources[0] and "base_models" in body["model"] and body["config"]["steps"] == 2
    assert set(load_style_targets(out, sources)) == set(sources)
    again = fit_dataset_styles(str(prepared_dataset), str(out), "base", ("train", "eval"), config, 4, progress=False)
    assert again == {"styles": len(sources), "fitted": 0, "skipped": len(sources)}


def test_head_retargeted_onto_the_fitted_conditioning(prepared_dataset, fitted_dir, tmp_path):
    from imfuse.base_model import resolve_model_path
    from imfuse.networks import load_model
    from imfuse.training.predictor_distill import PredictorDistillConfig, distill_predictor

    out, _, _ = fitted_dir
    cfg = PredictorDistillConfig(data_dir=str(prepared_dataset), out=str(tmp_path / "s.keras"), fitted=str(out),
                                 epochs=100, batch_size=8, learning_rate=3e-4)
    student, metrics = distill_predictor(cfg)
    base = load_model(resolve_model_path("base"))
    # The head starts as the base's own (same geometry), so the first error is the base's.
    assert metrics["predictor/train_relative_error_initial"] == pytest.approx(
        metrics["predictor/teacher_train_relative_error"], rel=1e-3)
    assert metrics["predictor/train_relative_error"] < 0.5 * metrics["predictor/teacher_train_relative_error"]
    assert "predictor/heldout_relative_error" in metrics and "predictor/teacher_heldout_relative_error" in metrics
    for ours, theirs in zip(student.transformer.get_weights(), base.transformer.get_weights()):
        np.testing.assert_array_equal(ours, theirs)


def test_cli_bad_input_is_one_line(capsys, tmp_path, prepared_dataset):
    for argv, text in [
        (["models", "fit-styles", "--data", str(prepared_dataset), "--out", str(tmp_path), "--splits", "test"], "--splits"),
        (["models", "fit-styles", "--data", str(tmp_path / "none"), "--out", str(tmp_path)], "none"),
        (["models", "distill-predictor", "--data", str(prepared_dataset), "--out", str(tmp_path / "s.keras"),
          "--fitted", str(tmp_path / "empty")], "fit-styles"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("imfuse: error:") and text in err and "\n" not in err, err
