"""`imfuse stylize` end to end through the CLI entry point (in-process)."""

import re

import numpy as np
import pytest
from PIL import Image

from imfuse.cli import main
from imfuse.cli.stylize import parse_style_spec
from conftest import runs_bf16


def test_parse_style_spec():
    assert parse_style_spec("a.jpg:0.7") == ("a.jpg", 0.7)
    assert parse_style_spec("a.jpg") == ("a.jpg", 1.0)
    assert parse_style_spec("http://host/x.jpg") == ("http://host/x.jpg", 1.0)
    assert parse_style_spec("http://host:8000/x.jpg:0.5") == ("http://host:8000/x.jpg", 0.5)


def test_stylize_optimize_writes_png(tmp_path, shared_data, capsys):
    out = tmp_path / "out.png"
    code = main([
        "stylize", str(shared_data / "content" / "golden_gate_sq.jpg"),
        "--style", str(shared_data / "styles" / "starry_night.jpg") + ":0.7",
        "--style", str(shared_data / "styles" / "bricks_sq.jpg") + ":0.3",
        "-o", str(out), "--steps", "3", "--size", "48", "--no-progress", "--preserve-color",
    ])
    assert code == 0
    img = np.asarray(Image.open(out))
    assert img.shape == (48, 48, 3)
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--method", "model", "--model", "missing.keras"], "model file not found"),
        (["--model", "missing.keras"], "model file not found"),  # --model alone means --method model
        (["--method", "optimize", "--model", "m.keras"], "--model needs --method model"),
        (["--steps", "0"], "steps"),
    ],
)
def test_stylize_bad_options_exit_2(tmp_path, shared_data, capsys, extra, needle):
    code = main([
        "stylize", str(shared_data / "content" / "golden_gate_sq.jpg"),
        str(shared_data / "styles" / "bricks_sq.jpg"), "-o", str(tmp_path / "o.png"), *extra,
    ])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_stylize_missing_and_corrupt_inputs_exit_2(tmp_path, shared_data, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg")
    for content in (str(tmp_path / "missing.jpg"), str(bad)):
        code = main(["stylize", content, str(shared_data / "styles" / "bricks_sq.jpg"), "-o", str(tmp_path / "o.png")])
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.startswith("imfuse: error:") and content.split("/")[-1] in err and err.count("\n") == 1
    assert not (tmp_path / "o.png").exists()


def test_stylize_without_style_exit_2(tmp_path, shared_data, capsys):
    code = main(["stylize", str(shared_data / "content" / "golden_gate_sq.jpg"), "-o", str(tmp_path / "o.png")])
    assert code == 2
    assert "style" in capsys.readouterr().err


@runs_bf16
def test_stylize_model_float32_matches_library_and_bfloat16_is_close(tmp_path, shared_data, capsys):
    from imfuse.images import load_image
    from imfuse.networks import build_model, save_model
    from imfuse.stylize import stylize_with_model

    model = build_model("full", predictor_weights="none", alpha=0.25, residual_blocks=1)
    path = save_model(model, tmp_path / "m.keras")
    content, style = shared_data / "content" / "golden_gate_sq.jpg", shared_data / "styles" / "bricks_sq.jpg"
    outputs = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / f"{precision}.png"
        assert main(["stylize", str(content), str(style), "--method", "model", "--model", str(path),
                     "--precision", precision, "-o", str(out)]) == 0
        assert f"{precision} compute" in capsys.readouterr().err
        outputs[precision] = np.asarray(Image.open(out), dtype=np.float32)
    expected = stylize_with_model(model, load_image(content).rgb, [(load_image(style).rgb, 1.0)]) * 255
    assert outputs["float32"].shape == expected.shape
    assert np.abs(outputs["float32"] - expected).max() <= 1.0  # PNG rounding only
    diff = np.abs(outputs["bfloat16"] - outputs["float32"])
    assert 0 < diff.mean() < 3.0  # really computed in bfloat16, and still the same image


def test_tiled_stylize_shows_a_bar_of_the_tiles_that_ends_full(tmp_path, shared_data, capsys):
    out = tmp_path / "out.png"
    code = main(["stylize", str(shared_data / "content" / "chicago.jpg"), str(shared_data / "styles" / "starry_night.jpg"),
                 "--method", "model", "--tile", "256", "-o", str(out)])
    assert code == 0
    err = capsys.readouterr().err
    done = re.search(r"tiles: 100%\S*\s+(\d+)/(\d+)", err)
    assert done and done[1] == done[2] and int(done[1]) > 1
    assert err.endswith("\n")  # the bar is closed: what follows starts on a line of its own
