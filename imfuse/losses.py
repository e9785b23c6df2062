"""Gatys et al. losses as pure functions: content, style (Gram matrices), total variation.

Shared by the Gatys optimiser, training and evaluation so that every number the
project reports is the same quantity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import tensorflow as tf

from imfuse.loss_config import CONTENT_WEIGHT, STYLE_WEIGHT, TV_WEIGHT


@dataclass(frozen=True)
class LossWeights:
    """alpha (content), beta (style), TV weight, and optional per-layer weights.

    Defaults: imfuse.loss_config (they go with the loss network's layer configuration).
    """

    content: float = CONTENT_WEIGHT
    style: float = STYLE_WEIGHT
    tv: float = TV_WEIGHT
    content_layers: Mapping[str, float] = field(default_factory=dict)
    style_layers: Mapping[str, float] = field(default_factory=dict)

    def layer_weight(self, kind: str, layer: str, default: float = 1.0) -> float:
        table = self.content_layers if kind == "content" else self.style_layers
        return float(table.get(layer, default))


def gram_matrix(features: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
    """(B, H, W, C) -> (B, C, C), normalised by H*W*C (or mask area * C).

    A mask (B, H, W, 1) restricts the statistics to a region, which is how a pattern
    is matched on an object only.
    """
    features = tf.cast(features, tf.float32)
    channels = tf.cast(tf.shape(features)[-1], tf.float32)
    if mask is None:
        area = tf.cast(tf.shape(features)[1] * tf.shape(features)[2], tf.float32)
    else:
        size = features.shape[1:3] if features.shape[1:3].is_fully_defined() else tf.shape(features)[1:3]
        mask = tf.image.resize(tf.cast(mask, tf.float32), size, method="bilinear")
        features = features * mask
        area = tf.maximum(tf.reduce_sum(mask, axis=[1, 2, 3]), 1.0)[:, None, None]
    gram = tf.einsum("bhwc,bhwd->bcd", features, features)
    return gram / (area * channels)


def content_loss(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Mean squared feature difference per image: (B,)."""
    diff = tf.cast(features, tf.float32) - tf.cast(target, tf.float32)
    return tf.reduce_mean(tf.square(diff), axis=[1, 2, 3])


def style_loss(gram: tf.Tensor, target_gram: tf.Tensor) -> tf.Tensor:
    """Mean squared Gram difference per image: (B,). target may broadcast (1, C, C)."""
    return tf.reduce_mean(tf.square(gram - tf.cast(target_gram, tf.float32)), axis=[1, 2])


def total_variation_loss(images: tf.Tensor) -> tf.Tensor:
    """Mean absolute-squared neighbour difference per image: (B,). Size independent."""
    images = tf.cast(images, tf.float32)
    dy = images[:, 1:, :, :] - images[:, :-1, :, :]
    dx = images[:, :, 1:, :] - images[:, :, :-1, :]
    return tf.reduce_mean(tf.square(dy), axis=[1, 2, 3]) + tf.reduce_mean(tf.square(dx), axis=[1, 2, 3])


def style_grams(lossnet, style_images: tf.Tensor, mask: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
    """Gram matrices of the loss network's style layers for a batch of style images."""
    features = lossnet(style_images)
    return {name: gram_matrix(features[name], mask) for name in lossnet.style_layers}


def mix_grams(grams: list[dict[str, tf.Tensor]], weights: list[float]) -> dict[str, tf.Tensor]:
    """Weighted average of several styles' Gram targets (style mixing)."""
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("style weights must sum to a positive number")
    return {
        name: tf.add_n([g[name] * (w / total) for g, w in zip(grams, weights)]) for name in grams[0]
    }


def perceptual_terms(
    lossnet,
    images: tf.Tensor,
    content_features: Mapping[str, tf.Tensor],
    target_grams: Mapping[str, tf.Tensor],
    weights: LossWeights,
    mask: tf.Tensor | None = None,
) -> dict[str, tf.Tensor]:
    """Weighted content, style and TV losses of each image: (B,) each, named as the
    MLflow metrics are (`content_loss`, `style_loss`, `tv_loss`)."""
    features = lossnet(images)
    c_loss = tf.add_n(
        [
            weights.layer_weight("content", name) * content_loss(features[name], content_features[name])
            for name in lossnet.content_layers
        ]
    )
    s_loss = tf.add_n(
        [
            weights.layer_weight("style", name, lossnet.style_layer_weights.get(name, 1.0))
            * style_loss(gram_matrix(features[name], mask), target_grams[name])
            for name in lossnet.style_layers
        ]
    )
    return {
        "content_loss": weights.content * c_loss,
        "style_loss": weights.style * s_loss,
        "tv_loss": weights.tv * total_variation_loss(images),
    }


def perceptual_losses(
    lossnet,
    images: tf.Tensor,
    content_features: Mapping[str, tf.Tensor],
    target_grams: Mapping[str, tf.Tensor],
    weights: LossWeights,
    mask: tf.Tensor | None = None,
) -> dict[str, tf.Tensor]:
    """perceptual_terms averaged over the batch, plus `loss`, their weighted total."""
    return batch_means(perceptual_terms(lossnet, images, content_features, target_grams, weights, mask))


def batch_means(per_image: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Each (B,) term averaged over the batch, plus `loss`: the sum of those means."""
    terms = {name: tf.reduce_mean(value) for name, value in per_image.items()}
    terms["loss"] = tf.add_n(list(terms.values()))
    return terms


def balanced_mean(per_image: tf.Tensor) -> tf.Tensor:
    """The batch mean of `per_image` losses, with each image's gradient rescaled by
    mean / its own loss: the gradient of mean * mean(log loss_i).

    Style losses differ by 100x between styles (a zigzag's Gram values dwarf a muted
    painting's), so a plain mean trains almost only on the loudest styles of each batch,
    while quality is judged per style (bench/quality's geo/lite). The value is the plain
    mean, so logged losses keep their meaning.
    """
    per_image = tf.cast(per_image, tf.float32)
    mean = tf.reduce_mean(per_image)
    scale = tf.stop_gradient(mean / tf.maximum(per_image, 1e-12 + 1e-6 * mean))
    return tf.reduce_mean(per_image * scale)
