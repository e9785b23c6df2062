"""Prometheus metrics of `imfuse serve`, served on the REST port.

TF Serving exports its metrics at `/monitoring/prometheus/metrics` when its monitoring
config enables it; `imfuse serve` serves the same path so dashboards and scrape configs
work against both. prometheus_client writes them, into one registry per server (tests
run several in one process), in the 0.0.4 text format every Prometheus scrapes.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as CONTENT_TYPE

from imfuse.serving.defaults import METRICS_PATH as DEFAULT_PATH

__all__ = ["CONTENT_TYPE", "DEFAULT_PATH", "ServingMetrics", "StoreCollector"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

# TF Serving exports no `_created` series; neither do we (it would double every counter).
prometheus_client.disable_created_metrics()


class ServingMetrics:
    """The server's metrics: one registry per running server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("imfuse_serving_requests", "Requests by API, method and canonical status code.",
                                ("api", "method", "code"), registry=r)
        self.errors = Counter("imfuse_serving_request_errors",
                              "Requests that did not end OK, by API, method and code.",
                              ("api", "method", "code"), registry=r)
        self.http_responses = Counter("imfuse_serving_http_responses", "REST responses by HTTP status.",
                                      ("status",), registry=r)
        self.latency = Histogram("imfuse_serving_request_latency_seconds",
                                 "Request latency from receipt to reply, by API and method.",
                                 ("api", "method"), buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("imfuse_serving_batch_size",
                                    "Rows per model execution (after server-side batching).",
                                    buckets=BATCH_BUCKETS, registry=r)

    def record(self, api: str, method: str, code: str, seconds: float) -> None:
        self.requests.labels(api, method, code).inc()
        if code != "OK":
            self.errors.labels(api, method, code).inc()
        self.latency.labels(api, method).observe(seconds)

    def value(self, sample: str, **labels: str) -> float:
        """One sample's current value (0 when it was never written), e.g.
        `value("imfuse_serving_requests_total", api="grpc", method="Predict", code="OK")`."""
        return self.registry.get_sample_value(sample, labels) or 0.0

    def render(self) -> bytes:
        return generate_latest(self.registry)


class StoreCollector:
    """Gauges read at scrape time: each loaded version (1 per AVAILABLE version), the number
    loaded per model, and the rows waiting in the batching queues."""

    def __init__(self, store, batcher=None) -> None:
        self.store, self.batcher = store, batcher

    def collect(self):
        available = GaugeMetricFamily("imfuse_serving_model_version_available",
                                      "1 for each model version that is loaded and serving.",
                                      labels=("model_name", "version"))
        loaded = GaugeMetricFamily("imfuse_serving_loaded_versions", "Number of loaded versions per model.",
                                   labels=("model_name",))
        for name in self.store.model_names():
            versions = self.store.loaded_versions(name)
            for version in versions:
                available.add_metric((name, str(version)), 1)
            loaded.add_metric((name,), len(versions))
        yield from (available, loaded)
        if self.batcher is not None:
            yield GaugeMetricFamily("imfuse_serving_batch_queue_rows", "Rows waiting in the batching queues.",
                                    value=self.batcher.queued_rows)
