"""imfuse.tflite_export: a model as predict.tflite + transfer.tflite, and `imfuse models export-tflite`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imfuse.cli import main
from imfuse.errors import ConfigError
from imfuse.tflite_export import (
    CHECK_PICTURE,
    PREDICT_FILE,
    RECORD_FILE,
    TRANSFER_FILE,
    check_options,
    check_pair,
)
from imfuse.tflite_stylizer import TFLiteStylizer

try:
    from tests.mlflow_server import mlflow_server, register_file  # noqa: F401 - pytest fixture
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from mlflow_server import mlflow_server, register_file  # noqa: F401

SIZE = (48, 64)  # what conftest.tflite_exports asks for (height, width)


def test_float32_export_computes_what_the_keras_model_computes(tflite_model, tflite_exports):
    result, folder = tflite_exports["none"]
    assert {p.name for p in folder.iterdir()} == {PREDICT_FILE, TRANSFER_FILE, RECORD_FILE, CHECK_PICTURE}
    assert result.content_size == SIZE and result.style_size == 64 and result.pixel_error_max < 0.5
    # on a pair other than the export's own check
    rng = np.random.default_rng(1)
    content, style = rng.random((1, *SIZE, 3), np.float32), rng.random((1, 64, 64, 3), np.float32)
    lite = TFLiteStylizer(folder)
    embedding = lite.embed(style)
    np.testing.assert_allclose(embedding, tflite_model.embed_preprocessed(style).numpy(), atol=1e-4)
    out = lite.stylize(content, embedding)
    assert out.shape == (1, *SIZE, 3)
    # padding built from ops XNNPACK takes: a REVERSE_V2 or MIRROR_PAD split the graph and ran single-threaded
    ops = {op["op_name"] for op in lite._transfer._get_ops_details()}
    assert "CONV_2D" in ops and not ops & {"REVERSE_V2", "MIRROR_PAD"}
    np.testing.assert_allclose(out, tflite_model.stylize_with_embedding(content, embedding).numpy(), atol=1e-4)


def test_int8_export_is_smaller_and_records_its_distance_from_float32(tflite_exports):
    (f32, _), (q8, folder) = tflite_exports["none"], tflite_exports["int8"]
    assert q8.bytes[TRANSFER_FILE] < 0.75 * f32.bytes[TRANSFER_FILE]  # tiny: many kernels too small to quantise
    assert q8.bytes[PREDICT_FILE] < 0.4 * f32.bytes[PREDICT_FILE]
    assert 0 < q8.pixel_error_mean < 20 and q8.pixel_error_max >= q8.pixel_error_mean
    record = json.loads((folder / RECORD_FILE).read_text())
    assert record["quantize"] == "int8" and record["pixel_error_mean"] == q8.pixel_error_mean
    assert record["inputs"][TRANSFER_FILE] == ["content", "embedding"] and record["content_size"] == list(SIZE)
    from PIL import Image

    with Image.open(folder / CHECK_PICTURE) as picture:  # content | style | float32 | export
        assert picture.size == (SIZE[1] * 3 + SIZE[0] + 12, SIZE[0])


def test_check_pair_is_a_generated_picture_not_noise():
    content, style = check_pair((48, 64), 32)
    assert content.shape == (1, 48, 64, 3) and style.shape == (1, 32, 32, 3)
    assert 0 <= content.min() and content.max() <= 1
    # a landscape: neighbouring pixels mostly alike (noise would differ by ~0.33 on average)
    assert np.abs(np.diff(content[0], axis=1)).mean() < 0.05
    np.testing.assert_array_equal(content, check_pair((48, 64), 32)[0])  # deterministic


def test_float16_export_is_half_the_size_and_closer_than_int8(tflite_exports):
    (f32, _), (q8, _), (f16, folder) = (tflite_exports[q] for q in ("none", "int8", "float16"))
    assert 0.4 * f32.bytes[PREDICT_FILE] < f16.bytes[PREDICT_FILE] < 0.6 * f32.bytes[PREDICT_FILE]
    assert f16.bytes[TRANSFER_FILE] < 0.8 * f32.bytes[TRANSFER_FILE]  # tiny's graph is a large part of that file
    assert 0 < f16.pixel_error_mean < min(1.0, q8.pixel_error_mean)
    assert "float16 weights" in TFLiteStylizer(folder).describe()


@pytest.mark.parametrize("size, quantize, message", [
    ((48, 62), "none", "multiples of 4"), ((12, 12), "none", "at least 16"), ((48, 64), "fp16", "unknown quantisation"),
])
def test_bad_options_are_refused(size, quantize, message):
    with pytest.raises(ConfigError, match=message):
        check_options(size, quantize)


def test_cli_exports_and_rejects_bad_sizes_before_loading(tflite_model, tmp_path, capsys):
    from imfuse.networks import save_model

    path = save_model(tflite_model, tmp_path / "m.keras")
    assert main(["models", "export-tflite", "--model", str(path), "--out", str(tmp_path / "out"),
                 "--content-size", "48x64", "--quantize", "int8"]) == 0
    out = capsys.readouterr().out
    assert "tiny variant, content 64x48 px (width x height)" in out and "int8 weights" in out and "check.png" in out
    assert json.loads((tmp_path / "out" / RECORD_FILE).read_text())["source"] == str(path)
    # the size is checked before the (missing) model is read
    assert main(["models", "export-tflite", "--model", "missing.keras", "--out", str(tmp_path / "x"),
                 "--content-size", "50"]) == 2
    assert "multiples of 4" in capsys.readouterr().err
    assert main(["models", "export-tflite", "--out", str(tmp_path / "x"), "--content-size", "big"]) == 2
    assert "--content-size must be N or HxW" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_exports_a_registered_model(tflite_model, tmp_path, capsys, mlflow_server):  # noqa: F811
    """What an app team runs to get the champion for its client: --from-registry NAME@ALIAS."""
    from imfuse.networks import save_model
    from imfuse.tracking.runs import TrainingRun

    keras_file = save_model(tflite_model, tmp_path / "model.keras")
    with TrainingRun(mlflow_server, tmp_path / "run", "tiny", {}) as run:
        version = register_file(run, keras_file, name="tfl-registry")
    out = tmp_path / "app"
    assert main(["models", "export-tflite", "--from-registry", f"tfl-registry@{version}", "--mlflow-uri",
                 mlflow_server, "--out", str(out), "--content-size", "48x64"]) == 0
    record = json.loads((out / RECORD_FILE).read_text())
    assert record["source"] == f"tfl-registry version {version} (tfl-registry@{version}) in the MLflow registry"
    assert record["variant"] == "tiny" and record["pixel_error_max"] < 0.5
    capsys.readouterr()
    assert main(["models", "export-tflite", "--from-registry", "no-such-model@champion", "--mlflow-uri",
                 mlflow_server, "--out", str(tmp_path / "x")]) != 0
    err = capsys.readouterr().err
    assert "no-such-model" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
