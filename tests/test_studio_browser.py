"""imfuse studio in a real browser (headless Chromium + Selenium): upload a photo and a
style, move the strength slider, paint a mask, get an image whose masked-out pixels are
the photo's; a bad file shows the CLI's one-line message next to its input; compare two
registered versions side by side with their metrics. Screenshots at desktop and phone
widths (IMFUSE_SCREENSHOTS=docs/images keeps them)."""

from __future__ import annotations

import base64
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imfuse.errors import ImageError
from imfuse.images import decode_image
from mlflow_server import mlflow_server  # noqa: F401 - the session's tracking server
from test_studio_support import LiveApp, browser_missing, chromium_driver, keep_screenshot, png_bytes, real_image, studio_registry  # noqa: F401

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")
SHOTS = os.environ.get("IMFUSE_SCREENSHOTS")
TEXT_FILE = b"this is not an image, just some text\n" * 4

BLOB_TO_B64 = """
const [selector, done] = arguments;
const el = document.querySelector(selector);
fetch(el.src).then(r => r.blob()).then(b => { const f = new FileReader();
  f.onload = () => done(f.result.split(',')[1]); f.readAsDataURL(b); }).catch(e => done('ERR ' + e));
"""
MASK_ALPHA = """
const c = document.getElementById('mask-canvas');
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
const a = new Uint8Array(c.width * c.height); for (let i = 0; i < a.length; i++) a[i] = d[4 * i + 3];
let s = ''; for (let i = 0; i < a.length; i += 8192) s += String.fromCharCode.apply(null, a.subarray(i, i + 8192));
return [c.width, c.height, btoa(s)];
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("browser-files")
    content = real_image("golden_gate.jpg", "content", (320, 240))
    (root / "golden_gate.png").write_bytes(png_bytes(content))
    (root / "starry_night.png").write_bytes(png_bytes(real_image("starry_night.jpg", "styles", (96, 96))))
    (root / "notes.jpg").write_bytes(TEXT_FILE)
    return root, content


@pytest.fixture(scope="module")
def studio(tmp_path_factory, studio_registry):
    from imfuse.studio.app import create_app
    from imfuse.studio.config import StudioConfig
    from imfuse.studio.gallery import Gallery

    root = tmp_path_factory.mktemp("studio-gallery")
    uri, name = studio_registry
    config = StudioConfig(mlflow_uri=uri, registered_model=name)
    with LiveApp(create_app(config, gallery=Gallery(root / "gallery"))) as app:
        yield app


@pytest.fixture(scope="module")
def driver():
    d = chromium_driver(1280, 900)
    d.set_script_timeout(60)
    yield d
    d.quit()
    shutil.rmtree(getattr(d, "_imfuse_profile", ""), ignore_errors=True)


def _wait(driver, condition, timeout: float = 90):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _shot(driver, tmp_path: Path, name: str, width: int, mobile: bool = False) -> None:
    """Full-page screenshot at `width` CSS px; phones through Chrome's device emulation
    (a headless window is never narrower than 500 px)."""
    metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": mobile}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": min(int(height), 4000)})
    path = tmp_path / name
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    keep_screenshot(path, SHOTS)


def test_stylise_with_a_painted_mask_in_the_browser(driver, studio, files, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    root, content = files
    driver.set_window_size(1280, 900)
    driver.get(studio.url + "/")
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery button")) == 12)
    # a bad file first: the CLI's message, next to the content input
    with pytest.raises(ImageError) as cli:
        decode_image(TEXT_FILE, "notes.jpg")
    driver.find_element(By.ID, "content-input").send_keys(str(root / "notes.jpg"))
    driver.find_element(By.ID, "style-input").send_keys(str(root / "starry_night.png"))
    driver.find_element(By.ID, "go").click()
    _wait(driver, lambda d: d.find_element(By.ID, "content-error").text)
    assert driver.find_element(By.ID, "content-error").text == str(cli.value)
    # the real photo, a second style from the gallery at weight 0.5, strength 0.8
    driver.find_element(By.ID, "content-input").send_keys(str(root / "golden_gate.png"))
    _wait(driver, lambda d: d.find_element(By.ID, "mask-editor").is_displayed())
    assert driver.find_element(By.ID, "content-error").text == ""
    driver.find_elements(By.CSS_SELECTOR, "#gallery button")[0].click()
    weights = driver.find_elements(By.CSS_SELECTOR, "#chosen input[type=range]")
    assert len(weights) == 2
    weights[1].send_keys(*[Keys.ARROW_LEFT] * 10)
    slider = driver.find_element(By.ID, "strength")
    slider.send_keys(*[Keys.ARROW_LEFT] * 4)
    assert driver.find_element(By.ID, "strength-value").text == "0.80"
    # paint a wide stroke across the middle of the photo
    driver.find_element(By.ID, "brush-size").send_keys(Keys.END)
    canvas = driver.find_element(By.ID, "mask-canvas")
    w = canvas.size["width"]
    (ActionChains(driver).move_to_element_with_offset(canvas, -w // 4, 0).click_and_hold()
     .move_by_offset(w // 4, 10).move_by_offset(w // 4, -10).release().perform())
    assert driver.find_element(By.ID, "mask-state").text == "painted mask"
    driver.find_element(By.ID, "go").click()
    _wait(driver, lambda d: d.find_element(By.ID, "result").get_attribute("data-ready") == "1")
    out = np.asarray(Image.open(io.BytesIO(base64.b64decode(driver.execute_async_script(BLOB_TO_B64, "#after")))).convert("RGB"))
    mw, mh, alpha = driver.execute_script(MASK_ALPHA)
    alpha = np.frombuffer(base64.b64decode(alpha), np.uint8).reshape(mh, mw)
    assert (mw, mh) == (320, 240) and out.shape == content.shape
    untouched, painted = alpha == 0, alpha == 255
    assert 0.05 < painted.mean() < 0.6 and untouched.mean() > 0.3
    np.testing.assert_array_equal(out[untouched], content[untouched])
    assert np.abs(out[painted].astype(int) - content[painted]).mean() > 5
    download = driver.find_element(By.ID, "download")
    assert download.get_attribute("download") == "imfuse-stylized.png"
    assert download.get_attribute("href").startswith("blob:")
    driver.find_element(By.ID, "split").send_keys(Keys.END)
    assert "100%" in driver.find_element(By.ID, "after").get_attribute("style")
    driver.find_element(By.ID, "split").send_keys(*[Keys.ARROW_LEFT] * 50)
    _shot(driver, tmp_path, "studio_desktop.png", 1280)
    _shot(driver, tmp_path, "studio_phone.png", 390, mobile=True)
    # phone width: one column, nothing wider than the screen
    wide = driver.execute_script(
        "return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > "
        "document.documentElement.clientWidth + 1).map(e => e.tagName + '#' + e.id)")
    assert wide == []
    panels = driver.find_elements(By.CSS_SELECTOR, "#stylise .grid > .panel")
    assert panels[1].rect["y"] > panels[0].rect["y"] + panels[0].rect["height"] - 1  # stacked, not side by side
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_compare_two_registered_versions_in_the_browser(driver, studio, studio_registry, files, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    root, _ = files
    driver.set_window_size(1280, 900)
    driver.get(studio.url + "/")
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#version-a option")) >= 4)
    driver.find_element(By.ID, "content-input").send_keys(str(root / "golden_gate.png"))
    driver.find_element(By.ID, "style-input").send_keys(str(root / "starry_night.png"))
    Select(driver.find_element(By.ID, "version-a")).select_by_value("registry:champion")
    Select(driver.find_element(By.ID, "version-b")).select_by_value("registry:challenger")
    driver.find_element(By.ID, "compare-go").click()
    _wait(driver, lambda d: d.find_element(By.ID, "compare-results").get_attribute("data-ready") == "1"
          or d.find_element(By.ID, "compare-error").text, timeout=180)
    assert driver.find_element(By.ID, "compare-error").text == ""
    figures = driver.find_elements(By.CSS_SELECTOR, "#compare-results figure")
    assert [f.get_attribute("data-version") for f in figures] == ["registry:champion", "registry:challenger"]
    a, b = (f.text for f in figures)
    name = studio_registry[1]
    assert f"{name} v1 (champion)" in a and f"{name} v2 (challenger)" in b
    assert "eval style loss (unseen styles) 0.4200" in a and "eval style loss (unseen styles) 0.3700" in b
    assert "eval latency (ms / image) 250.0" in a and "eval latency (ms / image) 200.0" in b
    links = [f.find_element(By.CLASS_NAME, "run-link").get_attribute("href") for f in figures]
    assert all(link.startswith(f"{studio_registry[0]}/#/experiments/") for link in links) and links[0] != links[1]
    first, second = (f.find_element(By.TAG_NAME, "img") for f in figures)
    assert first.get_attribute("src") != second.get_attribute("src")
    left, right = first.rect, second.rect
    assert abs(left["y"] - right["y"]) < 2 and right["x"] > left["x"] + left["width"] - 1  # side by side
    _shot(driver, tmp_path, "studio_compare.png", 1280)
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@pytest.mark.slow
def test_gatys_progress_bar_and_cancel_in_the_browser(driver, studio, files):
    """Slow (builds the VGG loss network): the progress bar moves, Cancel stops the run,
    and a short run brings its result back."""
    from selenium.webdriver.common.by import By

    root, content = files
    driver.get(studio.url + "/")
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery button")) == 12)
    driver.find_element(By.ID, "content-input").send_keys(str(root / "golden_gate.png"))
    driver.find_element(By.ID, "style-input").send_keys(str(root / "starry_night.png"))
    driver.find_element(By.CSS_SELECTOR, "input[name=method][value=optimize]").click()
    steps = driver.find_element(By.ID, "steps")
    assert steps.is_displayed()
    steps.clear()
    steps.send_keys("1000")
    driver.find_element(By.ID, "go").click()
    _wait(driver, lambda d: int(d.find_element(By.ID, "progress").get_attribute("value") or 0) >= 2, timeout=180)
    assert driver.find_element(By.ID, "cancel").is_displayed()
    driver.find_element(By.ID, "cancel").click()
    _wait(driver, lambda d: "cancelled" in d.find_element(By.ID, "status").text, timeout=60)
    assert not driver.find_element(By.ID, "cancel").is_displayed()
    steps.clear()
    steps.send_keys("3")
    driver.find_element(By.ID, "go").click()
    _wait(driver, lambda d: d.find_element(By.ID, "result").get_attribute("data-ready") == "1", timeout=180)
    assert "Gatys optimisation, 3 steps" in driver.find_element(By.ID, "result-info").text
