"""Client library for TF Serving (and `imfuse serve`): gRPC by default, REST optional.

Callers send encoded image files and get PNG files back; the serving contract
(docs/CONTRACTS.md) is hidden behind `stylize`, `style_embedding` and
`stylize_with_embedding`. Deadlines on every call, retries with exponential backoff on
UNAVAILABLE only (the one status where resending is safe and useful), and every
failure surfaces as `StatusError` (an `imfuse.errors.ServingError`) naming the target,
the model and the server's message.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable

import grpc
import numpy as np

from imfuse.errors import ConfigError
from imfuse.serving.defaults import MODEL_NAME
from imfuse.serving.status import StatusError, code_from_http

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def _explain(code: grpc.StatusCode, details: str, where: str) -> str:
    hints = {
        grpc.StatusCode.INVALID_ARGUMENT: "the server rejected the request",
        grpc.StatusCode.NOT_FOUND: "not found on the server (check model name, version, label, signature)",
        grpc.StatusCode.UNAVAILABLE: "server unavailable (is it running and reachable?)",
        grpc.StatusCode.DEADLINE_EXCEEDED: "no answer before the deadline (raise --timeout?)",
        grpc.StatusCode.RESOURCE_EXHAUSTED: "request too large or server overloaded",
    }
    return f"{where}: {hints.get(code, 'request failed')} [{code.name}]: {details}"


@dataclass(eq=False)
class _Base:
    """Shared request building for the gRPC and REST clients."""

    target: str
    model_name: str = MODEL_NAME
    version: int | None = None
    version_label: str | None = None
    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 0.2

    def __post_init__(self) -> None:
        if self.version is not None and self.version_label:
            raise ConfigError("give either a version or a version label, not both")
        if self.timeout_s <= 0:
            raise ConfigError(f"timeout must be positive, got {self.timeout_s}")
        if self.retries < 0:
            raise ConfigError(f"retries must be >= 0, got {self.retries}")

    @property
    def _where(self) -> str:
        sel = f" version {self.version}" if self.version is not None else (
            f" label '{self.version_label}'" if self.version_label else "")
        return f"{self.target} model '{self.model_name}'{sel}"

    def _with_retries(self, call: Callable[[], object]):
        for attempt in range(self.retries + 1):
            try:
                return call()
            except StatusError as exc:
                if exc.code is not grpc.StatusCode.UNAVAILABLE or attempt == self.retries:
                    raise
                time.sleep(self.backoff_s * (2**attempt))
        raise AssertionError("unreachable")

    # --- contract-level API (same for both transports) ----------------------------
    def predict(self, inputs: dict[str, np.ndarray], signature_name: str = "") -> dict[str, np.ndarray]:
        raise NotImplementedError  # pragma: no cover - implemented by transports

    @staticmethod
    def _stylize_inputs(content_bytes: bytes, strength: float | None, **more: np.ndarray) -> dict:
        """The content image, `more` (the style image or an embedding) and the strength if given."""
        inputs = {"content_image": np.array([content_bytes], dtype=object), **more}
        if strength is not None:
            inputs["strength"] = np.array([strength], dtype=np.float32)
        return inputs

    def stylize(self, content_bytes: bytes, style_bytes: bytes, strength: float | None = None) -> bytes:
        """Encoded content + style image -> PNG bytes of the stylised content."""
        inputs = self._stylize_inputs(content_bytes, strength, style_image=np.array([style_bytes], dtype=object))
        return bytes(self.predict(inputs, "serving_default")["stylized_image"][0])

    def style_embedding(self, style_bytes: bytes) -> np.ndarray:
        """Style image -> its embedding vector (shape [D]); cache it to restyle cheaply."""
        out = self.predict({"style_image": np.array([style_bytes], dtype=object)}, "style_embedding")
        return np.asarray(out["embedding"], dtype=np.float32)[0]

    def stylize_with_embedding(self, content_bytes: bytes, embedding: np.ndarray, strength: float | None = None) -> bytes:
        """Content image + embedding (e.g. a weighted mix of several styles) -> PNG bytes."""
        emb = np.asarray(embedding, dtype=np.float32)
        if emb.ndim == 1:
            emb = emb[np.newaxis]
        if emb.ndim != 2 or emb.shape[0] != 1:
            raise ConfigError(f"embedding must have shape [D] or [1, D], got {list(emb.shape)}")
        inputs = self._stylize_inputs(content_bytes, strength, embedding=emb)
        return bytes(self.predict(inputs, "stylize_with_embedding")["stylized_image"][0])


@dataclass(eq=False)
class PredictionClient(_Base):
    """gRPC client using tensorflow-serving-api's PredictionService/ModelService stubs."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    def __post_init__(self) -> None:
        super().__post_init__()
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        options = [("grpc.max_send_message_length", self.max_message_bytes),
                   ("grpc.max_receive_message_length", self.max_message_bytes)]
        self._channel = grpc.insecure_channel(self.target, options=options)
        self._predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._model_stub = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _spec(self, spec, signature_name: str = "") -> None:
        spec.name = self.model_name
        if signature_name:
            spec.signature_name = signature_name
        if self.version is not None:
            spec.version.value = self.version
        elif self.version_label:
            spec.version_label = self.version_label

    def _rpc(self, method, request):
        def call():
            try:
                return method(request, timeout=self.timeout_s)
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details() or ""
                raise StatusError(code, _explain(code, details, self._where)) from None

        return self._with_retries(call)

    def predict(self, inputs: dict[str, np.ndarray], signature_name: str = "") -> dict[str, np.ndarray]:
        """Raw Predict: named numpy inputs -> named numpy outputs."""
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest(inputs={k: tf.make_tensor_proto(v) for k, v in inputs.items()})
        self._spec(request.model_spec, signature_name)
        response = self._rpc(self._predict_stub.Predict, request)
        return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}

    def metadata(self) -> dict:
        """Model spec + signature defs: {'name', 'version', 'signatures': {sig: {inputs, outputs}}}."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec)
        response = self._rpc(self._predict_stub.GetModelMetadata, request)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sig_map)
        return summarize_metadata(response.model_spec.name, response.model_spec.version.value, sig_map)

    def status(self) -> list[dict]:
        """[{'version', 'state', 'error_code', 'error_message'}] newest first."""
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec)
        response = self._rpc(self._model_stub.GetModelStatus, request)
        return [
            {
                "version": int(s.version),
                "state": get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
                "error_code": int(s.status.error_code),
                "error_message": s.status.error_message,
            }
            for s in response.model_version_status
        ]


def summarize_metadata(name: str, version: int, sig_map) -> dict:
    """SignatureDefMap -> plain dict of input/output dtypes and shapes."""
    from tensorflow.core.framework import types_pb2

    def tensors(infos) -> dict:
        return {
            k: {"dtype": types_pb2.DataType.Name(v.dtype),
                "shape": None if v.tensor_shape.unknown_rank else [d.size for d in v.tensor_shape.dim]}
            for k, v in sorted(infos.items())
        }

    return {
        "name": name,
        "version": int(version),
        "signatures": {
            k: {"inputs": tensors(s.inputs), "outputs": tensors(s.outputs), "method_name": s.method_name}
            for k, s in sorted(sig_map.signature_def.items())
        },
    }


@dataclass(eq=False)
class RestClient(_Base):
    """Same API over TF Serving's REST JSON (binary inputs as {"b64": ...})."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.base_url = self.target.rstrip("/") if "://" in self.target else f"http://{self.target.rstrip('/')}"
        self._output_names: dict[str, list[str]] = {}

    def _model_url(self) -> str:
        url = f"{self.base_url}/v1/models/{self.model_name}"
        if self.version is not None:
            url += f"/versions/{self.version}"
        elif self.version_label:
            url += f"/labels/{self.version_label}"
        return url

    def _http(self, url: str, body: bytes | None = None) -> bytes:
        def call():
            request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return response.read()
            except urllib.error.HTTPError as exc:
                raw = exc.read()
                try:
                    details = json.loads(raw).get("error", raw.decode("utf-8", "replace"))
                except (ValueError, AttributeError):
                    details = raw.decode("utf-8", "replace")
                code = grpc.StatusCode.RESOURCE_EXHAUSTED if exc.code == 413 else code_from_http(exc.code)
                raise StatusError(code, _explain(code, f"HTTP {exc.code}: {details}", self._where)) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                code = grpc.StatusCode.DEADLINE_EXCEEDED if isinstance(reason, TimeoutError) else grpc.StatusCode.UNAVAILABLE
                raise StatusError(code, _explain(code, str(reason), self._where)) from None

        return self._with_retries(call)

    def predict(self, inputs: dict[str, np.ndarray], signature_name: str = "") -> dict[str, np.ndarray]:
        """Columnar `inputs` request; DT_STRING outputs come back as bytes objects."""
        from imfuse.serving.rest_json import decode_response_body, map_leaves, string_bytes

        def encode(value):
            arr = np.asarray(value)
            if arr.dtype == object or arr.dtype.kind == "S":
                return map_leaves(arr.tolist(), lambda b: {"b64": base64.b64encode(bytes(b)).decode("ascii")})
            return arr.tolist()

        def decode(value) -> np.ndarray:
            probe = value
            while isinstance(probe, list) and probe:
                probe = probe[0]
            if isinstance(probe, str) or (isinstance(probe, dict) and "b64" in probe):
                return np.array(map_leaves(value, lambda v: string_bytes(v, encoding)), dtype=object)
            return np.array(value, dtype=np.float32 if isinstance(probe, float) else None)

        doc = {"inputs": {k: encode(v) for k, v in inputs.items()}}
        if signature_name:
            doc["signature_name"] = signature_name
        raw = self._http(f"{self._model_url()}:predict", json.dumps(doc).encode("utf-8"))
        parsed, encoding = decode_response_body(raw)
        outputs = parsed["outputs"]
        if not isinstance(outputs, dict) or ("b64" in outputs and len(outputs) == 1):
            outputs = {self._single_output_name(signature_name): outputs}
        return {k: decode(v) for k, v in outputs.items()}

    def stylize(self, content_bytes: bytes, style_bytes: bytes, strength: float | None = None) -> bytes:
        """Over REST, prefer the export's `stylize_rest` signature: TF Serving base64-encodes
        only string outputs named `*_bytes`, so that is the one real TF Serving returns as
        valid JSON. Models without it (older exports) fall back to `serving_default`."""
        from imfuse.export import REST_OUTPUT

        if "stylize_rest" not in self._signature_outputs():
            return super().stylize(content_bytes, style_bytes, strength)
        inputs = self._stylize_inputs(content_bytes, strength, style_image=np.array([style_bytes], dtype=object))
        return bytes(self.predict(inputs, "stylize_rest")[REST_OUTPUT][0])

    def _signature_outputs(self) -> dict[str, list[str]]:
        if not self._output_names:
            signatures = self.metadata()["signatures"]
            self._output_names.update({k: sorted(v["outputs"]) for k, v in signatures.items()})
        return self._output_names

    def _single_output_name(self, signature_name: str) -> str:
        """TF Serving leaves a lone output unnamed in JSON; its name comes from metadata (cached)."""
        return (self._signature_outputs().get(signature_name or "serving_default") or ["output"])[0]

    def metadata(self) -> dict:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        doc = json.loads(self._http(f"{self._model_url()}/metadata"))
        sig_map = json_format.ParseDict(doc["metadata"]["signature_def"], get_model_metadata_pb2.SignatureDefMap())
        return summarize_metadata(doc["model_spec"]["name"], int(doc["model_spec"].get("version") or 0), sig_map)

    def status(self) -> list[dict]:
        doc = json.loads(self._http(self._model_url()))
        return [
            {
                "version": int(s["version"]),
                "state": s["state"],
                "error_code": _code_value(s.get("status", {}).get("error_code", "OK")),
                "error_message": s.get("status", {}).get("error_message", ""),
            }
            for s in doc["model_version_status"]
        ]


def _code_value(name: str) -> int:
    """REST status names a code ("NOT_FOUND"); gRPC's status carries its number (5): the same here."""
    import grpc

    code = getattr(grpc.StatusCode, str(name), grpc.StatusCode.UNKNOWN)
    return int(code.value[0]) if isinstance(code, grpc.StatusCode) else 2


def make_client(target: str, rest: bool = False, **kwargs) -> _Base:
    """PredictionClient (gRPC) or RestClient, same API."""
    return RestClient(target, **kwargs) if rest else PredictionClient(target, **kwargs)
