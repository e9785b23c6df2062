"""Running a TFLite export of imfuse (predict.tflite + transfer.tflite + tflite.json).

`TFLiteStylizer` answers the part of the Keras model's interface that `imfuse.stylize`
uses (`embedding_dim`, `embed_style`, `stylize_with_embedding`), so the CLI stylises with
an export exactly as with a model file: style mixing, strength, masks and colour
preservation come from the same code. The transfer file's content size is fixed at export
(XNNPACK needs known shapes), so other sizes are resized to it and back.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from imfuse._quiet import native_stderr_silenced
from imfuse.errors import ConfigError

# The files of an export, and the interpreter's input and output names a client reads.
PREDICT_FILE = "predict.tflite"
TRANSFER_FILE = "transfer.tflite"
RECORD_FILE = "tflite.json"
CONTENT, STYLE, EMBEDDING, IMAGE = "content", "style", "embedding", "image"


def weights_label(quantize: str | None) -> str:
    """How an export stores its weights, for a person: 'float32 weights', 'int8 weights', ..."""
    return f"{'float32' if quantize == 'none' else quantize} weights"


def is_tflite_export(path: str | os.PathLike | None) -> bool:
    """Whether `path` is a folder written by `imfuse models export-tflite`."""
    return path is not None and (Path(path) / RECORD_FILE).is_file()


def _interpreter(path: Path, threads: int | None):
    """tf.lite.Interpreter without its deprecation notice (LiteRT's `ai_edge_litert` interpreter
    reads the same files; it is not installed here) and without the XNNPACK start-up line."""
    import tensorflow as tf

    if not path.is_file():
        raise ConfigError(f"{path.parent} is an incomplete TFLite export: {path.name} is missing")
    with warnings.catch_warnings(), native_stderr_silenced():
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated", category=UserWarning)
        try:
            interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=threads)
        except ValueError as exc:
            raise ConfigError(f"{path} is not a readable TFLite file ({str(exc).splitlines()[0]})") from None
        interpreter.allocate_tensors()
    return interpreter


class TFLiteStylizer:
    """The two exported files in TFLite interpreters (XNNPACK on CPU): embed once per style,
    then stylise any number of contents."""

    def __init__(self, folder: str | Path, threads: int | None = None):
        """threads: default every core this process may use (TFLite's own default is one)."""
        folder = Path(folder)
        threads = threads or len(os.sched_getaffinity(0))
        record = folder / RECORD_FILE
        if not record.is_file():
            raise ConfigError(f"{folder} is not a TFLite export of imfuse (no {RECORD_FILE})")
        try:
            self.record = json.loads(record.read_text())
            self.content_size = tuple(int(v) for v in self.record["content_size"])
            self.style_size = int(self.record["style_size"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{record} is not a valid export record ({type(exc).__name__}: {exc})") from None
        self.folder = folder
        self._predict = _interpreter(folder / PREDICT_FILE, threads)
        self._transfer = _interpreter(folder / TRANSFER_FILE, threads)
        self.embedding_dim = int(self._predict.get_output_details()[0]["shape"][-1])

    def describe(self) -> str:
        """One line for a person: what the export is and the size it runs at."""
        height, width = self.content_size
        weights = weights_label(self.record.get("quantize"))
        return (f"TFLite export {self.folder} ({self.record.get('variant', '?')} variant, {weights}, "
                f"content {width}x{height} px, width x height)")

    @staticmethod
    def _run(interpreter, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Inputs by name (the converter keeps the TensorSpec names) -> the single output."""
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], np.asarray(inputs[detail["name"]], np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    def embed(self, style: np.ndarray) -> np.ndarray:
        """A (1, S, S, 3) style at the export's style size, [0, 1] -> (1, D)."""
        return self._run(self._predict, {STYLE: style})

    def stylize(self, content: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        """A (1, H, W, 3) content at the export's content size, [0, 1] -> stylised, same shape."""
        return self._run(self._transfer, {CONTENT: content, EMBEDDING: embedding})

    def embed_style(self, images) -> np.ndarray:
        """(1, H, W, 3) style of any size -> (1, D), cropped and resized as the Keras model does."""
        from imfuse.networks.model import preprocess_style

        return self.embed(np.asarray(preprocess_style(images, self.style_size), np.float32))

    def stylize_with_embedding(self, content, embedding) -> np.ndarray:
        """(1, H, W, 3) content of any size in [0, 1] -> stylised at the export's size, resized back."""
        from imfuse.tiling import resize_image

        image = np.asarray(content, np.float32)
        if image.ndim != 4 or image.shape[0] != 1:
            raise ConfigError(f"a TFLite export stylises one image at a time, got shape {image.shape}")
        size = image.shape[1:3]
        work = resize_image(image[0], self.content_size)
        out = self.stylize(work[None], np.asarray(embedding, np.float32).reshape(1, -1))[0]
        return resize_image(np.clip(out, 0.0, 1.0), size)[None]
