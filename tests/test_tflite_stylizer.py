"""imfuse.tflite_stylizer: an export runs like the Keras model, and `imfuse stylize --model EXPORT`."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from imfuse.cli import main
from imfuse.cli.stylize import load_model_arg
from imfuse.errors import ConfigError
from imfuse.tflite_stylizer import PREDICT_FILE, RECORD_FILE, TFLiteStylizer, is_tflite_export


def _pictures(tmp_path, content_hw):
    """A content photo-like gradient and a striped style as PNG files."""
    h, w = content_hw
    y, x = np.mgrid[0:h, 0:w]
    content = np.stack([x / w, y / h, 0.5 + 0.4 * np.sin(x / 5.0)], axis=-1)
    stripes = (np.indices((90, 70)).sum(axis=0) // 6 % 2).astype(np.float32)
    style = np.stack([stripes, 1 - stripes, np.full_like(stripes, 0.3)], axis=-1)
    paths = []
    for name, arr in (("content.png", content), ("style.png", style)):
        Image.fromarray(np.uint8(np.clip(arr, 0, 1) * 255)).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    return paths


def test_stylizer_embeds_and_stylises_any_size_as_the_keras_model_does(tflite_model, tflite_exports):
    _, folder = tflite_exports["none"]
    lite = TFLiteStylizer(folder)
    assert lite.embedding_dim == tflite_model.embedding_dim and lite.content_size == (48, 64)
    rng = np.random.default_rng(3)
    style = rng.random((1, 90, 70, 3), np.float32)  # cropped and resized to 64 px first, as Keras does
    embedding = lite.embed_style(style)
    np.testing.assert_allclose(embedding, tflite_model.embed_style(style).numpy(), atol=1e-4)
    content = rng.random((1, 48, 64, 3), np.float32)
    np.testing.assert_allclose(lite.stylize_with_embedding(content, embedding),
                               np.clip(tflite_model.stylize_with_embedding(content, embedding).numpy(), 0, 1),
                               atol=1e-4)
    # another size is resized to the export's and back
    out = lite.stylize_with_embedding(rng.random((1, 96, 128, 3), np.float32), embedding)
    assert out.shape == (1, 96, 128, 3) and 0 <= out.min() and out.max() <= 1
    assert "tiny variant, float32 weights, content 64x48 px" in lite.describe()


def test_stylize_cli_runs_an_export_with_mask_and_style_mixing(tflite_exports, tmp_path, capsys):
    _, folder = tflite_exports["none"]
    content, style = _pictures(tmp_path, (60, 80))  # the export's aspect ratio, another size
    mask = np.zeros((60, 80), np.uint8)
    mask[:, 40:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    assert main(["stylize", content, "--style", f"{style}:0.7", "--style", f"{content}:0.3", "--method", "model",
                 "--model", str(folder), "--mask", str(tmp_path / "mask.png"), "--strength", "0.8",
                 "-o", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "TFLite export" in captured.err and "float32" in captured.err and "note:" not in captured.err
    result = np.asarray(Image.open(out).convert("RGB"))
    original = np.asarray(Image.open(content).convert("RGB"))
    assert result.shape == original.shape
    np.testing.assert_array_equal(result[:, :40], original[:, :40])  # masked out: the content itself
    assert np.abs(result[:, 40:].astype(int) - original[:, 40:]).mean() > 2  # stylised where the mask is white


def test_stylize_cli_says_when_the_content_is_stretched_to_the_export(tflite_exports, tmp_path, capsys):
    _, folder = tflite_exports["none"]
    content, style = _pictures(tmp_path, (80, 80))
    assert main(["stylize", content, style, "--method", "model", "--model", str(folder),
                 "-o", str(tmp_path / "out.png"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "64x48 px (width x height)" in err and "--content-size 80x80" in err
    assert Image.open(tmp_path / "out.png").size == (80, 80)
    big, _ = _pictures(tmp_path, (144, 192))  # the export's shape, 3x its size
    assert main(["stylize", big, style, "--model", str(folder), "-o", str(tmp_path / "big.png"), "--no-progress"]) == 0
    assert "upscaled 3.0x" in capsys.readouterr().err and Image.open(tmp_path / "big.png").size == (192, 144)


@pytest.mark.parametrize("option", [["--tile", "256"], ["--style-scale", "1"], ["--precision", "float32"]])
def test_stylize_cli_refuses_options_an_export_cannot_honour(tflite_exports, tmp_path, capsys, option):
    _, folder = tflite_exports["none"]
    content, style = _pictures(tmp_path, (48, 64))
    assert main(["stylize", content, style, "--method", "model", "--model", str(folder),
                 "-o", str(tmp_path / "out.png"), *option]) == 2
    err = capsys.readouterr().err
    assert f"{option[0]} needs a .keras model" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.png").exists()


def test_video_refuses_an_export_and_broken_exports_get_one_line_errors(tflite_exports, tmp_path):
    _, folder = tflite_exports["none"]
    assert is_tflite_export(folder) and not is_tflite_export(tmp_path) and not is_tflite_export(None)
    with pytest.raises(ConfigError, match="only `imfuse stylize` runs"):
        load_model_arg(argparse.Namespace(model=str(folder), precision="auto"))
    with pytest.raises(ConfigError, match="not a TFLite export"):
        TFLiteStylizer(tmp_path)
    (tmp_path / RECORD_FILE).write_text(json.dumps({"content_size": [48, 64]}))
    with pytest.raises(ConfigError, match="not a valid export record"):
        TFLiteStylizer(tmp_path)
    (tmp_path / RECORD_FILE).write_text((folder / RECORD_FILE).read_text())
    with pytest.raises(ConfigError, match=f"incomplete TFLite export: {PREDICT_FILE} is missing"):
        TFLiteStylizer(tmp_path)
    (tmp_path / PREDICT_FILE).write_bytes(b"not a flatbuffer")
    with pytest.raises(ConfigError, match="not a readable TFLite file"):
        TFLiteStylizer(tmp_path)
