"""imfuse studio's JSON API over real HTTP (uvicorn in a thread) on the shipped base model, small images."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from imfuse.errors import ImageError
from imfuse.images import decode_image
from imfuse.studio.app import create_app
from imfuse.studio.config import StudioConfig
from imfuse.studio.gallery import Gallery
from test_studio_support import LiveApp, pixels, png_bytes, real_image


@pytest.fixture(scope="module")
def client(tmp_path_factory, shared_data):
    gallery = Gallery(tmp_path_factory.mktemp("gallery"))
    app = create_app(StudioConfig(), gallery=gallery)
    with LiveApp(app) as c:
        yield c


@pytest.fixture(scope="module")
def images(shared_data):
    content = real_image("golden_gate.jpg", "content", (128, 96))
    style = real_image("starry_night.jpg", "styles", (80, 64))
    return content, png_bytes(content), png_bytes(style)


def _half_mask(h: int, w: int) -> tuple[np.ndarray, bytes]:
    """Alpha mask: right half painted (stylised), left half untouched."""
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[:, w // 2:, :] = (255, 0, 170, 255)
    return rgba[..., 3] > 0, png_bytes(rgba)


def test_page_and_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for element in ('id="content-input"', 'id="mask-canvas"', 'id="strength"', 'id="compare-go"', 'id="download"'):
        assert element in page.text
    assert 'accept="image/*"' in page.text  # phones offer the camera for image inputs
    js = client.get("/static/studio.js")
    assert js.status_code == 200 and "/api/stylize" in js.text
    assert client.get("/static/studio.css").status_code == 200
    assert client.get("/healthz").json() == {"ok": True}
    assert client.get("/api/info").json()["backend"] == "shipped base model"


def test_gallery_serves_the_demo_styles(client):
    styles = client.get("/api/gallery").json()["styles"]
    assert len(styles) == 12
    names = [s["name"] for s in styles]
    assert any(n.startswith("brushwork") for n in names)
    image = client.get(styles[0]["url"])
    assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"
    missing = client.get("/api/gallery/not_a_style")
    assert missing.status_code == 404 and "unknown gallery style" in missing.json()["error"]


def test_gallery_in_an_unwritable_cache_falls_back_to_a_temp_folder(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")  # mkdir fails, even as root
    gallery = Gallery(blocker / "gallery")
    try:
        assert len(gallery.names()) == 12  # at the first call, not only at a later one
        assert gallery.path(gallery.names()[0]).is_file()
    finally:
        shutil.rmtree(gallery.root, ignore_errors=True)


def test_stylize_mixes_styles_and_keeps_masked_out_pixels(client, images):
    content, content_png, style_png = images
    painted, mask_png = _half_mask(*content.shape[:2])
    gallery = client.get("/api/gallery").json()["styles"][0]["name"]
    response = client.post(
        "/api/stylize",
        files=[("content", ("photo.png", content_png, "image/png")), ("style", ("starry.png", style_png, "image/png")),
               ("mask", ("mask.png", mask_png, "image/png"))],
        data={"style_weight": "0.7", "gallery": gallery, "gallery_weight": "0.3", "strength": "0.8"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    out = pixels(response.content)
    assert out.shape == content.shape
    np.testing.assert_array_equal(out[~painted], content[~painted])
    assert np.abs(out[painted].astype(int) - content[painted]).mean() > 5  # really stylised there


def test_warm_up_traces_the_local_model_once_for_every_later_click(client, images, monkeypatch):
    """`imfuse studio` warms the local backend up before it listens; clicks of other sizes then
    run through the same traces (the model's compiled calls: 2.5x faster than eager calls)."""
    from imfuse import networks

    backend = client.app.state.studio.backend
    backend.warm_up()
    embed, transform = networks.compiled_calls(backend.model())
    used = []
    monkeypatch.setattr(networks, "compiled_calls", lambda model: used.append(model) or (embed, transform))
    _, content_png, style_png = images
    for size in ("96", "128"):
        files = [("content", ("photo.png", content_png, "image/png")), ("style", ("s.png", style_png, "image/png"))]
        assert client.post("/api/stylize", files=files, data={"size": size}).status_code == 200
    assert used == [backend.model()] * 2
    assert embed.experimental_get_tracing_count() == 1 and transform.experimental_get_tracing_count() == 1


def test_strength_and_size_change_the_result(client, images):
    _, content_png, style_png = images
    files = [("content", ("photo.png", content_png, "image/png")), ("style", ("s.png", style_png, "image/png"))]
    full = pixels(client.post("/api/stylize", files=files, data={"strength": "1"}).content)
    weak = pixels(client.post("/api/stylize", files=files, data={"strength": "0.2"}).content)
    assert np.abs(full.astype(int) - weak).mean() > 2
    small = client.post("/api/stylize", files=files, data={"size": "64"})
    assert pixels(small.content).shape == (48, 64, 3)


def test_bad_inputs_give_the_cli_one_line_message_next_to_the_field(client, images, image_corpus):
    _, content_png, style_png = images
    truncated = image_corpus["bad"]["truncated.jpg"].read_bytes()
    with pytest.raises(ImageError) as cli:
        decode_image(truncated, "holiday.jpg")
    cases = [
        ({"content": ("holiday.jpg", truncated), "style": ("s.png", style_png)}, {}, "content", str(cli.value)),
        ({"content": ("c.png", content_png), "style": ("s.png", b"")}, {}, "style", "s.png: empty file, not an image"),
        ({"content": ("c.png", content_png), "style": ("s.png", style_png), "mask": ("m.svg", b"<svg/>" * 20)}, {},
         "mask", None),
        ({"content": ("c.png", content_png), "style": ("s.png", style_png)}, {"strength": "2"}, "strength", None),
        ({"content": ("c.png", content_png)}, {}, "style", None),
        ({"style": ("s.png", style_png)}, {}, "content", None),
    ]
    for files, data, field, message in cases:
        response = client.post("/api/stylize", files={k: (n, b, "application/octet-stream") for k, (n, b) in files.items()},
                               data=data)
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["field"] == field, body
        assert "\n" not in body["error"] and "Traceback" not in body["error"]
        if message:
            assert body["error"] == message


def test_gatys_job_reports_progress_and_returns_an_image(client, images):
    content, content_png, style_png = images
    files = [("content", ("photo.png", content_png, "image/png")), ("style", ("s.png", style_png, "image/png"))]
    start = client.post("/api/jobs", files=files, data={"steps": "4", "size": "48"})
    assert start.status_code == 202, start.text
    job_id = start.json()["id"]
    client.app.state.studio.jobs.wait(job_id, timeout=120)
    status = client.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "done", status
    assert status["done"] == status["total"] == 4
    out = pixels(client.get(f"/api/jobs/{job_id}/result").content)
    assert out.shape == (36, 48, 3)


def test_gatys_job_can_be_cancelled(client, images):
    _, content_png, style_png = images
    files = [("content", ("photo.png", content_png, "image/png")), ("style", ("s.png", style_png, "image/png"))]
    job_id = client.post("/api/jobs", files=files, data={"steps": "1000", "size": "48"}).json()["id"]
    deadline = time.monotonic() + 120
    while client.get(f"/api/jobs/{job_id}").json()["done"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 200
    job = client.app.state.studio.jobs.wait(job_id, timeout=30)
    assert job.state == "cancelled" and 2 <= job.done < 1000
    assert client.get(f"/api/jobs/{job_id}/result").status_code == 409
    assert client.get("/api/jobs/nope").status_code == 404


def test_fit_job_fits_the_style_once_and_fast_stylising_then_uses_it(client, images):
    content, content_png, style_png = images
    files = [("content", ("photo.png", content_png, "image/png")), ("style", ("s.png", style_png, "image/png"))]
    before = client.post("/api/stylize", files=files)
    assert "fitted" not in before.headers["X-Imfuse-Backend"]
    start = client.post("/api/jobs", files=files, data={"kind": "fit", "steps": "3"})
    assert start.status_code == 202, start.text
    assert start.json()["kind"] == "fit"
    job = client.app.state.studio.jobs.wait(start.json()["id"], timeout=300)
    assert job.state == "done" and job.done == job.total == 3, job.to_dict()
    fitted = pixels(client.get(f"/api/jobs/{job.id}/result").content)
    assert fitted.shape == content.shape
    after = client.post("/api/stylize", files=files)
    assert after.headers["X-Imfuse-Backend"].endswith("fitted style")
    np.testing.assert_array_equal(pixels(after.content), fitted)
    assert np.abs(pixels(before.content).astype(int) - fitted).mean() > 0.5  # the fitted conditioning differs
    two = files + [("style", ("t.png", style_png, "image/png"))]
    refused = client.post("/api/jobs", files=two, data={"kind": "fit"})
    assert refused.status_code == 400 and refused.json()["field"] == "style"
    assert client.get("/api/info").json()["fit"]["available"] is True


def test_compare_local_against_the_base_model_needs_known_versions(client, images):
    _, content_png, style_png = images
    files = [("content", ("photo.png", content_png, "image/png")), ("style", ("s.png", style_png, "image/png"))]
    ok = client.post("/api/compare", files=files, data={"a": "local", "b": "base"})
    assert ok.status_code == 200, ok.text
    a, b = ok.json()["results"]
    assert a["id"] == "local" and b["id"] == "base" and a["image"].startswith("data:image/png;base64,")
    bad = client.post("/api/compare", files=files, data={"a": "local", "b": "registry:champion"})
    assert bad.status_code == 400 and bad.json()["field"] == "b"
    assert "--mlflow-uri" in bad.json()["error"]
    options = client.get("/api/versions").json()["options"]
    assert [o["id"] for o in options] == ["local"]


def test_cli_refuses_bad_flags_with_one_line_and_exit_2(capsys, tmp_path):
    import socket

    from imfuse.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cases = [
            (["studio", "--port", "70000"], "--port must be a port number"),
            (["studio", "--target", "localhost:8500", "--model", str(tmp_path / "m.keras")], "not both"),
            (["studio", "--model", str(tmp_path / "missing.keras")], "no such file"),
            (["studio", "--port", str(port)], f"cannot listen on 127.0.0.1:{port}"),
        ]
        for argv, expected in cases:
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert err.startswith("imfuse: error: ") and expected in err and err.count("\n") == 1, err
