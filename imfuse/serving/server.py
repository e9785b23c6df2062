"""Wiring: model store + batcher + gRPC servicers + REST, with graceful shutdown.

`start_server` returns a running server (tests and benchmarks use it in-process);
`serve` is what `imfuse serve` runs: it blocks until SIGTERM/SIGINT, then stops
accepting requests, lets in-flight ones finish, and unloads.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from imfuse.errors import ConfigError
from imfuse.serving.batching import Batcher
from imfuse.serving.config import (
    BatchingOptions,
    ModelConfig,
    VersionPolicy,
    load_model_config_file,
)
from imfuse.serving.grpc_server import ModelServicer, PredictionServicer
from imfuse.serving.model_store import ModelStore
from imfuse.serving.predict import Predictor
from imfuse.serving.rest import RestServer

log = logging.getLogger("imfuse.serving")

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024


@dataclass
class ServerOptions:
    """`imfuse serve` flags (names mirror tensorflow_model_server's)."""

    model_name: str = "imfuse"
    model_base_path: str | None = None
    model_config_file: str | None = None
    version_labels: dict[str, int] = field(default_factory=dict)
    port: int = 8500
    rest_port: int = 8501  # 0 picks a free port; None disables REST
    host: str = "0.0.0.0"
    batching: BatchingOptions | None = None
    poll_wait_s: float = 2.0
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    grpc_threads: int = 16

    def models(self) -> list[ModelConfig]:
        """Model list from the config file, or the single --model-name/--model-base-path."""
        if self.model_config_file:
            models = load_model_config_file(self.model_config_file)
            if self.model_base_path:  # local override of a production path
                models = [
                    ModelConfig(m.name, self.model_base_path, m.policy, m.labels) if m.name == self.model_name else m
                    for m in models
                ]
            if self.version_labels:
                models = [
                    ModelConfig(m.name, m.base_path, m.policy, {**m.labels, **self.version_labels})
                    if m.name == self.model_name
                    else m
                    for m in models
                ]
            return models
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

    @property
    def rest_port(self) -> int | None:
        return self.rest.port if self.rest else None

    def stop(self, grace_s: float = 5.0) -> None:
        if getattr(self, "_stopped", False):
            return
        self._stopped = True
        if self.rest:
            self.rest.stop()
        self.grpc_server.stop(grace_s).wait(grace_s + 1)
        if self.batcher:
            self.batcher.stop()
        self.store.stop()


def start_server(options: ServerOptions) -> RunningServer:
    """Load models (initial poll is synchronous), then open gRPC and REST ports."""
    models = options.models()
    for m in models:
        if not Path(m.base_path).is_dir():
            raise ConfigError(f"model {m.name!r}: base path {m.base_path} does not exist")
    if options.max_request_bytes < 1:
        raise ConfigError(f"--max-request-bytes must be positive, got {options.max_request_bytes}")
    store = ModelStore(models)
    store.poll()
    for m in models:
        if not store.loaded_versions(m.name):
            log.warning("model %s: no servable version under %s yet; polling", m.name, m.base_path)
    batcher = Batcher(options.batching) if options.batching else None
    predictor = Predictor(store, batcher, options.max_request_bytes)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=options.grpc_threads, thread_name_prefix="imfuse-grpc"),
        options=[
            ("grpc.max_receive_message_length", options.max_request_bytes),
            ("grpc.max_send_message_length", 2**31 - 1),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(predictor), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(store), server)
    try:
        port = server.add_insecure_port(f"{options.host}:{options.port}")
    except RuntimeError as exc:
        port, reason = 0, exc
    else:
        reason = "address in use?"
    if not port:
        store.stop()
        if batcher:
            batcher.stop()
        raise ConfigError(f"cannot listen for gRPC on {options.host}:{options.port} ({reason})")
    rest = None
    if options.rest_port is not None:
        try:
            rest = RestServer(predictor, options.host, options.rest_port)
        except ConfigError:
            server.stop(0)
            store.stop()
            if batcher:
                batcher.stop()
            raise
    server.start()
    if rest:
        rest.start()
    store.start_polling(options.poll_wait_s)
    running = RunningServer(server, port, rest, store, batcher, predictor)
    log.info(
        "imfuse serve (development stand-in for TF Serving): gRPC on %s:%d, REST %s, models %s, batching %s",
        options.host,
        port,
        f"on {options.host}:{rest.port}" if rest else "off",
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
