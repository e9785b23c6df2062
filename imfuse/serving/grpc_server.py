"""gRPC servicers for TF Serving's PredictionService and ModelService.

They use the generated base classes and messages from tensorflow-serving-api, so the
wire protocol is TF Serving's own; any client written for TF Serving works unchanged.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from imfuse.errors import ImfuseError
from imfuse.serving.admin import ModelRoots
from imfuse.serving.config import models_from_proto
from imfuse.serving.metrics import ServingMetrics
from imfuse.serving.model_store import ModelStore
from imfuse.serving.predict import Predictor
from imfuse.serving.status import StatusError, invalid_argument, reply_error
from imfuse.serving.tensors import check_request_protos, to_numpy

log = logging.getLogger("imfuse.serving")

# tensorflow.error.Code values used in StatusProto.
_TF_OK, _TF_UNKNOWN = 0, 2


def spec_choice(spec) -> tuple[int | None, str | None]:
    """(version, label) from a ModelSpec's version_choice oneof."""
    which = spec.WhichOneof("version_choice")
    if which == "version":
        return int(spec.version.value), None
    if which == "version_label":
        return None, spec.version_label
    return None, None


def _guarded(method: Callable) -> Callable:
    """Map errors to status codes (server faults generic, see status.reply_error), record
    metrics, never crash."""
    name = method.__name__

    def wrapper(self, request, context):
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return method(self, request, context)
        except Exception as exc:  # noqa: BLE001 - the server never dies from a request
            error = reply_error(exc, f"gRPC {name}")
            code = error.code
            context.abort(error.code, error.message)
        finally:
            self.metrics.record(self.api, name, code.name, time.perf_counter() - start)

    wrapper.__name__ = name
    return wrapper


def metadata_response(store: ModelStore, spec, fields) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """GetModelMetadata: only 'signature_def' is defined, as in TF Serving."""
    if not fields:
        raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
    unsupported = sorted(set(fields) - {"signature_def"})
    if unsupported:
        raise invalid_argument(f"metadata field(s) {unsupported} not supported; use 'signature_def'")
    version, label = spec_choice(spec)
    servable = store.resolve(spec.name, version, label)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    sig_map = get_model_metadata_pb2.SignatureDefMap(signature_def=servable.signature_defs)
    response.metadata["signature_def"].Pack(sig_map)
    return response


def status_response(store: ModelStore, spec, detail: bool = False) -> get_model_status_pb2.GetModelStatusResponse:
    """GetModelStatus. A failed load's paths and exception text stay in the server log
    unless `detail` (the loopback admin port); public ports get its error id."""
    version, label = spec_choice(spec)
    states = store.version_states(spec.name, version, label)
    response = get_model_status_pb2.GetModelStatusResponse()
    for v, st in sorted(states.items(), reverse=True):
        entry = response.model_version_status.add()
        entry.version = v
        entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(st.state)
        entry.status.error_code = _TF_UNKNOWN if st.error else _TF_OK
        entry.status.error_message = st.error if detail else st.public_error(v)
    return response


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata; Classify/Regress/MultiInference stay UNIMPLEMENTED."""

    api = "grpc"

    def __init__(self, predictor: Predictor, metrics: ServingMetrics):
        self.predictor = predictor
        self.metrics = metrics

    @_guarded
    def Predict(self, request, context):
        self.predictor.check_size(request.ByteSize())
        spec = request.model_spec
        version, label = spec_choice(spec)
        limits = self.predictor.limits
        check_request_protos(request.inputs, limits.max_tensor_elements, limits.max_string_elements)
        inputs = {k: to_numpy(v) for k, v in request.inputs.items()}
        result = self.predictor.predict(
            spec.name,
            inputs,
            version=version,
            label=label,
            signature_name=spec.signature_name,
            output_filter=tuple(request.output_filter),
        )
        response = predict_pb2.PredictResponse(outputs={k: tf.make_tensor_proto(v) for k, v in result.outputs.items()})
        response.model_spec.name = result.name
        response.model_spec.version.value = result.version
        response.model_spec.signature_name = result.signature_name
        return response

    @_guarded
    def GetModelMetadata(self, request, context):
        return metadata_response(self.predictor.store, request.model_spec, list(request.metadata_field))


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus, plus HandleReloadConfigRequest only when given model roots.

    The Predict port gets one without roots (reload is UNIMPLEMENTED there, and a failed
    load's status names only an error id); the loopback admin port (see admin.py) gets
    one with them, and its GetModelStatus keeps the load error's detail.
    """

    def __init__(self, store: ModelStore, metrics: ServingMetrics, roots: ModelRoots | None = None):
        self.store = store
        self.metrics = metrics
        self.roots = roots
        self.api = "grpc" if roots is None else "grpc-admin"

    @_guarded
    def GetModelStatus(self, request, context):
        return status_response(self.store, request.model_spec, detail=self.roots is not None)

    @_guarded
    def HandleReloadConfigRequest(self, request, context):
        if self.roots is None:
            raise StatusError(
                grpc.StatusCode.UNIMPLEMENTED,
                "model management is not served on this port; start imfuse serve with "
                "--enable-model-management and use its admin port (127.0.0.1 only)",
            )
        try:
            models = models_from_proto(request.config, "ReloadConfigRequest")
        except ImfuseError as exc:
            raise invalid_argument(str(exc)) from None
        models = self.roots.confine(models)  # before anything is unloaded; resolved paths from here on
        log.info("reloading model config: %s", ", ".join(f"{m.name} <- {m.base_path}" for m in models))
        self.store.reload(models)
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = _TF_OK
        return response
