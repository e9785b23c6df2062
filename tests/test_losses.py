"""Gatys losses: Gram properties, content/style/TV behaviour, weighting."""

import numpy as np
import pytest
import tensorflow as tf

from imfuse.losses import (
    LossWeights,
    content_loss,
    gram_matrix,
    mix_grams,
    style_loss,
    total_variation_loss,
)


def test_gram_shape_symmetry_and_normalisation():
    rng = np.random.default_rng(0)
    feats = tf.constant(rng.normal(size=(2, 5, 7, 3)).astype(np.float32))
    g = gram_matrix(feats).numpy()
    assert g.shape == (2, 3, 3)
    np.testing.assert_allclose(g, np.transpose(g, (0, 2, 1)), rtol=1e-6)
    flat = feats.numpy().reshape(2, 35, 3)
    expected = np.einsum("bnc,bnd->bcd", flat, flat) / (5 * 7 * 3)
    np.testing.assert_allclose(g, expected, rtol=1e-5)
    # positive semi-definite
    assert (np.linalg.eigvalsh(g) > -1e-5).all()


def test_gram_is_spatially_invariant_and_size_normalised():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(1, 8, 8, 4)).astype(np.float32)
    shuffled = feats.reshape(1, 64, 4)[:, rng.permutation(64)].reshape(1, 8, 8, 4)
    tiled = np.tile(feats, (1, 2, 2, 1))  # same statistics, 4x the pixels
    g = gram_matrix(tf.constant(feats)).numpy()
    np.testing.assert_allclose(gram_matrix(tf.constant(shuffled)).numpy(), g, rtol=1e-5)
    np.testing.assert_allclose(gram_matrix(tf.constant(tiled)).numpy(), g, rtol=1e-5)


def test_masked_gram_uses_only_the_masked_region():
    rng = np.random.default_rng(2)
    inside = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
    outside = 100 * rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
    feats = np.concatenate([inside, outside], axis=2)  # (1, 4, 8, 3)
    mask = np.concatenate([np.ones((1, 4, 4, 1)), np.zeros((1, 4, 4, 1))], axis=2).astype(np.float32)
    g = gram_matrix(tf.constant(feats), tf.constant(mask)).numpy()
    np.testing.assert_allclose(g, gram_matrix(tf.constant(inside)).numpy(), rtol=1e-5)


def test_content_and_style_losses_zero_on_identity_positive_otherwise():
    rng = np.random.default_rng(3)
    a = tf.constant(rng.normal(size=(2, 4, 4, 3)).astype(np.float32))
    b = tf.constant(rng.normal(size=(2, 4, 4, 3)).astype(np.float32))
    assert np.allclose(content_loss(a, a).numpy(), 0)
    assert (content_loss(a, b).numpy() > 0).all()
    ga, gb = gram_matrix(a), gram_matrix(b)
    assert np.allclose(style_loss(ga, ga).numpy(), 0)
    assert (style_loss(ga, gb).numpy() > 0).all()
    # a single target broadcasts over the batch
    assert style_loss(ga, gb[:1]).shape == (2,)


def test_total_variation_zero_for_flat_and_larger_for_noise():
    flat = tf.fill((1, 8, 8, 3), 0.5)
    noise = tf.random.stateless_uniform((1, 8, 8, 3), seed=(1, 2))
    smooth = tf.tile(tf.linspace(0.0, 1.0, 8)[None, None, :, None], (1, 8, 1, 3))
    assert float(total_variation_loss(flat)[0]) == 0.0
    assert float(total_variation_loss(noise)[0]) > float(total_variation_loss(smooth)[0]) > 0


def test_mix_grams_is_weighted_average():
    g1 = {"l": tf.ones((1, 2, 2))}
    g2 = {"l": 3 * tf.ones((1, 2, 2))}
    mixed = mix_grams([g1, g2], [0.75, 0.25])["l"].numpy()
    np.testing.assert_allclose(mixed, 1.5)
    with pytest.raises(ValueError):
        mix_grams([g1], [0.0])


def test_loss_weights_per_layer_override():
    w = LossWeights(style_layers={"a": 2.0})
    assert w.layer_weight("style", "a", 5.0) == 2.0
    assert w.layer_weight("style", "b", 5.0) == 5.0
    assert w.layer_weight("content", "a") == 1.0


def test_balanced_mean_keeps_the_value_and_weighs_images_alike():
    from imfuse.losses import balanced_mean

    x = tf.Variable([1.0, 2.0])
    with tf.GradientTape(persistent=True) as tape:
        losses = tf.stack([100.0 * x[0] ** 2, x[1] ** 2])  # a loud style (400x) and a muted one
        plain = tf.reduce_mean(losses)
        balanced = balanced_mean(losses)
    assert float(balanced) == pytest.approx(float(plain))
    g_plain, g_bal = tape.gradient(plain, x).numpy(), tape.gradient(balanced, x).numpy()
    # plain: the loud image's gradient is 50x the muted one's; balanced: d/dx of mean * mean(log loss)
    assert g_plain[0] / g_plain[1] == pytest.approx(50.0)
    mean = float(plain)
    assert g_bal == pytest.approx([mean * 2 / 1.0 / 2, mean * 2 / 2.0 / 2], rel=1e-5)
    assert g_bal[0] / g_bal[1] == pytest.approx(2.0)  # each image's relative change counts alike
