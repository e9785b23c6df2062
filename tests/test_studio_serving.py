"""imfuse studio against a serving target (the local gRPC/REST server with toy contract
models, labels stable/canary) and an MLflow registry whose versions are tagged with the
serving version they were published as: outputs, metrics and run links side by side."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from imfuse.studio.app import create_app
from imfuse.studio.config import StudioConfig
from imfuse.studio.gallery import Gallery
from serving_fixtures import expected_stylized, labelled_toy_models
from mlflow_server import mlflow_server  # noqa: F401 - the session's tracking server
from test_studio_support import METRICS_A, METRICS_B, LiveApp, pixels, png_bytes, real_image, studio_registry  # noqa: F401


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from imfuse.serving.server import ServerOptions, start_server

    config = labelled_toy_models(tmp_path_factory.mktemp("models"))
    running = start_server(ServerOptions(model_config_file=str(config), port=0, rest_port=0, host="127.0.0.1",
                                         poll_wait_s=0))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def registry(studio_registry):
    return studio_registry


@pytest.fixture(scope="module")
def images(shared_data):
    content = real_image("tubingen.jpg", "content", (64, 48))
    style = real_image("the_scream.jpg", "styles", (40, 40))
    return content, png_bytes(content), png_bytes(style)


def _studio(tmp_path, server, registry=None, rest=False):
    port = server.rest_port if rest else server.grpc_port
    uri, name = registry or (None, "imfuse-reduced")
    config = StudioConfig(target=f"127.0.0.1:{port}", rest=rest, mlflow_uri=uri, registered_model=name,
                          mlflow_ui_url="http://mlflow.example:5000" if registry else None, timeout_s=20)
    return LiveApp(create_app(config, gallery=Gallery(tmp_path / "gallery")))


def _close(got: np.ndarray, expected: np.ndarray) -> None:
    diff = np.abs(got.astype(np.float32) / 255 - expected)
    assert diff.max() <= 2 / 255, diff.max()


@pytest.mark.parametrize("rest", [False, True], ids=["grpc", "rest"])
def test_stylize_through_the_serving_target_applies_strength_and_mask(tmp_path, server, images, rest):
    content, content_png, style_png = images
    mask = np.zeros((48, 64, 4), np.uint8)
    mask[:24, :, 3] = 255  # top half stylised
    with _studio(tmp_path, server, rest=rest) as studio:
        response = studio.post("/api/stylize", data={"strength": "0.6"}, files=[
            ("content", ("c.png", content_png, "image/png")), ("style", ("s.png", style_png, "image/png")),
            ("mask", ("m.png", png_bytes(mask), "image/png"))])
        assert response.status_code == 200, response.text
        assert "label" not in response.headers["X-Imfuse-Backend"]
    out = pixels(response.content)
    expected = expected_stylized(content_png, style_png, strength=0.6, gain=0.5)  # latest = version 2
    _close(out[:24], expected[:24])
    np.testing.assert_array_equal(out[24:], content[24:])


def test_compare_serving_labels_shows_registry_metrics_and_run_links(tmp_path, server, registry, images):
    _, content_png, style_png = images
    with _studio(tmp_path, server, registry) as studio:
        options = {o["id"] for o in studio.get("/api/versions").json()["options"]}
        assert {"serving:1", "serving:2", "serving:stable", "serving:canary", "registry:champion",
                "registry:challenger", "registry:1", "registry:2"} <= options
        files = [("content", ("c.png", content_png, "image/png")), ("style", ("s.png", style_png, "image/png"))]
        response = studio.post("/api/compare", files=files, data={"a": "serving:stable", "b": "serving:canary"})
        assert response.status_code == 200, response.text
        a, b = response.json()["results"]
        by_alias = studio.post("/api/compare", files=files, data={"a": "registry:champion", "b": "registry:challenger"})
        unknown = studio.post("/api/compare", files=files, data={"a": "serving:stable", "b": "serving:nightly"})
    assert a["title"] == "serving label stable (version 1)" and b["title"] == "serving label canary (version 2)"
    assert a["metrics"] == METRICS_A and b["metrics"] == METRICS_B
    assert a["registry"] == f"{registry[1]} v1 (champion)"
    for card in (a, b):
        assert card["run_url"].startswith("http://mlflow.example:5000/#/experiments/")
        assert card["run_url"].endswith(f"/runs/{card['run_id']}")
    img_a, img_b = (np.asarray(Image.open(io.BytesIO(base64.b64decode(c["image"].split(",", 1)[1])))) for c in (a, b))
    _close(img_a, expected_stylized(content_png, style_png, gain=1.0))
    _close(img_b, expected_stylized(content_png, style_png, gain=0.5))
    # registry aliases run on the serving version they were published as
    ra, rb = by_alias.json()["results"]
    assert (ra["note"], rb["note"]) == ("run by serving version 1", "run by serving version 2")
    assert ra["image"] == a["image"] and rb["image"] == b["image"]
    assert unknown.status_code == 502 and unknown.json()["field"] == "b"
    assert "nightly" in unknown.json()["error"] and "\n" not in unknown.json()["error"]


def test_unreachable_target_is_a_one_line_error(tmp_path, images):
    import socket

    _, content_png, style_png = images
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = StudioConfig(target=f"127.0.0.1:{port}", timeout_s=3)
    with LiveApp(create_app(config, gallery=Gallery(tmp_path / "g"))) as studio:
        response = studio.post("/api/stylize", files=[("content", ("c.png", content_png, "image/png")),
                                                      ("style", ("s.png", style_png, "image/png"))])
        versions = studio.get("/api/versions").json()
    assert response.status_code == 502
    assert "unavailable" in response.json()["error"] and "\n" not in response.json()["error"]
    assert versions["options"] == [] and versions["warnings"]
