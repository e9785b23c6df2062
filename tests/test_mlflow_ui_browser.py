"""The MLflow UI, in headless Chromium: two registered versions of imfuse-reduced show
their run metrics side by side in the registry's compare view, under identical names."""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse

import pytest

from mlflow_server import mlflow_server  # noqa: F401 - the session's tracking server
from test_studio_support import METRICS_A, METRICS_B, browser_missing, chromium_driver, keep_screenshot, studio_registry  # noqa: F401

pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")
SHOTS = os.environ.get("IMFUSE_SCREENSHOTS")  # a folder (docs/images) to keep the screenshots in


def _registered_runs(uri: str, name: str) -> dict[str, str]:
    """{version: run id} of the registered model's versions."""
    from imfuse.tracking.registry import list_versions

    return {str(v.version): v.run_id for v in sorted(list_versions(name, uri), key=lambda v: v.version)}


def _row_values(driver, metric: str) -> list[str]:
    """The cells after the metric's name in its table row, left to right."""
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.XPATH, f"//tr[.//*[normalize-space(text())='{metric}']]")
    assert rows, f"no row for {metric}"
    return [c.text.strip() for c in rows[0].find_elements(By.TAG_NAME, "td") if c.text.strip() != metric][-2:]


def test_mlflow_compare_view_shows_both_versions_metrics_side_by_side(studio_registry, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    uri, name = studio_registry  # two versions with the same metric names, other values
    runs = _registered_runs(uri, name)
    assert list(runs) == ["1", "2"]
    query = f"?name={json.dumps(urllib.parse.quote(name))}&runs={json.dumps(runs)}"
    driver = chromium_driver(1400, 1000)
    try:
        driver.get(f"{uri}/#/compare-model-versions{query}")
        WebDriverWait(driver, 60).until(
            ec.presence_of_element_located((By.XPATH, "//*[normalize-space(text())='eval/style_loss_unseen']")))
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "Comparing 2 Versions" in body
        for run_id in runs.values():
            assert run_id in body
        for metric in METRICS_A:
            values = [float(v) for v in _row_values(driver, metric)]
            assert values == [METRICS_A[metric], METRICS_B[metric]], (metric, values)
        shot = tmp_path / "mlflow_compare.png"
        driver.save_screenshot(str(shot))
        keep_screenshot(shot, SHOTS)
    finally:
        driver.quit()
        shutil.rmtree(getattr(driver, "_imfuse_profile", ""), ignore_errors=True)
