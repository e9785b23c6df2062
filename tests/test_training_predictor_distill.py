"""A distilled predictor: same transformer, cheaper style embedding, fitted to the teacher."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imfuse.errors import ConfigError


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory):
    """A tiny-variant model with the 4-block full-size VGG predictor whose head is random but
    spread out, so that different styles get clearly different conditioning."""
    import keras

    from imfuse.networks import build_model, save_model

    keras.utils.set_random_seed(3)
    model = build_model("tiny", "none", predictor_layers=4, predictor_pool=1, style_size=64)
    for layer in (model.predictor.get_layer("stats_hidden"), model.predictor.get_layer("bottleneck")):
        kernel, bias = layer.get_weights()
        layer.set_weights([np.random.default_rng(1).normal(0, 0.05, kernel.shape).astype("float32"), bias])
    path = tmp_path_factory.mktemp("teacher") / "teacher.keras"
    save_model(model, path)
    return path


def test_student_keeps_the_transformer_and_fits_the_teachers_conditioning(prepared_dataset, teacher_path, tmp_path):
    from imfuse.networks import load_model
    from imfuse.training.predictor_distill import PredictorDistillConfig, distill_predictor, save_distilled

    cfg = PredictorDistillConfig(data_dir=str(prepared_dataset), out=str(tmp_path / "student.keras"),
                                 init_from=str(teacher_path), crops=256, epochs=60, batch_size=16)
    student, metrics = distill_predictor(cfg)
    teacher = load_model(teacher_path)
    assert (student.variant.predictor_layers, student.variant.predictor_pool) == (3, 2)
    for ours, theirs in zip(student.transformer.get_weights() + student.style_heads.get_weights(),
                            teacher.transformer.get_weights() + teacher.style_heads.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    # Fitting moved the head from "unrelated" to close to the teacher, on styles it fitted
    # and on the eval split's, which it never saw.
    assert metrics["predictor/train_relative_error_initial"] > 0.9
    assert metrics["predictor/train_relative_error"] < 0.3
    assert metrics["predictor/heldout_relative_error"] < 1.0
    assert metrics["predictor/heldout_styles"] >= 1

    path = save_distilled(student, cfg, metrics)
    record = json.loads(path.with_suffix(".distill.json").read_text())
    assert record["metrics"] == metrics and record["config"]["predictor_pool"] == 2
    reloaded = load_model(path)
    style = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
    np.testing.assert_allclose(reloaded.embed_style(style).numpy(), student.embed_style(style).numpy(), atol=1e-5)


def test_only_a_vgg_predictor_is_distilled(prepared_dataset, tmp_path):
    from imfuse.networks import build_model, save_model
    from imfuse.training.predictor_distill import PredictorDistillConfig, distill_predictor

    path = tmp_path / "small.keras"
    save_model(build_model("tiny", "none", predictor="small"), path)
    cfg = PredictorDistillConfig(data_dir=str(prepared_dataset), out=str(tmp_path / "s.keras"), init_from=str(path))
    with pytest.raises(ConfigError, match="vgg16_hed"):
        distill_predictor(cfg)


@pytest.mark.parametrize("field,value", [("crops", 0), ("epochs", 0), ("learning_rate", 0.0), ("out", "x.h5")])
def test_bad_settings_are_config_errors(field, value):
    from imfuse.training.predictor_distill import PredictorDistillConfig

    with pytest.raises(ConfigError):
        PredictorDistillConfig(**{"data_dir": "d", "out": "m.keras", field: value})


def test_cli_bad_input_is_one_line(capsys, tmp_path):
    from imfuse.cli import main

    code = main(["models", "distill-predictor", "--data", str(tmp_path), "--out", str(tmp_path / "m.keras"),
                 "--predictor-layers", "7"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("imfuse: error:") and "predictor_layers" in err and "\n" not in err
