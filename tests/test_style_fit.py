"""imfuse.style_fit: a style's embedding fitted to the Gatys losses beats the predictor's on
the same photos, round-trips through its JSON file and drives `imfuse stylize`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imfuse.cli import main
from imfuse.errors import ConfigError
from imfuse.style_fit import (
    StyleFitConfig, StyleFitResult, default_fit_photos, fit_style_embedding, load_style_embedding,
    save_style_embedding,
)

SIZE = 64


@pytest.fixture(scope="module")
def base():
    from imfuse.base_model import resolve_model_path
    from imfuse.networks import load_model

    return load_model(resolve_model_path("base"))


@pytest.fixture(scope="module")
def lossnet():
    from imfuse.lossnet import build_loss_network

    return build_loss_network("vgg16-hed")


def _square(path, size=SIZE):
    from imfuse.images import load_image
    from imfuse.training.scoring import center_square

    return center_square(load_image(str(path)).rgb, size)


@pytest.mark.parametrize("optimizer,steps,crop", [("adam", 25, 0), ("lbfgs", 8, 0), ("lbfgs", 8, 40)])
def test_fitting_lowers_the_style_loss_the_predictor_left(base, lossnet, shared_data, optimizer, steps, crop):
    """An unseen-split painting on dependency-shipped photos: the fitted embedding scores a
    lower style loss on those photos than the predictor's own, and the fit started there; fitted
    on the photos' centre crops only, it does so on the whole photos too."""
    photos = default_fit_photos(SIZE)
    style = _square(shared_data / "styles" / "the_shipwreck_of_the_minotaur.jpg", 128)
    config = StyleFitConfig(steps=steps, size=SIZE, crop=crop, precision="float32", learning_rate=0.1,
                            optimizer=optimizer)
    calls = []
    result = fit_style_embedding(base, style, photos, config, lossnet, progress=False,
                                 on_step=lambda done, total, terms: calls.append((done, total)))
    assert [c[0] for c in calls] == list(range(1, len(calls) + 1)) and {c[1] for c in calls} == {steps}
    assert len(calls) == steps if optimizer == "adam" else 1 <= len(calls) <= steps
    assert result.embedding.shape == result.predicted.shape == (base.embedding_dim,)
    np.testing.assert_allclose(result.predicted, np.asarray(base.embed_style(style[None]))[0], atol=1e-5)

    from imfuse.losses import LossWeights, perceptual_losses, style_grams
    from imfuse.training.scoring import center_square

    grams = style_grams(lossnet, center_square(style, SIZE)[None])
    batch = np.stack(photos)
    feats = lossnet(batch)
    targets = {k: feats[k] for k in lossnet.content_layers}

    def style_loss(embedding):
        out = base.stylize_with_embedding(batch, np.repeat(embedding[None], len(batch), 0))
        return float(perceptual_losses(lossnet, out, targets, grams, LossWeights())["style_loss"])

    before, after = style_loss(result.predicted), style_loss(result.embedding)
    assert after < 0.8 * before, (before, after)
    if optimizer == "lbfgs" and crop:  # its records are the crops' losses
        assert result.history[0]["style_loss"] != pytest.approx(before, rel=1e-3)
    elif optimizer == "lbfgs":  # every photo at every iteration: its first record is `before` itself
        assert result.history[0]["style_loss"] == pytest.approx(before, rel=1e-3)
        assert result.history[-1]["style_loss"] == pytest.approx(after, rel=1e-3)
        assert len(result.history) == len(calls) + 1


def test_file_round_trip_and_clear_errors(tmp_path):
    result = StyleFitResult(embedding=np.arange(4, dtype=np.float32), predicted=np.zeros(4, np.float32),
                            history=[{"loss": 2.0, "style_loss": 1.0}])
    path = save_style_embedding(tmp_path / "s.json", result, {"model": "base"})
    np.testing.assert_array_equal(load_style_embedding(path, dim=4), result.embedding)
    assert json.loads(path.read_text())["model"] == "base"
    with pytest.raises(ConfigError, match="4 values"):
        load_style_embedding(path, dim=100)
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    with pytest.raises(ConfigError, match="format"):
        load_style_embedding(tmp_path / "other.json")
    with pytest.raises(ConfigError, match="cannot read"):
        load_style_embedding(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match=".json"):
        save_style_embedding(tmp_path / "s.npy", result, {})


@pytest.mark.parametrize("kwargs,match", [({"steps": 0}, "steps"), ({"size": 8}, "size"),
                                          ({"learning_rate": 0}, "learning rate"), ({"precision": "int4"}, "int4"),
                                          ({"optimizer": "sgd"}, "optimizer"), ({"crop": 16}, "crop")])
def test_bad_config_is_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        StyleFitConfig(**kwargs).validate()


def test_cli_fits_then_stylizes_with_the_file(tmp_path, shared_data, capsys):
    from PIL import Image

    photo = tmp_path / "photos"
    photo.mkdir()
    Image.fromarray((_square(shared_data / "content" / "tubingen.jpg") * 255).astype(np.uint8)).save(photo / "a.png")
    fitted = tmp_path / "turner.json"
    style = str(shared_data / "styles" / "the_shipwreck_of_the_minotaur.jpg")
    assert main(["fit-style", style, "-o", str(fitted), "--photos", str(photo), "--steps", "3", "--size", str(SIZE),
                 "--crop", "48", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "style loss on the fit photos" in captured.out and "48 px centre crops" in captured.err
    body = json.loads(fitted.read_text())
    assert body["config"]["steps"] == 3 and body["config"]["crop"] == 48
    assert body["style"] == style and len(body["embedding"]) == 100

    content = shared_data / "content" / "golden_gate_sq.jpg"
    out_fit, out_style = tmp_path / "fit.png", tmp_path / "style.png"
    assert main(["stylize", str(content), "--embedding", str(fitted), "-o", str(out_fit),  # implies --method model
                 "--no-progress"]) == 0
    assert main(["stylize", str(content), style, "--method", "model", "-o", str(out_style), "--no-progress"]) == 0
    a = np.asarray(Image.open(out_fit), np.float32)
    b = np.asarray(Image.open(out_style), np.float32)
    assert a.shape == b.shape and 0 < np.abs(a - b).mean()  # same model, the fitted conditioning
    capsys.readouterr()
    for argv, text in [
        (["stylize", str(content), style, "--method", "model", "--embedding", str(fitted), "-o", "x.png"], "--embedding"),
        (["stylize", str(content), "--method", "optimize", "--embedding", str(fitted), "-o", "x.png"], "--method model"),
        (["fit-style", style, "-o", str(tmp_path / "x.txt")], ".json"),
        (["fit-style", style, "-o", str(tmp_path / "x.json"), "--photos", str(tmp_path / "none")], "none"),
        (["fit-style", style, "-o", str(tmp_path / "x.json")] + ["--photos", str(photo / "a.png")] * 65, "at most 64"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("imfuse: error:") and text in err and "\n" not in err, err
