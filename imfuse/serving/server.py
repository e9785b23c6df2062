"""Wiring: model store + batcher + gRPC servicers + REST, with graceful shutdown.

`start_server` returns a running server (tests and benchmarks use it in-process);
`serve` is what `imfuse serve` runs: it blocks until SIGTERM/SIGINT, then stops
accepting requests, lets in-flight ones finish, and unloads. Everything listens on
127.0.0.1 unless another host is asked for; model management (reload) is off unless
enabled, and then only on its own 127.0.0.1 admin port.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from imfuse.errors import ConfigError
from imfuse.serving.admin import ADMIN_HOST, DEFAULT_ADMIN_PORT, ModelRoots
from imfuse.serving.batching import Batcher
from imfuse.serving.config import (
    BatchingOptions,
    ModelConfig,
    VersionPolicy,
    load_model_config_file,
)
from imfuse.serving.defaults import MODEL_NAME
from imfuse.serving.grpc_server import ModelServicer, PredictionServicer
from imfuse.serving.limits import RequestLimits
from imfuse.serving.metrics import ServingMetrics, StoreCollector
from imfuse.serving.model_store import ModelStore
from imfuse.serving.predict import Predictor
from imfuse.serving.rest import RestOptions, RestServer

log = logging.getLogger("imfuse.serving")

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024


@dataclass
class ServerOptions:
    """`imfuse serve` flags (names mirror tensorflow_model_server's)."""

    model_name: str = MODEL_NAME
    model_base_path: str | None = None
    model_config_file: str | None = None
    version_labels: dict[str, int] = field(default_factory=dict)
    port: int = 8500
    rest_port: int | None = 8501  # 0 picks a free port; None disables REST
    host: str = "127.0.0.1"  # "0.0.0.0" only when asked: the API has no authentication
    batching: BatchingOptions | None = None
    poll_wait_s: float = 2.0
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    grpc_threads: int = 16
    max_concurrent_rpcs: int = 64  # per gRPC port; RESOURCE_EXHAUSTED beyond
    limits: RequestLimits = field(default_factory=RequestLimits)
    rest: RestOptions = field(default_factory=RestOptions)
    enable_model_management: bool = False  # HandleReloadConfigRequest on the admin port
    admin_port: int = DEFAULT_ADMIN_PORT  # always bound to 127.0.0.1; 0 picks a free port
    model_roots: tuple[str, ...] = ()  # reload base paths must lie inside; default: start-up parents

    def models(self) -> list[ModelConfig]:
        """Model list from the config file, or the single --model-name/--model-base-path."""
        if self.model_config_file:
            # --model-base-path (a local override of a production path) and --version-labels
            # apply to the --model-name model of the file.
            return [
                replace(m, base_path=self.model_base_path or m.base_path, labels={**m.labels, **self.version_labels})
                if m.name == self.model_name
                else m
                for m in load_model_config_file(self.model_config_file)
            ]
        if not self.model_base_path:
            raise ConfigError("give --model-base-path DIR/NAME or --model-config-file FILE")
        return [ModelConfig(self.model_name, self.model_base_path, VersionPolicy(), dict(self.version_labels))]


@dataclass
class RunningServer:
    """Handles to a started server; `stop()` is idempotent."""

    grpc_server: grpc.Server
    grpc_port: int
    rest: RestServer | None
    store: ModelStore
    batcher: Batcher | None
    predictor: Predictor
    metrics: ServingMetrics
    admin_server: grpc.Server | None = None
    admin_port: int | None = None

    @property
    def rest_port(self) -> int | None:
        return self.rest.port if self.rest else None

    def stop(self, grace_s: float = 5.0) -> None:
        if getattr(self, "_stopped", False):
            return
        self._stopped = True
        if self.rest:
            self.rest.stop()
        if self.admin_server:
            self.admin_server.stop(0)
        self.grpc_server.stop(grace_s).wait(grace_s + 1)
        if self.batcher:
            self.batcher.stop()
        self.store.stop()


def _grpc_server(options: ServerOptions, name: str) -> grpc.Server:
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=options.grpc_threads, thread_name_prefix=name),
        options=[
            ("grpc.max_receive_message_length", options.max_request_bytes),
            ("grpc.max_send_message_length", 2**31 - 1),
        ],
        maximum_concurrent_rpcs=options.max_concurrent_rpcs,
    )


def _listen(server: grpc.Server, host: str, port: int, what: str) -> int:
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:
        bound, reason = 0, exc
    else:
        reason = "address in use?"
    if not bound:
        raise ConfigError(f"cannot listen for {what} on {host}:{port} ({reason})")
    return bound


def _check_options(options: ServerOptions, models: list[ModelConfig]) -> None:
    for m in models:
        if not Path(m.base_path).is_dir():
            raise ConfigError(f"model {m.name!r}: base path {m.base_path} does not exist")
    if options.max_request_bytes < 1:
        raise ConfigError(f"--max-request-bytes must be positive, got {options.max_request_bytes}")
    if options.max_concurrent_rpcs < 1:
        raise ConfigError(f"--max-concurrent-rpcs must be positive, got {options.max_concurrent_rpcs}")
    if options.enable_model_management and options.admin_port != 0 and options.admin_port == options.port:
        raise ConfigError("--admin-port must differ from --port: model management never shares the Predict port")
    for root in options.model_roots:
        if not Path(root).is_dir():
            raise ConfigError(f"--model-root {root} is not a folder")


def start_server(options: ServerOptions) -> RunningServer:
    """Load models (initial poll is synchronous), then open gRPC, admin and REST ports."""
    models = options.models()
    _check_options(options, models)
    store = ModelStore(models)
    store.poll()
    for m in models:
        if not store.loaded_versions(m.name):
            log.warning("model %s: no servable version under %s yet; polling", m.name, m.base_path)
    batcher = Batcher(options.batching) if options.batching else None
    metrics = ServingMetrics()
    metrics.registry.register(StoreCollector(store, batcher))
    predictor = Predictor(store, batcher, options.max_request_bytes, options.limits, metrics)
    server = _grpc_server(options, "imfuse-grpc")
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(predictor, metrics), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(store, metrics), server)
    opened: list = [server]  # what to close again if a later step fails
    try:
        port = _listen(server, options.host, options.port, "gRPC")
        admin, admin_port, roots = None, None, None
        if options.enable_model_management:
            roots = ModelRoots.of(options.model_roots, models)
            admin = _grpc_server(options, "imfuse-admin")
            model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(store, metrics, roots), admin)
            opened.append(admin)
            admin_port = _listen(admin, ADMIN_HOST, options.admin_port, "model management")
        rest = None
        if options.rest_port is not None:
            rest = RestServer(predictor, options.host, options.rest_port, options.rest)
            opened.append(rest)
        server.start()
        if admin:
            admin.start()
        if rest:
            rest.start()
    except ConfigError:
        for thing in reversed(opened):
            if isinstance(thing, grpc.Server):
                thing.stop(0)
            else:
                thing.stop()
        store.stop()
        if batcher:
            batcher.stop()
        raise
    store.start_polling(options.poll_wait_s)
    running = RunningServer(server, port, rest, store, batcher, predictor, metrics, admin, admin_port)
    log.info(
        "imfuse serve (development stand-in for TF Serving): gRPC on %s:%d, REST %s, model management %s, "
        "models %s, batching %s",
        options.host,
        port,
        f"on {options.host}:{rest.port}" if rest else "off",
        f"on {ADMIN_HOST}:{admin_port} (roots {', '.join(map(str, roots.roots))})" if admin else "off",
        ", ".join(f"{m.name} ({m.policy.describe()}) <- {m.base_path}" for m in models),
        options.batching or "off",
    )
    return running


def serve(options: ServerOptions) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully."""
    running = start_server(options)
    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        running.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("server stopped")
