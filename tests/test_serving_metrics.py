"""The serving metrics (imfuse.serving.metrics, prometheus_client) and the monitoring config parser."""

import pytest

from imfuse.errors import ConfigError
from imfuse.serving.config import parse_monitoring_text
from imfuse.serving.metrics import ServingMetrics, StoreCollector


def test_serving_metrics_record_splits_errors_and_renders_every_family():
    metrics = ServingMetrics()
    metrics.record("grpc", "Predict", "OK", 0.02)
    metrics.record("grpc", "Predict", "INVALID_ARGUMENT", 0.001)
    metrics.batch_size.observe(3)
    call = {"api": "grpc", "method": "Predict"}
    assert metrics.value("imfuse_serving_requests_total", **call, code="OK") == 1
    assert metrics.value("imfuse_serving_request_errors_total", **call, code="OK") == 0
    assert metrics.value("imfuse_serving_request_errors_total", **call, code="INVALID_ARGUMENT") == 1
    assert metrics.value("imfuse_serving_request_latency_seconds_bucket", **call, le="0.005") == 1
    assert metrics.value("imfuse_serving_batch_size_bucket", le="2.0") == 0
    assert metrics.value("imfuse_serving_batch_size_bucket", le="4.0") == 1
    text = metrics.render().decode()
    assert text.endswith("\n") and "_created" not in text
    for family, kind in (("imfuse_serving_requests_total", "counter"), ("imfuse_serving_request_errors_total", "counter"),
                         ("imfuse_serving_request_latency_seconds", "histogram"),
                         ("imfuse_serving_batch_size", "histogram")):
        assert f"# TYPE {family} {kind}" in text
    assert 'imfuse_serving_request_latency_seconds_count{api="grpc",method="Predict"} 2.0' in text
    assert 'imfuse_serving_requests_total{api="grpc",code="OK",method="Predict"} 1.0' in text
    assert ServingMetrics().value("imfuse_serving_requests_total", **call, code="OK") == 0  # one registry each


def test_store_gauges_are_read_at_scrape_time():
    class Store:
        loaded = {"m": [1]}

        def model_names(self):
            return list(self.loaded)

        def loaded_versions(self, name):
            return self.loaded[name]

    class Batcher:
        queued_rows = 0

    store, batcher, metrics = Store(), Batcher(), ServingMetrics()
    metrics.registry.register(StoreCollector(store, batcher))
    assert metrics.value("imfuse_serving_model_version_available", model_name="m", version="1") == 1
    store.loaded["m"] = [1, 2]
    batcher.queued_rows = 5
    assert metrics.value("imfuse_serving_model_version_available", model_name="m", version="2") == 1
    assert metrics.value("imfuse_serving_loaded_versions", model_name="m") == 2
    assert metrics.value("imfuse_serving_batch_queue_rows") == 5
    assert 'imfuse_serving_loaded_versions{model_name="m"} 2.0' in metrics.render().decode()


def test_monitoring_config_parses_like_tf_serving():
    assert parse_monitoring_text('prometheus_config { enable: true, path: "/m/metrics" }') == "/m/metrics"
    assert parse_monitoring_text("prometheus_config { enable: true }") == "/monitoring/prometheus/metrics"
    assert parse_monitoring_text("prometheus_config { enable: false }") is None
    with pytest.raises(ConfigError, match="MonitoringConfig"):
        parse_monitoring_text("prometheus { enable: true }")
    with pytest.raises(ConfigError, match="/v1/"):
        parse_monitoring_text('prometheus_config { enable: true path: "/v1/models/x" }')
