"""The combined arbitrary-style model: predictor + style heads + transformer.

`StyleTransferModel` is what training, evaluation, export and serving share; its config
records the variant so a saved `.keras` file rebuilds the same architecture.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import keras
import tensorflow as tf

from imfuse.errors import ConfigError, ModelError
from imfuse.fsutil import atomic_path
from imfuse.networks.config import VariantConfig, variant_config
from imfuse.networks.predictor import build_predictor, build_style_heads
from imfuse.networks.transformer import LAYOUT, build_transformer
from imfuse.precision import dtype_policy_for, dtype_policy_scope, resolve_precision

T = TypeVar("T")


def _as_float(x) -> tf.Tensor:
    """float32 tensor from arrays/tensors of any float dtype (mixed-precision outputs included)."""
    return tf.cast(tf.convert_to_tensor(x), tf.float32)


def preprocess_style(images: tf.Tensor, size: int) -> tf.Tensor:
    """Centre square crop and resize to size x size: the predictor sees a fixed scale of texture."""
    images = _as_float(images)
    shape = tf.shape(images)
    h, w = shape[1], shape[2]
    side = tf.minimum(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = images[:, top : top + side, left : left + side, :]
    return tf.image.resize(square, (size, size), method="bilinear", antialias=True)


@keras.saving.register_keras_serializable(package="imfuse")
class StyleTransferModel(keras.Model):
    """Arbitrary style transfer: `model({"content": c, "style": s})` -> stylised (B, H, W, 3) in [0, 1].

    `strength` (scalar or (B,)) interpolates the bottleneck between the content's own
    embedding (0) and the style's (1). Pass it as the `strength=` keyword (a Python float
    is fine) or inside the inputs as a tensor (Keras refuses Python floats mixed with tensors).
    """

    def __init__(
        self,
        variant_config: dict | VariantConfig | None = None,
        predictor_weights: str = "none",
        predictor_init: str | None = None,
        layout: int = LAYOUT,
        **kwargs,
    ):
        super().__init__(**kwargs)
        cfg = variant_config if isinstance(variant_config, VariantConfig) else VariantConfig.from_dict(
            variant_config or {}
        )
        self.variant = cfg
        # What initialised the predictor before any training; recorded, never reloaded.
        self.predictor_init = predictor_init or predictor_weights
        self.predictor = build_predictor(cfg, predictor_weights)
        self.style_heads = build_style_heads(cfg)
        self.layout = int(layout)
        self.transformer = build_transformer(cfg, self.layout)
        self.built = True

    @property
    def frozen_variables(self) -> list:
        """Pretrained weights the model uses but neither trains nor saves (the VGG16-HED
        trunk of the vgg16_hed predictor): a SavedModel export must capture them too."""
        return [v for layer in self.predictor.layers for v in getattr(layer, "frozen_variables", [])]

    @property
    def embedding_dim(self) -> int:
        return self.variant.bottleneck

    def embed_style(self, style_images, training: bool = False) -> tf.Tensor:
        """Style images (B, h, w, 3) in [0, 1], any size -> bottleneck (B, 100)."""
        return self.embed_preprocessed(preprocess_style(style_images, self.variant.style_size), training)

    def embed_preprocessed(self, style_images, training: bool = False) -> tf.Tensor:
        """Embedding of styles already at style_size (the antialiased resize has no XLA kernel,
        so XLA-compiled callers preprocess outside the compiled function)."""
        return self.predictor(_as_float(style_images), training=training)

    def stylize_with_embedding(self, content, embedding, training: bool = False) -> tf.Tensor:
        """Content (B, H, W, 3) + embedding (B or 1, 100) -> stylised (B, H, W, 3)."""
        content = _as_float(content)
        params = self.style_heads(_as_float(embedding), training=training)
        return self.transformer([content, params], training=training)

    def blend_embeddings(self, content, style_embedding, strength, training: bool = False) -> tf.Tensor:
        """strength * style + (1 - strength) * content's own embedding."""
        strength = tf.reshape(tf.cast(strength, tf.float32), (-1, 1))
        own = self.embed_style(content, training=training)
        return strength * style_embedding + (1.0 - strength) * own

    def call(self, inputs, training=None, strength=None):
        if isinstance(inputs, dict):
            content, style = inputs["content"], inputs["style"]
            strength = inputs.get("strength", strength)
        else:
            content, style, *rest = inputs
            if rest:
                strength = rest[0]
        embedding = self.embed_style(style, training=training)
        if strength is not None and not (isinstance(strength, (int, float)) and strength == 1):
            embedding = self.blend_embeddings(content, embedding, strength, training=training)
        return self.stylize_with_embedding(content, embedding, training=training)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "variant_config": self.variant.to_dict(),
            "predictor_init": self.predictor_init,
            "layout": self.layout,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # Weights come from the saved file, so never download or read the original init again.
        config["predictor_weights"] = "none"
        # Files from before layouts were recorded hold layout-1 weights.
        config.setdefault("layout", 1)
        return cls(**config)


def build_model(variant: str | VariantConfig = "reduced", predictor_weights: str = "none", **overrides):
    """A fresh StyleTransferModel of `variant` ("full" or "reduced") with VariantConfig overrides."""
    cfg = variant_config(variant, **overrides)
    return StyleTransferModel(cfg, predictor_weights=predictor_weights, name=f"imfuse_{cfg.name}")


def with_precision(model: StyleTransferModel, precision: str = "float32") -> StyleTransferModel:
    """`model` computing in `precision` ('float32', 'bfloat16' or 'auto').

    float32 returns `model` itself. bfloat16 returns a twin built under Keras'
    mixed_bfloat16 policy holding the same float32 weights: its convolutions run in
    bfloat16 (oneDNN's native kernels on AVX512-BF16/AMX CPUs), while normalisation, the
    style embedding and the output stay float32. Outputs differ from float32 by about
    1/255 on average (bench/inference prints the difference).
    """
    if resolve_precision(precision) == "float32":
        return model
    with dtype_policy_scope(dtype_policy_for(precision)):
        twin = StyleTransferModel(
            model.variant, predictor_init=model.predictor_init, layout=model.layout, name=model.name
        )
    twin.set_weights(model.get_weights())
    return twin


def cached_on(owner, key: str, build: Callable[[], T]) -> T:
    """`build()` once per `owner`, kept as an attribute of the owner so that it goes when the
    owner goes.

    What is cached here (tf.functions) closes over its owner: a module-level
    WeakKeyDictionary would hold the owner alive through its own value and never free it.
    Set past Keras's and tf.Module's attribute tracking: the cached value is not a layer.
    """
    value = owner.__dict__.get(key)
    if value is None:
        value = build()
        object.__setattr__(owner, key, value)
    return value


def compiled_calls(model: StyleTransferModel):
    """(embed_style, stylize_with_embedding) of `model` as tf.functions traced once for every
    size and batch, kept with the model.

    Keras calls a model eagerly, op by op, which costs about 170 ms a call on 2 cores whatever
    the size (the reduced base at 128 px: 181 ms eager, 16 ms compiled; at 512 px 267 against
    70 ms). A trace costs about a second, so what stylises many images (evaluation, the studio)
    calls these, and a one-off `imfuse stylize` calls the model itself.
    """
    def build():
        images = tf.TensorSpec([None, None, None, 3], tf.float32)
        embedding = tf.TensorSpec([None, model.embedding_dim], tf.float32)
        return (
            tf.function(lambda styles: model.embed_style(styles), input_signature=[images], autograph=False),
            tf.function(lambda content, emb: model.stylize_with_embedding(content, emb), input_signature=[images, embedding], autograph=False),
        )

    return cached_on(model, "_imfuse_compiled", build)


def compute_precision(model: StyleTransferModel) -> str:
    """'bfloat16' for a model built by with_precision/load_model in bfloat16, else 'float32'."""
    return "bfloat16" if model.dtype_policy.compute_dtype == "bfloat16" else "float32"


def save_model(model: StyleTransferModel, path: str | os.PathLike) -> str:
    """Saves to a `.keras` archive (config + weights) through a temp file beside it, so that
    readers never see half a zip; returns the path written."""
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ConfigError(f"model path must end in .keras: {path}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        model.save(os.fspath(tmp))
    return path


def saved_variant_config(path: str | os.PathLike) -> VariantConfig:
    """The VariantConfig recorded in a `.keras` file, read without building the model."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
        return VariantConfig.from_dict(config["config"]["variant_config"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelError(f"cannot read the model config of {os.fspath(path)}: {type(exc).__name__}: {exc}") from None


def load_model(path: str | os.PathLike, precision: str = "float32") -> StyleTransferModel:
    """Loads a model saved by save_model; anything else -> ModelError naming the file.

    `precision` as in with_precision, but built that way directly (no second model).
    """
    path = os.fspath(path)
    resolve_precision(precision)  # a bad name is a ConfigError, not a load error
    if not os.path.isfile(path):
        raise ModelError(f"model file not found: {path}")
    try:
        with dtype_policy_scope(dtype_policy_for(precision)):
            model = keras.saving.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - corrupt zip, wrong classes, shape mismatch, ...
        raise ModelError(f"cannot load model {path}: {type(exc).__name__}: {str(exc)[:300]}") from None
    if not isinstance(model, StyleTransferModel):
        raise ModelError(f"{path} holds a {type(model).__name__}, not an imfuse StyleTransferModel")
    return model
