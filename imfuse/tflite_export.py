"""A model as two TensorFlow Lite files for client apps, float32 or with int8 weights.

Magenta's own TF Hub release of Ghiasi et al.'s network has the same two parts: `predict`
(a style image at the variant's style size -> the 100-d style embedding, computed once
per style) and `transfer` (a content image + an embedding -> the stylised image). TFLite
runs them with XNNPACK on phones, desktops and servers without TensorFlow.

The content size is fixed at export: XNNPACK only takes graphs whose tensor shapes are
known, and without it the same int8 transfer file ran 30x slower (6.2 s instead of 0.20 s
at 512 px on a 2-core Zen 4). `--quantize int8` stores conv weights as int8 and quantises
activations on the fly (TFLite's dynamic-range quantisation): the full variant's
transfer ran 2x faster than TensorFlow in float32 there. It is never a default: every
export records how far its pixels are from the Keras model's in float32 on a check pair
that imfuse generates, so a client can see what int8 costs before shipping it.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from imfuse._quiet import native_stderr_silenced
from imfuse.errors import ConfigError
from imfuse.tflite_stylizer import (
    CONTENT,
    EMBEDDING,
    IMAGE,
    PREDICT_FILE,
    RECORD_FILE,
    STYLE,
    TRANSFER_FILE,
    TFLiteStylizer,
)

CHECK_PICTURE = "check.png"
QUANTIZATIONS = ("none", "int8", "float16")
_CHECK_SEED = 7


@dataclass(frozen=True)
class TFLiteExport:
    """Where an export went and what it holds (also written as tflite.json)."""

    folder: str
    variant: str
    content_size: tuple[int, int]  # (height, width) of the transfer file's content input
    style_size: int
    quantize: str
    bytes: dict[str, int]
    # |TFLite - Keras float32| on the check pair, in 1/255 steps
    pixel_error_mean: float
    pixel_error_max: float
    source: str


def _frozen(fn):
    """A concrete function with its variables folded into constants, which the converter needs."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    return convert_variables_to_constants_v2(fn.get_concrete_function())


def _convert(fn, quantize: str) -> bytes:
    import tensorflow as tf

    with _absl_warnings_hidden():  # the frozen-function path's deprecation notice; it is the one that
        converter = tf.lite.TFLiteConverter.from_concrete_functions([_frozen(fn)])  # folds variables in
        if quantize in ("int8", "float16"):
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # int8: int8 weights, float activations
        if quantize == "float16":  # float16 weights, widened to float32 when the interpreter loads them
            converter.target_spec.supported_types = [tf.float16]
        with native_stderr_silenced():  # the MLIR converter's progress lines
            return converter.convert()


@contextlib.contextmanager
def _absl_warnings_hidden():
    import logging

    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _functions(model, content_size: tuple[int, int]):
    """(predict, transfer) tf.functions with fixed input shapes and the client-facing names."""
    import tensorflow as tf

    height, width = content_size
    size = model.variant.style_size

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name=STYLE)])
    def predict(style):
        return {EMBEDDING: model.embed_preprocessed(style)}

    @tf.function(input_signature=[
        tf.TensorSpec([1, height, width, 3], tf.float32, name=CONTENT),
        tf.TensorSpec([1, model.embedding_dim], tf.float32, name=EMBEDDING),
    ])
    def transfer(content, embedding):
        params = model.style_heads(embedding)
        # training=True picks the plain instance-norm ops (mean, rsqrt, multiply-add): the
        # fused batch-norm kernels used otherwise have no TFLite builtin. The transformer
        # has no other layer that training changes (no dropout, no batch statistics).
        return {IMAGE: model.transformer([content, params], training=True)}

    return predict, transfer


def check_pair(content_size: tuple[int, int], style_size: int) -> tuple[np.ndarray, np.ndarray]:
    """A generated landscape and brushwork painting, (1, H, W, 3) float32 in [0, 1]: the export's
    pixel-error check runs on pictures like a client's, not on noise, with no files needed."""
    from PIL import Image

    from imfuse.data.demo import brushwork, landscape

    height, width = content_size
    scale = max(1.0, 256 / min(height, width))  # the generator draws scenes of 256 px and up
    scene = landscape(_CHECK_SEED, (round(width * scale), round(height * scale))).convert("RGB")
    content = np.asarray(scene.resize((width, height), Image.Resampling.LANCZOS), np.float32)
    style = np.asarray(brushwork(np.random.default_rng(_CHECK_SEED), style_size, style_size).convert("RGB"), np.float32)
    return content[None] / 255.0, style[None] / 255.0


def _save_check_picture(path: Path, content, style, reference, exported) -> None:
    """content | style | the model in float32 | this export, side by side at the content's height."""
    from PIL import Image

    height = content.shape[1]
    tiles = [Image.fromarray(np.uint8(np.clip(a[0], 0, 1) * 255 + 0.5)) for a in (content, style, reference, exported)]
    tiles[1] = tiles[1].resize((height, height), Image.Resampling.BILINEAR)
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), height), "white")
    x = 0
    for tile in tiles:
        sheet.paste(tile, (x, 0))
        x += tile.width + 4
    sheet.save(path)


def check_options(content_size: tuple[int, int], quantize: str) -> None:
    """ConfigError for options export_tflite cannot honour (callers check before loading a model)."""
    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"unknown quantisation {quantize!r}; choose one of {', '.join(QUANTIZATIONS)}")
    height, width = content_size
    if min(height, width) < 16 or height % 4 or width % 4:
        raise ConfigError(f"content size must be multiples of 4 of at least 16 px, got {height}x{width}")


def export_tflite(
    model, folder: str | Path, content_size: tuple[int, int] = (512, 512), quantize: str = "none",
    source: str = "",
) -> TFLiteExport:
    """Writes predict.tflite, transfer.tflite and tflite.json into `folder` (created)."""
    check_options(content_size, quantize)
    height, width = content_size
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    predict, transfer = _functions(model, content_size)
    sizes = {}
    for name, fn in ((PREDICT_FILE, predict), (TRANSFER_FILE, transfer)):
        data = _convert(fn, quantize)
        (folder / name).write_bytes(data)
        sizes[name] = len(data)

    content, style = check_pair(content_size, model.variant.style_size)
    reference = model.stylize_with_embedding(content, model.embed_preprocessed(style)).numpy()
    record = {"variant": model.variant.name, "content_size": [height, width], "style_size": model.variant.style_size}
    (folder / RECORD_FILE).write_text(json.dumps(record))  # what TFLiteStylizer needs to load the pair
    lite = TFLiteStylizer(folder)
    exported = lite.stylize(content, lite.embed(style))
    error = np.abs(exported - reference) * 255.0
    _save_check_picture(folder / CHECK_PICTURE, content, style, reference, exported)
    result = TFLiteExport(
        folder=str(folder), variant=model.variant.name, content_size=(height, width),
        style_size=model.variant.style_size, quantize=quantize, bytes=sizes,
        pixel_error_mean=round(float(error.mean()), 3), pixel_error_max=round(float(error.max()), 1), source=source,
    )
    (folder / RECORD_FILE).write_text(json.dumps({
        **asdict(result),
        "inputs": {PREDICT_FILE: [STYLE], TRANSFER_FILE: [CONTENT, EMBEDDING]},
        "outputs": {PREDICT_FILE: EMBEDDING, TRANSFER_FILE: IMAGE},
        "pixel_error_check": "a generated landscape x a generated brushwork painting (imfuse.data.demo), "
                             f"against the Keras model in float32, in 1/255 steps; {CHECK_PICTURE} shows "
                             "content | style | the model in float32 | this export",
    }, indent=2) + "\n")
    return result
