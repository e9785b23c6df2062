"""TF Serving's REST API on Starlette, served by uvicorn in a background thread.

Routes (as in TF Serving):
  GET  /v1/models/NAME[/versions/V | /labels/L]            model status
  GET  /v1/models/NAME[/versions/V | /labels/L]/metadata   signature defs
  POST /v1/models/NAME[/versions/V | /labels/L]:predict    Predict (row or columnar JSON)
  GET  /monitoring/prometheus/metrics                      Prometheus text format
Errors are `{"error": "..."}` with the HTTP status TF Serving uses for the gRPC code.

uvicorn (h11) gives what the stdlib server lacked: an idle keep-alive timeout, a bound
on concurrent connections and tasks (503 beyond it), and strict HTTP parsing (a
negative or non-numeric Content-Length is a 400 before the app runs); rest_protocol.py
adds a deadline for request headers. The app adds a body size limit (413, checked from
Content-Length before reading and again while reading), a deadline for reading the
body (408) and JSON element/depth limits (400). Model work runs in worker threads.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field

import anyio
import grpc
import uvicorn
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

from imfuse.errors import ConfigError
from imfuse.serving.grpc_server import metadata_response, spec_choice, status_response
from imfuse.serving.metrics import CONTENT_TYPE, DEFAULT_PATH
from imfuse.serving.predict import Predictor
from imfuse.serving.rest_json import JsonLimits, parse_predict_body, write_predict_response
from imfuse.serving.rest_protocol import with_header_timeout
from imfuse.serving.status import StatusError, invalid_argument, reply_error

_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>-?\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?:/(?P<metadata>metadata)|:(?P<verb>[a-zA-Z]+))?/?$"
)
# Canonical codes for the statuses the HTTP layer produces itself (for the metrics).
_HTTP_CODES = {400: "INVALID_ARGUMENT", 405: "UNIMPLEMENTED", 408: "DEADLINE_EXCEEDED", 413: "RESOURCE_EXHAUSTED",
               499: "CANCELLED"}


@dataclass(frozen=True)
class RestOptions:
    """REST transport knobs (flags of `imfuse serve`)."""

    timeout_keep_alive_s: int = 5  # idle keep-alive connections are closed after this
    header_timeout_s: float = 10.0  # deadline for a request's line and headers (rest_protocol.py)
    body_timeout_s: float = 30.0  # deadline for reading a request body
    limit_concurrency: int = 64  # connections + in-flight requests; 503 beyond
    graceful_shutdown_s: int = 5
    json_limits: JsonLimits = field(default_factory=JsonLimits)
    metrics_path: str | None = DEFAULT_PATH  # None: no metrics endpoint

    def __post_init__(self) -> None:
        if (self.limit_concurrency < 1 or self.body_timeout_s <= 0 or self.header_timeout_s <= 0
                or self.timeout_keep_alive_s < 1):
            raise ConfigError(
                "REST limits must be positive (limit_concurrency, header/body timeouts, timeout_keep_alive_s)")


class HttpError(Exception):
    """A transport-level refusal with its own HTTP status (413, 408, 405, 400)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _spec(match) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=match["name"])
    if match["version"] is not None:
        spec.version.value = int(match["version"])
    elif match["label"] is not None:
        spec.version_label = match["label"]
    return spec


def _to_json(message) -> dict:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def metadata_json(response: get_model_metadata_pb2.GetModelMetadataResponse) -> dict:
    """TF Serving's REST metadata body: the SignatureDefMap Any unpacked to JSON."""
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sig_map)
    return {"model_spec": _to_json(response.model_spec), "metadata": {"signature_def": _to_json(sig_map)}}


def _json_response(status: int, doc: dict, close: bool = False) -> Response:
    headers = {"Connection": "close"} if close else None
    return Response(json.dumps(doc, indent=1), status_code=status, media_type="application/json", headers=headers)


async def read_body(request: Request, max_bytes: int | None, timeout_s: float) -> bytes:
    """The request body, refused early when too large (413) or too slow (408)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():  # uvicorn/h11 already refuses these; kept for other servers
            raise HttpError(400, f"Content-Length must be a non-negative integer, got {declared[:40]!r}")
        if max_bytes and int(declared) > max_bytes:
            raise HttpError(413, f"request of {declared} bytes exceeds the server limit of {max_bytes} bytes (--max-request-bytes)")
    chunks, total = [], 0
    try:
        with anyio.fail_after(timeout_s):
            async for chunk in request.stream():
                total += len(chunk)
                if max_bytes and total > max_bytes:
                    raise HttpError(413, f"request body exceeds the server limit of {max_bytes} bytes (--max-request-bytes)")
                chunks.append(chunk)
    except TimeoutError:
        raise HttpError(408, f"request body not received within {timeout_s:g} s") from None
    return b"".join(chunks)


def _route(method: str, match) -> str:
    if match is None:
        return "unknown"
    if method == "POST" and match["verb"] == "predict":
        return "Predict"
    if method == "GET" and not match["verb"]:
        return "GetModelMetadata" if match["metadata"] else "GetModelStatus"
    return "unknown"


def build_app(predictor: Predictor, options: RestOptions) -> Starlette:
    """The Starlette app: TF Serving's routes plus the metrics endpoint."""
    metrics = predictor.metrics

    def get_doc(match) -> dict:
        if match["metadata"]:
            return metadata_json(metadata_response(predictor.store, _spec(match), ["signature_def"]))
        return _to_json(status_response(predictor.store, _spec(match)))

    def predict_body(match, body: bytes) -> bytes:
        servable = predictor.store.resolve(match["name"], *spec_choice(_spec(match)))
        key, inputs, fmt = parse_predict_body(body, servable.signature_def, options.json_limits)
        result = predictor.predict(servable.name, inputs, version=servable.version, signature_name=key)
        return write_predict_response(result.outputs, fmt)

    async def handle(request: Request, match) -> Response:
        if match is None:
            raise StatusError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {request.method} {request.url.path[:200]}")
        if request.method == "GET":
            if match["verb"]:
                raise invalid_argument(f"use POST for :{match['verb']}")
            return _json_response(200, await run_in_threadpool(get_doc, match))
        if request.method != "POST":
            raise HttpError(405, f"method {request.method} is not allowed; use GET or POST")
        if match["verb"] in ("classify", "regress"):
            raise StatusError(grpc.StatusCode.UNIMPLEMENTED, f":{match['verb']} is not implemented by imfuse serve")
        if match["verb"] != "predict":
            raise StatusError(grpc.StatusCode.NOT_FOUND, f"Malformed request: POST {request.url.path[:200]}")
        body = await read_body(request, predictor.max_request_bytes, options.body_timeout_s)
        content = await run_in_threadpool(predict_body, match, body)
        return Response(content, media_type="application/json")

    async def api(request: Request) -> Response:
        start = time.perf_counter()
        match = _PATH.match(request.url.path)
        code = "OK"
        try:
            response = await handle(request, match)
        except ClientDisconnect:
            code, response = "CANCELLED", Response(status_code=499)  # nobody is listening
        except HttpError as exc:
            code = _HTTP_CODES.get(exc.status, "UNKNOWN")
            response = _json_response(exc.status, {"error": exc.message}, close=exc.status in (408, 413))
        except Exception as exc:  # noqa: BLE001 - never die from a request
            error = reply_error(exc, f"REST {request.method} {request.url.path[:200]}")
            code, response = error.code.name, _json_response(error.http_status, {"error": error.message})
        metrics.record("rest", _route(request.method, match), code, time.perf_counter() - start)
        metrics.http_responses.labels(str(response.status_code)).inc()
        return response

    async def prometheus(request: Request) -> Response:
        return Response(metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    routes = []
    if options.metrics_path:
        routes.append(Route(options.metrics_path, prometheus, methods=["GET"]))
    # Every common method reaches `api`, which answers the unsupported ones in JSON (405).
    routes.append(Route("/{path:path}", api, methods=["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    return Starlette(routes=routes)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen for REST on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class RestServer:
    """uvicorn serving the REST app on host:port from a background thread.

    The socket is bound in the constructor (so port 0 resolves at once and a taken
    port fails before anything starts); `start` waits until uvicorn accepts requests.
    """

    def __init__(self, predictor: Predictor, host: str, port: int, options: RestOptions = RestOptions()):
        self._sock = _bind(host, port)
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            build_app(predictor, options),
            http=with_header_timeout(options.header_timeout_s),
            loop="asyncio",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            server_header=False,
            timeout_keep_alive=options.timeout_keep_alive_s,
            limit_concurrency=options.limit_concurrency,
            timeout_graceful_shutdown=options.graceful_shutdown_s,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="imfuse-rest", daemon=True
        )

    def start(self, timeout_s: float = 15.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(f"REST server on port {self.port} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self._sock.close()
