"""The Prometheus text-format writer (imfuse.serving.metrics) and the monitoring config parser."""

import math

import pytest

from imfuse.errors import ConfigError
from imfuse.serving.config import parse_monitoring_text
from imfuse.serving.metrics import Counter, Gauge, Histogram, ServingMetrics, format_value


def test_label_values_are_escaped():
    counter = Counter("c_total", 'help with \\ and\nnewline', ("path",))
    counter.inc(('a"b\\c\nd',))
    lines = counter.render()
    assert lines[0] == "# HELP c_total help with \\\\ and\\nnewline"
    assert lines[1] == "# TYPE c_total counter"
    assert lines[2] == 'c_total{path="a\\"b\\\\c\\nd"} 1'


def test_histogram_buckets_are_cumulative_with_inf_sum_and_count():
    hist = Histogram("h_seconds", "latency", ("api",), (0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        hist.observe(value, ("rest",))
    assert hist.render()[2:] == [
        'h_seconds_bucket{api="rest",le="0.1"} 2',
        'h_seconds_bucket{api="rest",le="1"} 3',
        'h_seconds_bucket{api="rest",le="+Inf"} 4',
        'h_seconds_sum{api="rest"} 3.65',
        'h_seconds_count{api="rest"} 4',
    ]
    with pytest.raises(ValueError):
        hist.observe(1.0, ())  # wrong label arity
    with pytest.raises(ValueError):
        Histogram("bad", "x", (), (1.0, 0.5))


def test_values_format_and_gauges_read_at_scrape_time():
    assert [format_value(v) for v in (3.0, 0.25, math.inf, -math.inf, math.nan)] == ["3", "0.25", "+Inf", "-Inf", "NaN"]
    state = {"n": 1}
    gauge = Gauge("g", "live value", ("model_name",), lambda: [(("m",), state["n"])])
    state["n"] = 5
    assert gauge.render()[2] == 'g{model_name="m"} 5'


def test_serving_metrics_record_splits_errors_and_renders_every_family():
    metrics = ServingMetrics()
    metrics.record("grpc", "Predict", "OK", 0.02)
    metrics.record("grpc", "Predict", "INVALID_ARGUMENT", 0.001)
    assert metrics.requests.value(("grpc", "Predict", "OK")) == 1
    assert metrics.errors.value(("grpc", "Predict", "OK")) == 0
    assert metrics.errors.value(("grpc", "Predict", "INVALID_ARGUMENT")) == 1
    text = metrics.render()
    assert text.endswith("\n")
    for family in ("imfuse_serving_requests_total", "imfuse_serving_request_errors_total",
                   "imfuse_serving_request_latency_seconds", "imfuse_serving_batch_size"):
        assert f"# TYPE {family} " in text
    assert 'imfuse_serving_request_latency_seconds_count{api="grpc",method="Predict"} 2' in text


def test_monitoring_config_parses_like_tf_serving():
    assert parse_monitoring_text('prometheus_config { enable: true, path: "/m/metrics" }') == "/m/metrics"
    assert parse_monitoring_text("prometheus_config { enable: true }") == "/monitoring/prometheus/metrics"
    assert parse_monitoring_text("prometheus_config { enable: false }") is None
    with pytest.raises(ConfigError, match="MonitoringConfig"):
        parse_monitoring_text("prometheus { enable: true }")
    with pytest.raises(ConfigError, match="/v1/"):
        parse_monitoring_text('prometheus_config { enable: true path: "/v1/models/x" }')
