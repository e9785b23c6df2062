"""Shared helpers of the imfuse studio tests (no tests here): small real images, a
registry with two versions of a real model, browser start-up."""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_DATA as DATA
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
METRICS_A = {"eval/style_loss_unseen": 0.42, "eval/style_loss_seen": 0.31, "eval/content_loss": 0.12,
             "eval/images_per_second": 4.0}
METRICS_B = {"eval/style_loss_unseen": 0.37, "eval/style_loss_seen": 0.29, "eval/content_loss": 0.15,
             "eval/images_per_second": 5.0}


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def real_image(name: str, kind: str, size: tuple[int, int]) -> np.ndarray:
    """A real photo/painting from ../shared/data resized to (W, H), uint8 (skips where absent)."""
    if not (DATA / kind / name).is_file():
        pytest.skip(f"shared test images not found at {DATA}")
    with Image.open(DATA / kind / name) as im:
        return np.asarray(im.convert("RGB").resize(size, Image.Resampling.LANCZOS))


def pixels(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:80]
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def make_second_model(dst: Path) -> Path:
    """The shipped base model with its style heads scaled: a distinguishable 'version 2'."""
    from imfuse.base_model import base_model_path
    from imfuse.networks import load_model, save_model

    model = load_model(base_model_path())
    weights = model.get_weights()
    model.set_weights([w * 1.6 if w.ndim == 2 and w.shape[0] == model.embedding_dim else w for w in weights])
    return Path(save_model(model, dst / "model.keras"))


def build_registry(root: Path, uri: str | None = None, name: str = "imfuse-reduced",
                   serving_versions: bool = False) -> str:
    """Two registered versions with identical metric names and different values:
    v1 = the shipped base model (alias champion), v2 = a variant (alias challenger).
    Returns the tracking URI (a SQLite store under root unless `uri` is given)."""
    from imfuse.base_model import base_model_path
    from imfuse.tracking.registry import register_run_model
    from imfuse.tracking.runs import log_to_run, start_run

    uri = uri or f"sqlite:///{root / 'mlflow.db'}"
    first = root / "v1"
    first.mkdir(parents=True, exist_ok=True)
    shutil.copy2(base_model_path(), first / "model.keras")
    second = make_second_model(root / "v2").parent
    for i, (folder, metrics, alias) in enumerate(((first, METRICS_A, "champion"), (second, METRICS_B, "challenger"))):
        run_id = start_run(uri, f"studio-test-{i + 1}")
        log_to_run(uri, run_id, metrics=metrics, artifacts=[(folder, "model")])
        tags = {"imfuse.serving_version": str(i + 1)} if serving_versions else None
        register_run_model(uri, run_id, name, tags=tags, alias=alias)
    return uri


REGISTERED = "imfuse-studio-test"  # not imfuse-reduced: the session's server is shared with other tests
_KEY = "_imfuse_studio_registry"


@pytest.fixture(scope="session")
def studio_registry(request, mlflow_server, tmp_path_factory) -> tuple[str, str]:
    """(tracking URI, registered model): two versions on the session's MLflow server,
    built once however many modules ask (tagged as serving versions 1 and 2)."""
    made = getattr(request.config, _KEY, None)
    if made is None:
        root = tmp_path_factory.mktemp("studio-registry")
        made = (build_registry(root, mlflow_server, REGISTERED, serving_versions=True), REGISTERED)
        setattr(request.config, _KEY, made)
    return made


def chromium_driver(width: int = 1280, height: int = 900):
    """Headless Chromium with the flags this offline machine needs and a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="imfuse-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", f"--window-size={width},{height}", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver._imfuse_profile = profile
    return driver


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    import importlib.util

    if not Path(CHROMIUM).is_file() or not Path(CHROMEDRIVER).is_file():
        return f"headless Chromium not installed ({CHROMIUM}, {CHROMEDRIVER}; Debian: apt-get install chromium chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e .[dev])"
    return None


class LiveApp:
    """An ASGI app served by uvicorn on a free loopback port in a thread, called with
    `requests` (real HTTP; Starlette's TestClient needs httpx, not in the dependency tree)."""

    def __init__(self, app):
        import socket
        import threading

        import requests
        import uvicorn

        self.app = app
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                     lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, name="studio-test-server", daemon=True)
        self._thread.start()
        self._session = requests.Session()
        import time

        deadline = time.monotonic() + 30
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def get(self, path: str, **kw):
        return self._session.get(self.url + path, timeout=kw.pop("timeout", 120), **kw)

    def post(self, path: str, **kw):
        return self._session.post(self.url + path, timeout=kw.pop("timeout", 120), **kw)

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def keep_screenshot(path: Path, folder: str | None) -> None:
    """Copy a screenshot into `folder` (IMFUSE_SCREENSHOTS, e.g. docs/images) as a 256-colour
    PNG, about a third of the size, still readable."""
    if not folder:
        return
    with Image.open(path) as im:
        quantized = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                               dither=Image.Dither.FLOYDSTEINBERG)
    quantized.save(Path(folder) / path.name, optimize=True)
