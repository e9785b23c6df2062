"""Tests for imfuse.batch_stylize: the Beam RunInference pipeline on real (downscaled) images."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imfuse.batch_stylize import BatchConfig, resolve_saved_model, validate_content
from imfuse.errors import ConfigError, DataError, ModelError


def _downscaled(src: Path, dst: Path, side: int) -> Path:
    im = Image.open(src).convert("RGB")
    im.thumbnail((side, side))
    im.save(dst, quality=95)
    return dst


def test_export_cli_then_batch_stylize_real_images(shared_data, tmp_path, capsys):
    """`imfuse export` of a .keras file, then `imfuse batch-stylize` on the serving model dir."""
    from imfuse.cli import main
    from imfuse.networks import build_model, save_model

    keras_path = save_model(build_model("tiny", predictor_weights="none"), tmp_path / "m.keras")
    serving = tmp_path / "serving"
    assert main(["export", "--model", keras_path, "--base-path", str(serving), "--name", "sty"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == str(serving / "sty" / "1")
    assert "serving_default(content_image: DT_STRING [None]" in printed and "strength?: DT_FLOAT [None]" in printed

    inputs = tmp_path / "in"
    inputs.mkdir()
    names = ["chicago", "eiffel_tower", "golden_gate_sq"]
    for name in names:
        _downscaled(shared_data / "content" / f"{name}.jpg", inputs / f"{name}.jpg", 64)
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, 20:, 3] = 255  # left half transparent: the output must keep this alpha
    Image.fromarray(rgba, "RGBA").save(inputs / "cutout.png")
    style = _downscaled(shared_data / "styles" / "starry_night.jpg", tmp_path / "style.jpg", 64)
    out = tmp_path / "out"

    code = main(
        ["batch-stylize", "--model", str(serving / "sty"), "--input", str(inputs / "*"), "--style", str(style),
         "--output", str(out), "--max-side", "48", "--strength", "0.8", "--no-progress"]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["matched"] == 5 and summary["written"] == 4 and summary["quarantined"] == 1
    assert json.loads(capsys.readouterr().out)["written"] == 4
    for name in names:
        src = Image.open(inputs / f"{name}.jpg")
        got = Image.open(out / f"{name}.png")
        scale = min(1.0, 48 / max(src.size))
        assert got.size == (max(16, round(src.width * scale)), max(16, round(src.height * scale)))
        assert got.mode == "RGB" and np.asarray(got).std() > 1.0  # a real picture, not a flat fill
    cut = np.asarray(Image.open(out / "cutout.png"))
    assert cut.shape == (40, 40, 4) and (cut[:, :20, 3] == 0).all() and (cut[:, 20:, 3] == 255).all()
    quarantine = [json.loads(ln) for ln in (out / "quarantine.jsonl").read_text().splitlines()]
    assert len(quarantine) == 1 and quarantine[0]["source"].endswith("broken.jpg") and quarantine[0]["reason"]
    assert not (out / "broken.png").exists()


def test_cli_bad_model_path_one_line_exit_2(tmp_path, capsys, shared_data):
    from imfuse.cli import main

    (tmp_path / "a.jpg").write_bytes((shared_data / "styles" / "black_zigzag.jpg").read_bytes())
    args = ["batch-stylize", "--input", str(tmp_path / "*.jpg"), "--style", str(tmp_path / "a.jpg"),
            "--output", str(tmp_path / "out"), "--no-progress"]
    assert main([*args, "--model", str(tmp_path / "nope.keras")]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "nope.keras" in err[0]
    assert main([*args, "--model", str(tmp_path)]) == 2  # a folder without a SavedModel
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "SavedModel" in err[0]


def test_bad_style_and_empty_glob_are_user_errors(tmp_path, capsys):
    from imfuse.cli import main

    (tmp_path / "style.jpg").write_bytes(b"garbage")
    base = ["batch-stylize", "--model", "m.keras", "--output", str(tmp_path / "o"), "--no-progress"]
    assert main([*base, "--input", str(tmp_path / "*.png"), "--style", str(tmp_path / "style.jpg")]) == 2
    assert "style.jpg" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        BatchConfig(model="m", input_glob="*", style="s", output="o", strength=2.0)


def test_empty_glob_raises_data_error(tmp_path, shared_data):
    from imfuse.batch_stylize import run_batch_stylize

    config = BatchConfig(model="m.keras", input_glob=str(tmp_path / "*.jpg"),
                         style=str(shared_data / "styles" / "black_zigzag.jpg"), output=str(tmp_path / "o"))
    with pytest.raises(DataError, match="no files match"):
        run_batch_stylize(config)


def test_resolve_saved_model_picks_highest_version(tmp_path):
    for v in ("1", "10", "2"):
        (tmp_path / "m" / v).mkdir(parents=True)
        (tmp_path / "m" / v / "saved_model.pb").write_bytes(b"x")
    (tmp_path / "m" / "11").mkdir()  # incomplete: no saved_model.pb yet
    assert resolve_saved_model(str(tmp_path / "m"), str(tmp_path)) == str(tmp_path / "m" / "10")
    assert resolve_saved_model(str(tmp_path / "m" / "2"), str(tmp_path)) == str(tmp_path / "m" / "2")
    with pytest.raises(ModelError, match="not found"):
        resolve_saved_model(str(tmp_path / "missing"), str(tmp_path))


def test_keras_model_is_exported_first(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("imfuse.networks.load_model", lambda p: calls.append(("load", str(p))) or "MODEL")

    def fake_export(model, base, name):
        calls.append(("export", model, base, name))
        return Path(base) / name / "1"

    monkeypatch.setattr("imfuse.export.export_saved_model", fake_export)
    got = resolve_saved_model(str(tmp_path / "m.keras"), str(tmp_path / "scratch"))
    assert got == str(tmp_path / "scratch" / "batch" / "1")
    assert calls == [("load", str(tmp_path / "m.keras")), ("export", "MODEL", str(tmp_path / "scratch"), "batch")]


def test_validate_content_quarantines_and_downscales(tmp_path):
    from conftest import make_bad_images

    for name, data in make_bad_images().items():
        verdict = validate_content((name, data), None)
        assert verdict[0] == "bad" and name in verdict[2]
    big = Image.new("RGB", (200, 100), (10, 20, 30))
    import io

    buf = io.BytesIO()
    big.save(buf, format="JPEG")
    kind, _, png, alpha = validate_content(("big.jpg", buf.getvalue()), 50)
    assert kind == "ok" and alpha is None and Image.open(io.BytesIO(png)).size == (50, 25)


def test_load_content_reads_the_matched_file_and_quarantines_an_unreadable_one(tmp_path):
    from imfuse.batch_stylize import load_content

    path = tmp_path / "a.png"
    Image.fromarray(np.full((20, 30, 3), 120, np.uint8)).save(path)
    kind, got, png, alpha = load_content(str(path), None)
    assert (kind, got, alpha) == ("ok", str(path), None) and Image.open(io.BytesIO(png)).size == (30, 20)
    gone = str(tmp_path / "deleted-after-matching.jpg")
    verdict = load_content(gone, None)
    assert verdict[:2] == ("bad", gone) and verdict[2]
