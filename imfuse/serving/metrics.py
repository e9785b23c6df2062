"""Prometheus metrics in the text exposition format (0.0.4), served on the REST port.

TF Serving exports its metrics at `/monitoring/prometheus/metrics` when its monitoring
config enables it; `imfuse serve` serves the same path so dashboards and scrape configs
work against both. prometheus_client is not a dependency, so this is a small, strict
writer: counters, histograms, and gauges computed at scrape time, with label values
escaped as the format requires.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable

from imfuse.serving.defaults import METRICS_PATH as DEFAULT_PATH

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

Labels = tuple[str, ...]


def escape_label(value: str) -> str:
    """Label values: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text: backslash and newline escaped (quotes stay)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _label_text(names: Labels, values: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = list(zip(names, values)) + list(extra)
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in pairs) + "}"


@dataclass
class Counter:
    """Monotonic counter per label set."""

    name: str
    help: str
    labelnames: Labels = ()
    _values: dict[Labels, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {labels}")
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, labels: Labels = ()) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} counter"]
        with self._lock:
            items = sorted(self._values.items())
        lines += [f"{self.name}{_label_text(self.labelnames, k)} {format_value(v)}" for k, v in items]
        return lines


@dataclass
class Histogram:
    """Cumulative buckets, _sum and _count per label set (le="+Inf" always present)."""

    name: str
    help: str
    labelnames: Labels = ()
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    _series: dict[Labels, list] = field(default_factory=dict)  # [bucket counts..., sum, count]
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if list(self.buckets) != sorted(set(self.buckets)):
            raise ValueError(f"{self.name}: buckets must be increasing")

    def observe(self, value: float, labels: Labels = ()) -> None:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {labels}")
        with self._lock:
            series = self._series.setdefault(labels, [0] * len(self.buckets) + [0.0, 0])
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    series[i] += 1
            series[-2] += value
            series[-1] += 1

    def count(self, labels: Labels = ()) -> int:
        with self._lock:
            return self._series.get(labels, [0])[-1]

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} histogram"]
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        for labels, series in items:
            for bound, n in zip(self.buckets, series):
                le = (("le", format_value(float(bound))),)
                lines.append(f"{self.name}_bucket{_label_text(self.labelnames, labels, le)} {n}")
            lines.append(f'{self.name}_bucket{_label_text(self.labelnames, labels, (("le", "+Inf"),))} {series[-1]}')
            lines.append(f"{self.name}_sum{_label_text(self.labelnames, labels)} {format_value(series[-2])}")
            lines.append(f"{self.name}_count{_label_text(self.labelnames, labels)} {series[-1]}")
        return lines


@dataclass
class Gauge:
    """Values read at scrape time from `collect()` -> [(label values, value)]."""

    name: str
    help: str
    labelnames: Labels
    collect: Callable[[], Iterable[tuple[Labels, float]]]

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} gauge"]
        lines += [f"{self.name}{_label_text(self.labelnames, k)} {format_value(v)}" for k, v in sorted(self.collect())]
        return lines


class ServingMetrics:
    """The server's metrics: one instance per running server (tests run several)."""

    def __init__(self) -> None:
        self.requests = Counter(
            "imfuse_serving_requests_total", "Requests by API, method and canonical status code.",
            ("api", "method", "code"))
        self.errors = Counter(
            "imfuse_serving_request_errors_total", "Requests that did not end OK, by API, method and code.",
            ("api", "method", "code"))
        self.http_responses = Counter(
            "imfuse_serving_http_responses_total", "REST responses by HTTP status.", ("status",))
        self.latency = Histogram(
            "imfuse_serving_request_latency_seconds", "Request latency from receipt to reply, by API and method.",
            ("api", "method"), LATENCY_BUCKETS)
        self.batch_size = Histogram(
            "imfuse_serving_batch_size", "Rows per model execution (after server-side batching).",
            (), BATCH_BUCKETS)
        self._gauges: list[Gauge] = []

    def record(self, api: str, method: str, code: str, seconds: float) -> None:
        labels = (api, method, code)
        self.requests.inc(labels)
        if code != "OK":
            self.errors.inc(labels)
        self.latency.observe(seconds, (api, method))

    def add_gauge(self, gauge: Gauge) -> None:
        self._gauges.append(gauge)

    def render(self) -> str:
        lines: list[str] = []
        for metric in (self.requests, self.errors, self.http_responses, self.latency, self.batch_size, *self._gauges):
            lines += metric.render()
        return "\n".join(lines) + "\n"


def store_gauges(store, batcher=None) -> list[Gauge]:
    """Loaded versions per model (value 1 per AVAILABLE version) and the batch queue depth."""

    def versions():
        for name in store.model_names():
            for version in store.loaded_versions(name):
                yield (name, str(version)), 1.0

    def counts():
        for name in store.model_names():
            yield (name,), float(len(store.loaded_versions(name)))

    gauges = [
        Gauge("imfuse_serving_model_version_available", "1 for each model version that is loaded and serving.",
              ("model_name", "version"), versions),
        Gauge("imfuse_serving_loaded_versions", "Number of loaded versions per model.", ("model_name",), counts),
    ]
    if batcher is not None:
        gauges.append(Gauge("imfuse_serving_batch_queue_rows", "Rows waiting in the batching queues.", (),
                            lambda: [((), float(batcher.queued_rows))]))
    return gauges
