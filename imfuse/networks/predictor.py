"""Style prediction network: style image in [0, 1] -> 100-d bottleneck, and the heads
that map the bottleneck to every conditional-instance-norm gamma/beta."""

from __future__ import annotations

import os
import socket
import warnings
from contextlib import contextmanager

import keras

from imfuse.errors import ConfigError, ModelError, WeightsUnavailableError
from imfuse.networks.config import FROZEN_TRUNKS, VariantConfig
from imfuse.networks.frozen import FROZEN_STAT_LAYERS
from imfuse.networks.layers import FrozenFeatureStats, FrozenMagentaTrunk, Rescale, SpatialMean

INCEPTION_END_LAYER = "mixed7"  # Keras name of the last 17x17 block (TF-slim Mixed_6e), 768 channels
INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/" + INCEPTION_WEIGHTS_FILE
)
INCEPTION_WEIGHTS_MD5 = "bcbd6486424b2319ff4ef7d526e38f63"
DOWNLOAD_TIMEOUT_S = 20.0


@contextmanager
def _socket_timeout(seconds: float):
    """Offline machines must fail fast instead of hanging on the download."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def imagenet_inception_weights() -> str:
    """Path of the ImageNet InceptionV3 (no top) weights: Keras cache, else download."""
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    cached = os.path.join(home, "models", INCEPTION_WEIGHTS_FILE)
    if os.path.isfile(cached):
        return cached
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            return keras.utils.get_file(
                INCEPTION_WEIGHTS_FILE,
                INCEPTION_WEIGHTS_URL,
                cache_subdir="models",
                file_hash=INCEPTION_WEIGHTS_MD5,
            )
    except Exception as exc:  # offline / proxy / hash mismatch all surface differently
        raise WeightsUnavailableError(
            f"predictor_weights 'imagenet' needs the InceptionV3 ImageNet weights, which could not be "
            f"downloaded ({type(exc).__name__}) and are not in the Keras cache at {cached}. "
            f"Copy {INCEPTION_WEIGHTS_FILE} there (from {INCEPTION_WEIGHTS_URL}), pass its path with "
            "--predictor-weights PATH, or use --predictor-weights none (random init)."
        ) from None


def _inception_trunk(weights: str) -> keras.Model:
    """InceptionV3 up to mixed7; `weights` is "imagenet", "none" or a weights-file path."""
    if weights == "none":
        path = None
    elif weights == "imagenet":
        path = imagenet_inception_weights()
    else:
        path = _weights_file(weights)
    base = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(None, None, 3))
    trunk = keras.Model(base.input, base.get_layer(INCEPTION_END_LAYER).output, name="inception_v3_mixed7")
    # A keras.applications InceptionV3 no-top file (legacy `.h5`) goes into the whole
    # InceptionV3; a Keras 3 `.weights.h5` saved from the mixed7 trunk goes into the trunk.
    if path is not None and path.endswith(".weights.h5"):
        _strict_load(trunk, path, "mixed7-trunk .weights.h5")
    elif path is not None:
        _strict_load(base, path, "InceptionV3 (no top) .h5")
    return trunk


def _weights_file(weights: str) -> str:
    path = os.path.expanduser(weights)
    if not os.path.isfile(path):
        raise WeightsUnavailableError(f"predictor weights file not found: {weights}")
    return path


def _strict_load(model: keras.Model, path: str, kind: str) -> None:
    """Keras only warns when parts of a weights file do not match; a half-loaded predictor
    must not pass silently, so any warning while loading is an error here."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model.load_weights(path)
    except Exception as exc:  # noqa: BLE001 - h5py, Keras structure and warning errors alike
        raise ModelError(
            f"cannot load predictor weights from {path} as a {kind} file: {type(exc).__name__}: {str(exc)[:200]}"
        ) from None


def _conv(x, filters: int, kernel: int, name: str, stride: int = 1):
    return keras.layers.Conv2D(
        filters, kernel, strides=stride, padding="same", activation="relu", kernel_initializer="he_normal", name=name
    )(x)


def _inception_module(x, width: int, name: str):
    """1x1 | 1x1->3x3 | 1x1->3x3->3x3 (a 5x5 receptive field) | avgpool->1x1, concatenated."""
    half = max(1, width // 2)
    b1 = _conv(x, width, 1, f"{name}_1x1")
    b2 = _conv(_conv(x, width, 1, f"{name}_3x3_reduce"), width, 3, f"{name}_3x3")
    b3 = _conv(x, half, 1, f"{name}_5x5_reduce")
    b3 = _conv(_conv(b3, half, 3, f"{name}_5x5_a"), half, 3, f"{name}_5x5_b")
    b4 = keras.layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    b4 = _conv(b4, half, 1, f"{name}_pool_proj")
    return keras.layers.Concatenate(name=f"{name}_concat")([b1, b2, b3, b4])


def _small_trunk(width: int) -> keras.Model:
    """The reduced variant's trainable predictor: a few convs, 3 inception modules, a conv."""
    inp = keras.Input(shape=(None, None, 3), name="style")
    x = _conv(inp, width, 3, "stem_0", stride=2)
    x = _conv(x, 2 * width, 3, "stem_1", stride=2)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    x = _inception_module(x, width, "inception_0")
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="inception_0_pool_out")(x)
    x = _inception_module(x, 2 * width, "inception_1")
    x = _inception_module(x, 2 * width, "inception_2")
    x = _conv(x, 8 * width, 1, "head_conv")
    return keras.Model(inp, x, name="small_trunk")


def build_predictor(cfg: VariantConfig, weights: str = "none") -> keras.Model:
    """Style image in [0, 1] (already resized) -> bottleneck (B, cfg.bottleneck).

    "vgg16_hed": a frozen pretrained VGG16 (HED weights, offline) whose per-channel feature
    statistics a small MLP maps to the bottleneck; "inception_v3": InceptionV3 to mixed7
    (ImageNet weights when present); "small": a trainable net learned from scratch.
    """
    weights = weights or "none"
    if cfg.predictor == "small" and weights == "imagenet":
        raise ConfigError(
            f"predictor_weights 'imagenet' applies to the InceptionV3 predictor only; variant "
            f"'{cfg.name}' uses the small predictor (use 'none' or a weights-file PATH)"
        )
    inp = keras.Input(shape=(None, None, 3), name="style")
    if cfg.predictor in FROZEN_TRUNKS:
        trunk, package = FROZEN_TRUNKS[cfg.predictor]
        if weights != "none":
            raise ConfigError(
                f"predictor_weights applies to the trainable predictors only; variant '{cfg.name}' uses the "
                f"frozen {trunk}, whose weights always come from the {package} package"
            )
        if cfg.predictor == "vgg16_hed":
            layers = FROZEN_STAT_LAYERS[: cfg.predictor_layers]
            x = FrozenFeatureStats("vgg16-hed", layers=layers, pool=cfg.predictor_pool, name="vgg16_hed_stats")(inp)
            x = keras.layers.Dense(cfg.predictor_hidden, activation="relu", name="stats_hidden", dtype="float32")(x)
        else:
            x = FrozenMagentaTrunk(name="magenta_mobilenet_v2")(inp)
        bottleneck = keras.layers.Dense(cfg.bottleneck, name="bottleneck", dtype="float32")(x)
        return keras.Model(inp, bottleneck, name="style_predictor")
    x = Rescale(name="to_minus1_1")(inp)
    if cfg.predictor == "inception_v3":
        x = _inception_trunk(weights)(x)
    else:
        x = _small_trunk(cfg.predictor_width)(x)
    x = SpatialMean(name="spatial_mean")(x)
    # float32 under mixed policies too: the embedding is what styles are mixed and blended by.
    bottleneck = keras.layers.Dense(cfg.bottleneck, name="bottleneck", dtype="float32")(x)
    model = keras.Model(inp, bottleneck, name="style_predictor")
    if cfg.predictor == "small" and weights != "none":
        _strict_load(model, _weights_file(weights), "small-predictor .weights.h5")
    return model


def build_style_heads(cfg: VariantConfig) -> keras.Model:
    """Bottleneck -> flat [gamma_0, beta_0, gamma_1, beta_1, ...] for every CIN layer.

    Gamma starts near 1 and beta near 0 so an untrained model normalises almost plainly.
    Always float32: tiny layers whose outputs scale every normalised activation.
    """
    inp = keras.Input(shape=(cfg.bottleneck,), name="bottleneck")
    small = keras.initializers.RandomNormal(stddev=0.01)
    outputs = [
        keras.layers.Dense(
            depth, kernel_initializer=small, bias_initializer=bias, name=f"{kind}_{i}", dtype="float32"
        )(inp)
        for i, depth in enumerate(cfg.norm_depths)
        for kind, bias in (("gamma", "ones"), ("beta", "zeros"))
    ]
    params = keras.layers.Concatenate(name="style_params")(outputs)
    return keras.Model(inp, params, name="style_heads")
