"""Toy SavedModels that follow the serving contract (docs/CONTRACTS.md) for tests/bench.

They do real image work in-graph: decode the content bytes, blend them with the style
image's mean colour weighted by `strength` and a per-version `gain`, encode PNG. The
embedding is the style's per-channel mean (D=3). `gain` makes versions distinguishable.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from conftest import SHARED_DATA as DATA
EMBED_DIM = 3


def image_bytes(path: Path, size: int = 48, fmt: str = "JPEG") -> bytes:
    """A real test image, downscaled (longer side = size), re-encoded."""
    img = Image.open(path).convert("RGB")
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def b64(data: bytes) -> dict:
    """TF Serving's REST JSON form of binary data."""
    import base64

    return {"b64": base64.b64encode(data).decode()}


def rest_post(port: int, path: str, doc) -> tuple[int, bytes]:
    """POST `doc` (bytes as they are, else JSON) to 127.0.0.1:port; (status, body), errors included."""
    import json
    import urllib.error
    import urllib.request

    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def rest_get(port: int, path: str):
    """GET 127.0.0.1:port/path; (status, headers, body), errors included."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def _shared_images(kind: str, n: int, size: int) -> list[bytes]:
    """n real images of ../shared/data/<kind>; the test is skipped where they are absent
    (as the shared_data fixture does), never run on an empty list."""
    import pytest

    paths = sorted((DATA / kind).glob("*.jpg"))[:n]
    if len(paths) < n:
        pytest.skip(f"shared test images not found at {DATA / kind}")
    return [image_bytes(p, size) for p in paths]


def content_images(n: int = 2, size: int = 48) -> list[bytes]:
    return _shared_images("content", n, size)


def style_images(n: int = 2, size: int = 32) -> list[bytes]:
    return _shared_images("styles", n, size)


def _decode(data: tf.Tensor) -> tf.Tensor:
    img = tf.io.decode_image(data, channels=3, expand_animations=False)
    return tf.image.convert_image_dtype(img, tf.float32)


class ToyStyleModel(tf.Module):
    """serving_default / style_embedding / stylize_with_embedding with contract names."""

    def __init__(self, gain: float = 1.0):
        super().__init__()
        self.gain = tf.Variable(gain, trainable=False)

    def _embed_one(self, style: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(_decode(style), axis=[0, 1])

    def _stylize_one(self, content: tf.Tensor, embedding: tf.Tensor, strength: tf.Tensor) -> tf.Tensor:
        image = _decode(content)
        mixed = image * (1.0 - strength) + embedding[tf.newaxis, tf.newaxis, :] * strength * self.gain
        return tf.io.encode_png(tf.image.convert_image_dtype(tf.clip_by_value(mixed, 0.0, 1.0), tf.uint8, saturate=True))

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="style_image"),
        ]
    )
    def style_embedding(self, style_image):
        emb = tf.map_fn(self._embed_one, style_image, fn_output_signature=tf.TensorSpec([EMBED_DIM], tf.float32))
        return {"embedding": emb}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="content_image"),
            tf.TensorSpec([None, EMBED_DIM], tf.float32, name="embedding"),
            tf.TensorSpec([None], tf.float32, name="strength"),
        ]
    )
    def stylize_with_embedding(self, content_image, embedding, strength=tf.constant([1.0])):
        strength = tf.broadcast_to(strength, tf.shape(content_image))
        out = tf.map_fn(
            lambda args: self._stylize_one(*args),
            (content_image, embedding, strength),
            fn_output_signature=tf.TensorSpec([], tf.string),
        )
        return {"stylized_image": out}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="content_image"),
            tf.TensorSpec([None], tf.string, name="style_image"),
            tf.TensorSpec([None], tf.float32, name="strength"),
        ]
    )
    def serving_default(self, content_image, style_image, strength=tf.constant([1.0])):
        emb = self.style_embedding(style_image)["embedding"]
        return self.stylize_with_embedding(content_image, emb, strength)


def save_versioned(module: tf.Module, base_path: Path, version: int) -> Path:
    """Write BASE/<version>/ atomically (temp folder + rename), like the real export."""
    base_path.mkdir(parents=True, exist_ok=True)
    target = base_path / str(version)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=base_path))
    signatures = {
        "serving_default": module.serving_default,
        "style_embedding": module.style_embedding,
        "stylize_with_embedding": module.stylize_with_embedding,
    }
    tf.saved_model.save(module, str(tmp), signatures=signatures)
    os.replace(tmp, target)
    return target


def build_toy_model(base_path: Path, version: int, gain: float = 1.0) -> Path:
    """A toy contract model at BASE/<version>/."""
    return save_versioned(ToyStyleModel(gain), base_path, version)


def labelled_toy_models(root: Path) -> Path:
    """Model "imfuse" with toy versions 1 (gain 1) and 2 (gain 0.5) labelled stable and canary
    under ROOT/imfuse; returns the models.config naming them."""
    base = root / "imfuse"
    build_toy_model(base, 1, gain=1.0)
    build_toy_model(base, 2, gain=0.5)
    config = root / "models.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "imfuse" base_path: "{base}" model_platform: "tensorflow"\n'
        '  model_version_policy { all {} }\n'
        '  version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 } } }\n'
    )
    return config


def copy_version(src: Path, base_path: Path, version: int) -> Path:
    """Drop an already-built version folder into a base path under a new number, atomically."""
    tmp = base_path / f".copy-{version}"
    shutil.copytree(src, tmp)
    target = base_path / str(version)
    os.replace(tmp, target)
    return target


def expected_stylized(content: bytes, style: bytes, strength: float = 1.0, gain: float = 1.0) -> np.ndarray:
    """What the toy model computes, in numpy (for asserting served pixels)."""
    c = np.asarray(Image.open(io.BytesIO(content)).convert("RGB"), np.float32) / 255.0
    s = np.asarray(Image.open(io.BytesIO(style)).convert("RGB"), np.float32) / 255.0
    mean = s.reshape(-1, 3).mean(axis=0)
    out = np.clip(c * (1 - strength) + mean * strength * gain, 0, 1)
    return out


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve_process(args: list[str], log_path: Path, timeout_s: float = 60.0):
    """`python -m imfuse serve ARGS` as a subprocess, returned once it logs that gRPC is up.

    Returns (process, open log file); the log keeps the server's output for assertions.
    """
    import subprocess
    import sys
    import time

    log = open(log_path, "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "imfuse", "serve", *args],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    deadline = time.monotonic() + timeout_s
    while True:
        log.seek(0)
        text = log.read()
        if "gRPC on" in text:
            return proc, log
        assert proc.poll() is None, text
        assert time.monotonic() < deadline, text
        time.sleep(0.2)


def listening_addresses(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on `port`, from /proc/net/tcp{,6} (Linux).

    IPv4-mapped IPv6 addresses come back as plain IPv4 ('127.0.0.1'); wildcards as
    '0.0.0.0' / '::'.
    """
    import ipaddress

    found = set()
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: TCP_LISTEN
                # 32-bit words in host (little-endian) byte order
                raw = b"".join(bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, len(address), 8))
                ip = ipaddress.ip_address(raw)
                found.add(str(getattr(ip, "ipv4_mapped", None) or ip))
    return found
