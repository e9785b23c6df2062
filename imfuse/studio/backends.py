"""Where stylisations come from: a model loaded here, or a serving endpoint.

`LocalBackend` runs `imfuse.stylize.stylize_with_model` (the shipped base model by
default). `ServingBackend` calls `imfuse serve` or TF Serving through
`imfuse.serving.client` (gRPC or REST): styles are embedded by the server and mixed here
with `imfuse.stylize.mix_style_embeddings`, the content is stylised with the mixed
embedding, and colour preservation and the mask are applied to the returned pixels with
the library's own functions (so they work with any export, old or new).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from imfuse.serving.defaults import MODEL_NAME
from imfuse.studio.inputs import StylizeRequest


@dataclass
class StylizeResult:
    """uint8 (H, W, 3) pixels plus what the page shows about the call."""

    image: np.ndarray
    elapsed_ms: float
    backend: str


class Backend(Protocol):
    """Anything that stylises a StylizeRequest."""

    description: str

    def stylize(self, request: StylizeRequest) -> StylizeResult: ...


class LocalBackend:
    """A `.keras` model loaded in this process on first use (thread-safe, loaded once)."""

    def __init__(self, model_path: str | Path | None = None, description: str | None = None, compiled: bool = True):
        self._spec = None if model_path in (None, "", "base") else str(model_path)
        # Compiled calls (stylize_with_model's `compiled`; `imfuse studio` traces them in warm_up
        # before it listens): 2.5x faster clicks. Off for a model loaded on demand for a comparison,
        # whose first click would wait for the trace.
        self.compiled = compiled
        self.description = description or ("shipped base model" if self._spec is None else f"model {self._spec}")
        self._model = None
        self._lock = threading.Lock()
        # Styles fitted in this process (imfuse.studio.fit): style pixels' key -> embedding (D,).
        self.fitted: dict[str, np.ndarray] = {}

    @property
    def is_base(self) -> bool:
        return self._spec is None

    def model(self):
        with self._lock:
            if self._model is None:
                from imfuse.base_model import resolve_model_path
                from imfuse.networks import load_model

                self._model = load_model(resolve_model_path(self._spec))
            return self._model

    def warm_up(self) -> None:
        """Load the model and trace its compiled calls on a small image, so the first click
        does not wait for them (about 3 s on 2 cores; every later click then runs 2.5x faster
        than an eager call: 215 against 570 ms at 1024x768)."""
        from imfuse.networks import compiled_calls

        embed, transform = compiled_calls(self.model())
        probe = np.zeros((1, 64, 64, 3), np.float32)
        transform(probe, embed(probe))

    def stylize(self, request: StylizeRequest) -> StylizeResult:
        from imfuse.stylize import stylize_with_model

        model = self.model()
        # A single style fitted earlier in this studio uses its fitted embedding.
        embedding = self.fitted.get(style_key(request.styles[0][0])) if len(request.styles) == 1 else None
        started = time.perf_counter()
        image = stylize_with_model(
            model, request.content, request.styles, request.strength, request.mask,
            request.preserve_color, tile="auto", as_uint8=True, embedding=embedding, compiled=self.compiled,
        )
        description = self.description + (", fitted style" if embedding is not None else "")
        return StylizeResult(image, (time.perf_counter() - started) * 1000.0, description)


def style_key(rgb: np.ndarray) -> str:
    """Identity of a style image by its pixels (the same upload or gallery pick, again)."""
    import hashlib

    arr = np.ascontiguousarray(rgb)
    return hashlib.sha256(str(arr.shape).encode() + arr.tobytes()).hexdigest()


class _RemoteEmbedder:
    """Adapter giving a serving client the `embed_style`/`embedding_dim` that
    mix_style_embeddings expects, so weights are validated and mixed in one place.
    The first style is embedded up front to learn D; embeddings are cached by pixels."""

    def __init__(self, client, probe: np.ndarray):
        self.client = client
        self._cache: dict[str, np.ndarray] = {}
        self.embedding_dim = int(self.embed_style(np.asarray(probe, np.float32)[None]).shape[1])

    def embed_style(self, batch: np.ndarray) -> np.ndarray:
        from imfuse.images import encode_png

        key = style_key(batch)
        if key not in self._cache:
            self._cache[key] = np.asarray(self.client.style_embedding(encode_png(batch[0])), np.float32)[None]
        return self._cache[key]


class ServingBackend:
    """One model version (or label, or the latest) of a serving endpoint."""

    def __init__(self, target: str, model_name: str = MODEL_NAME, *, rest: bool = False,
                 version: int | None = None, label: str | None = None, timeout_s: float = 60.0):
        self.target, self.model_name, self.rest = target, model_name, rest
        self.version, self.label, self.timeout_s = version, label, timeout_s
        which = f" version {version}" if version is not None else (f" label '{label}'" if label else "")
        self.description = f"{'REST' if rest else 'gRPC'} {target} model '{model_name}'{which}"

    def client(self):
        from imfuse.serving.client import make_client

        return make_client(self.target, rest=self.rest, model_name=self.model_name, version=self.version,
                           version_label=self.label, timeout_s=self.timeout_s, retries=1)

    def served_version(self) -> int | None:
        """The version number behind this backend's label or `latest` (from model metadata)."""
        if self.version is not None:
            return self.version
        client = self.client()
        try:
            return int(client.metadata()["version"]) or None
        finally:
            getattr(client, "close", lambda: None)()

    def stylize(self, request: StylizeRequest) -> StylizeResult:
        from imfuse.color import preserve_color
        from imfuse.images import decode_image, encode_png, to_uint8
        from imfuse.stylize import apply_mask, mix_style_embeddings

        client = self.client()
        started = time.perf_counter()
        try:
            embedder = _RemoteEmbedder(client, request.styles[0][0])
            embedding = mix_style_embeddings(embedder, request.styles)
            png = client.stylize_with_embedding(encode_png(request.content), embedding, request.strength)
        finally:
            getattr(client, "close", lambda: None)()
        elapsed = (time.perf_counter() - started) * 1000.0
        content = request.content_float
        out = decode_image(png, f"{self.target} response").rgb
        if out.shape != content.shape:
            from imfuse.errors import ServingError

            raise ServingError(f"{self.description}: returned {out.shape[1]}x{out.shape[0]} for a "
                               f"{content.shape[1]}x{content.shape[0]} content image")
        if request.preserve_color:
            out = preserve_color(content, out)
        out = np.clip(out, 0.0, 1.0)
        if request.mask is not None:
            out = apply_mask(content, out, request.mask)
        return StylizeResult(to_uint8(out), elapsed, self.description)
