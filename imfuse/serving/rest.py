"""TF Serving's REST API on a stdlib threading HTTP server.

Routes (as in TF Serving):
  GET  /v1/models/NAME[/versions/V | /labels/L]            model status
  GET  /v1/models/NAME[/versions/V | /labels/L]/metadata   signature defs
  POST /v1/models/NAME[/versions/V | /labels/L]:predict    Predict (row or columnar JSON)
Errors are `{"error": "..."}` with the HTTP status TF Serving uses for the gRPC code.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

from imfuse.errors import ConfigError, ImfuseError
from imfuse.serving.grpc_server import metadata_response, status_response
from imfuse.serving.predict import Predictor
from imfuse.serving.rest_json import parse_predict_body, write_predict_response
from imfuse.serving.status import StatusError

log = logging.getLogger("imfuse.serving")

_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>-?\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?:/(?P<metadata>metadata)|:(?P<verb>[a-zA-Z]+))?/?$"
)


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


def make_handler(predictor: Predictor):
    """Request handler class bound to a Predictor."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "imfuse-serve"

        def log_message(self, format, *args):  # noqa: A002 - stdlib signature
            log.debug("rest %s - %s", self.address_string(), format % args)

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._send(status, json.dumps({"error": message}).encode("utf-8"))

        def _guard(self, fn) -> None:
            try:
                fn()
            except StatusError as exc:
                self._error(exc.http_status, exc.message)
            except ImfuseError as exc:
                self._error(400, str(exc))
            except Exception as exc:  # noqa: BLE001 - never die from a request
                log.exception("internal error in REST %s %s", self.command, self.path)
                self._error(500, f"{type(exc).__name__}: {exc}")

        def _match(self):
            match = _PATH.match(self.path.split("?", 1)[0])
            if match is None:
                raise StatusError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {self.command} {self.path}")
            return match

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            def handle():
                match = self._match()
                if match["verb"]:
                    raise StatusError(grpc.StatusCode.INVALID_ARGUMENT, f"use POST for :{match['verb']}")
                if match["metadata"]:
                    response = metadata_response(predictor.store, _spec(match), ["signature_def"])
                    body = metadata_json(response)
                else:
                    body = _to_json(status_response(predictor.store, _spec(match)))
                self._send(200, json.dumps(body, indent=1).encode("utf-8"))

            self._guard(handle)

        def do_POST(self) -> None:  # noqa: N802 - stdlib naming
            def handle():
                length = int(self.headers.get("Content-Length") or 0)
                if predictor.max_request_bytes and length > predictor.max_request_bytes:
                    self.close_connection = True  # don't read a body we refuse
                    self._error(
                        413,
                        f"request of {length} bytes exceeds the server limit of "
                        f"{predictor.max_request_bytes} bytes (--max-request-bytes)",
                    )
                    return
                body = self.rfile.read(length) if length else b""
                match = self._match()
                if match["verb"] in ("classify", "regress"):
                    raise StatusError(grpc.StatusCode.UNIMPLEMENTED, f":{match['verb']} is not implemented by imfuse serve")
                if match["verb"] != "predict":
                    raise StatusError(grpc.StatusCode.NOT_FOUND, f"Malformed request: POST {self.path}")
                spec = _spec(match)
                version = spec.version.value if spec.HasField("version") else None
                servable = predictor.store.resolve(spec.name, version, spec.version_label or None)
                key, inputs, fmt = parse_predict_body(body, servable.signature_def)
                result = predictor.predict(servable.name, inputs, version=servable.version, signature_name=key)
                self._send(200, write_predict_response(result.outputs, fmt))

            self._guard(handle)

    return Handler


class RestServer:
    """ThreadingHTTPServer on host:port serving the REST API in a background thread."""

    def __init__(self, predictor: Predictor, host: str, port: int):
        try:
            self.httpd = ThreadingHTTPServer((host, port), make_handler(predictor))
        except OSError as exc:
            raise ConfigError(f"cannot listen for REST on {host}:{port}: {exc.strerror or exc}") from None
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="imfuse-rest", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
