"""StyleTransferModel: shapes, strength, call forms, tracing with unknown sizes, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from imfuse.errors import ConfigError, ModelError
from imfuse.images import load_image, resize_to
from imfuse.networks import StyleTransferModel, VariantConfig, build_model, compiled_calls, load_model, save_model
from conftest import runs_bf16


@pytest.fixture(scope="module")
def images(shared_data):
    content = resize_to(load_image(shared_data / "content" / "golden_gate.jpg").rgb, (37, 53))
    style = resize_to(load_image(shared_data / "styles" / "starry_night.jpg").rgb, (48, 64))
    return content[None], style[None]


@pytest.fixture(scope="module")
def reduced():
    return build_model("reduced", predictor_weights="none")


@pytest.fixture(scope="module")
def full():
    return build_model("full", predictor_weights="none")


def test_style_parameter_counts():
    assert VariantConfig().style_param_count == 2758  # REFERENCE-ARCH.md: 2 x (1280 + 99)
    reduced_cfg = build_model("reduced").variant
    assert reduced_cfg.style_param_count == 2 * sum(reduced_cfg.norm_depths)
    assert reduced_cfg.style_param_count < 2758


@pytest.mark.parametrize("variant", ["reduced", "full"])
def test_output_shape_dtype_range_odd_size(variant, images, request):
    model = request.getfixturevalue(variant)
    content, style = images
    out = model({"content": content, "style": style})
    assert out.shape == (1, 37, 53, 3)
    assert out.dtype == tf.float32
    values = out.numpy()
    assert np.isfinite(values).all() and values.min() >= 0.0 and values.max() <= 1.0
    emb = model.embed_style(style)
    assert emb.shape == (1, 100)
    # A batch of contents shares one style embedding (broadcast).
    batch = np.concatenate([content, content[:, ::-1]], axis=0)
    out2 = model.stylize_with_embedding(batch, emb)
    assert out2.shape == (2, 37, 53, 3)
    np.testing.assert_allclose(out2.numpy()[0], values[0], atol=1e-5)


def test_call_forms_agree_and_style_matters(reduced, images, shared_data):
    content, style = images
    by_dict = reduced({"content": content, "style": style}).numpy()
    by_list = reduced([content, style]).numpy()
    np.testing.assert_array_equal(by_dict, by_list)
    other = resize_to(load_image(shared_data / "styles" / "pink_zigzag.jpg").rgb, (48, 64))[None]
    assert np.abs(reduced([content, other]).numpy() - by_dict).max() > 1e-4


def test_strength_interpolates_embeddings(reduced, images):
    content, style = images
    at_zero = reduced({"content": content, "style": style, "strength": tf.constant(0.0)}).numpy()
    np.testing.assert_array_equal(reduced([content, style], strength=0.0).numpy(), at_zero)
    own = reduced.stylize_with_embedding(content, reduced.embed_style(content)).numpy()
    np.testing.assert_allclose(at_zero, own, atol=1e-6)
    at_one = reduced({"content": content, "style": style}, strength=1.0).numpy()
    assert np.abs(at_one - at_zero).max() > 1e-4
    half = reduced([content, style, tf.constant([0.5])]).numpy()
    mid = 0.5 * reduced.embed_style(style) + 0.5 * reduced.embed_style(content)
    np.testing.assert_allclose(half, reduced.stylize_with_embedding(content, mid).numpy(), atol=1e-5)


def test_traces_once_for_unknown_sizes(reduced):
    fn = tf.function(lambda c, s: reduced({"content": c, "style": s}, training=True))
    concrete = fn.get_concrete_function(
        tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([None, None, None, 3], tf.float32)
    )
    for h, w in [(33, 47), (40, 40), (61, 34)]:
        out = concrete(tf.random.uniform((2, h, w, 3)), tf.random.uniform((2, 50, 70, 3)))
        assert out.shape == (2, h, w, 3)


def test_compiled_calls_compute_the_models_pictures_and_trace_once(reduced, images, tmp_path):
    """Evaluation's compiled calls: the eager call's pixels for every size and batch, one trace
    each, kept with the model, and nothing of them in its saved file."""
    content, style = images
    embed, stylize = compiled_calls(reduced)
    assert compiled_calls(reduced) == (embed, stylize)
    for h, w, batch in [(37, 53, 1), (40, 33, 2), (64, 64, 3)]:
        contents = tf.image.resize(np.repeat(content, batch, axis=0), (h, w))
        expected = reduced({"content": contents, "style": np.repeat(style, batch, axis=0)}).numpy()
        np.testing.assert_allclose(stylize(contents, embed(style)).numpy(), expected, atol=2e-5)
    assert embed.experimental_get_tracing_count() == 1 and stylize.experimental_get_tracing_count() == 1
    loaded = load_model(save_model(reduced, tmp_path / "compiled.keras"))
    np.testing.assert_array_equal(loaded({"content": content, "style": style}).numpy(), reduced({"content": content, "style": style}).numpy())


@pytest.mark.parametrize("variant", ["reduced", "full"])
def test_save_load_round_trip_exact(variant, images, tmp_path, request):
    model = request.getfixturevalue(variant)
    content, style = images
    before = model({"content": content, "style": style}).numpy()
    path = save_model(model, tmp_path / f"{variant}.keras")
    loaded = load_model(path)
    assert isinstance(loaded, StyleTransferModel)
    assert loaded.variant == model.variant
    assert loaded.predictor_init == "none"
    np.testing.assert_array_equal(loaded({"content": content, "style": style}).numpy(), before)


def test_overrides_change_architecture_and_are_recorded(tmp_path, images):
    model = build_model("reduced", alpha=0.5, residual_blocks=1, separable=False)
    assert model.variant.alpha == 0.5 and model.variant.residual_blocks == 1
    assert model.get_config()["variant_config"]["residual_blocks"] == 1
    loaded = load_model(save_model(model, tmp_path / "m.keras"))
    assert loaded.variant == model.variant
    content, style = images
    np.testing.assert_array_equal(loaded([content, style]).numpy(), model([content, style]).numpy())


def test_bad_variant_and_options():
    with pytest.raises(ConfigError, match="unknown model variant 'huge'"):
        build_model("huge")
    with pytest.raises(ConfigError, match="unknown variant option"):
        build_model("reduced", depth=3)
    with pytest.raises(ConfigError, match="alpha"):
        build_model("reduced", alpha=0)


def test_load_errors_name_the_file(tmp_path, reduced):
    missing = tmp_path / "nope.keras"
    with pytest.raises(ModelError, match="nope.keras"):
        load_model(missing)
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 definitely not a keras archive")
    with pytest.raises(ModelError, match="corrupt.keras"):
        load_model(corrupt)
    with pytest.raises(ConfigError, match="must end in .keras"):
        save_model(reduced, tmp_path / "model.h5")


def _small_dense(layout: int) -> StyleTransferModel:
    """Full-model layer types (dense expand/output convs) at a test-friendly width."""
    cfg = VariantConfig(name="dense-small", predictor="small", alpha=0.25, residual_blocks=1)
    return StyleTransferModel(cfg, layout=layout)


def test_layouts_compute_the_same_function(images):
    new, old = _small_dense(2), _small_dense(1)
    layer_types = {type(layer).__name__ for layer in new.transformer.layers}
    assert {"UpsampleConv2D", "SpaceToDepthConv2D"} <= layer_types
    assert "UpSampling2D" in {type(layer).__name__ for layer in old.transformer.layers}
    for layer in old.transformer.layers:
        if layer.weights:
            layer.set_weights(new.transformer.get_layer(layer.name).get_weights())
    old.predictor.set_weights(new.predictor.get_weights())
    old.style_heads.set_weights(new.style_heads.get_weights())
    content, style = images
    batch = np.concatenate([content, content[:, ::-1]])
    for c in (content, batch):
        np.testing.assert_allclose(new([c, style]).numpy(), old([c, style]).numpy(), atol=2e-5)


def test_files_without_a_layout_load_as_layout_1(tmp_path, images):
    """Models saved before layouts were recorded keep loading (Keras keys weights by layer class)."""
    import json
    import zipfile

    old = _small_dense(1)
    path = save_model(old, tmp_path / "old.keras")
    legacy = tmp_path / "legacy.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(legacy, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                assert config["config"].pop("layout") == 1
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    loaded = load_model(legacy)
    assert loaded.layout == 1
    content, style = images
    np.testing.assert_array_equal(loaded([content, style]).numpy(), old([content, style]).numpy())
    assert load_model(save_model(_small_dense(2), tmp_path / "new.keras")).layout == 2
    with pytest.raises(ConfigError, match="unknown transformer layout 7"):
        _small_dense(7)


@runs_bf16
def test_with_precision_twin_shares_weights_and_computes_in_bfloat16(images, tmp_path):
    from imfuse.networks import with_precision

    model = _small_dense(2)
    assert with_precision(model, "float32") is model
    twin = with_precision(model, "bfloat16")
    assert twin is not model and twin.layout == model.layout and twin.variant == model.variant
    assert twin.transformer.get_layer("residual_0_a").compute_dtype == "bfloat16"
    assert twin.transformer.get_layer("cin_0").compute_dtype == "float32"
    content, style = images
    ours, theirs = model([content, style]).numpy(), twin([content, style])
    assert theirs.dtype == tf.float32
    diff = np.abs(theirs.numpy() - ours)
    assert 0 < diff.mean() < 0.01
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        with_precision(model, "fp8")
    # Loading straight into bfloat16 builds the same twin without a float32 copy first.
    loaded = load_model(save_model(model, tmp_path / "m.keras"), precision="bfloat16")
    assert loaded.transformer.get_layer("residual_0_a").compute_dtype == "bfloat16"
    np.testing.assert_array_equal(loaded([content, style]).numpy(), theirs.numpy())
    assert load_model(tmp_path / "m.keras").transformer.get_layer("residual_0_a").compute_dtype == "float32"
