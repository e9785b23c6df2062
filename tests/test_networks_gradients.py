"""Gradients reach every trainable weight (predictor, style heads, transformer) of both variants."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from imfuse.images import load_image, resize_to
from imfuse.networks import build_model


@pytest.mark.parametrize("variant", ["reduced", "full"])
def test_gradients_reach_every_trainable_weight(variant, shared_data):
    model = build_model(variant, predictor_weights="none")
    content = resize_to(load_image(shared_data / "content" / "tubingen.jpg").rgb, (36, 44))[None]
    style = resize_to(load_image(shared_data / "styles" / "the_scream.jpg").rgb, (40, 40))[None]
    target = resize_to(load_image(shared_data / "styles" / "the_scream.jpg").rgb, (36, 44))[None]
    groups = {
        "predictor": model.predictor.trainable_variables,
        "style_heads": model.style_heads.trainable_variables,
        "transformer": model.transformer.trainable_variables,
    }
    assert all(groups.values())
    assert len(model.trainable_variables) == sum(len(v) for v in groups.values())
    with tf.GradientTape() as tape:
        out = model({"content": content, "style": style}, training=True)
        loss = tf.reduce_mean(tf.square(out - target))
    grads = tape.gradient(loss, model.trainable_variables)
    missing = [v.path for v, g in zip(model.trainable_variables, grads) if g is None]
    assert not missing, f"no gradient for {missing[:5]}"
    zero = [v.path for v, g in zip(model.trainable_variables, grads) if not np.any(g.numpy())]
    assert not zero, f"all-zero gradient for {zero[:5]}"
