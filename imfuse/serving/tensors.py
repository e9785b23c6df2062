"""TensorProto <-> numpy, and request checking against a SignatureDef.

Both transports (gRPC protos, REST JSON) end up as `dict[str, np.ndarray]`; checking
names, dtypes and shapes here, before the graph runs, turns client mistakes into
INVALID_ARGUMENT with a message instead of a TensorFlow stack trace.
"""

from __future__ import annotations

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from imfuse.serving.status import StatusError


def dtype_name(enum_value: int) -> str:
    """DT_FLOAT etc. for messages and metadata."""
    return types_pb2.DataType.Name(enum_value)


def to_numpy(proto) -> np.ndarray:
    """A TensorProto as a numpy array (DT_STRING -> object array of bytes)."""
    try:
        return tf.make_ndarray(proto)
    except Exception as exc:  # noqa: BLE001 - malformed protos come from clients
        raise StatusError(grpc.StatusCode.INVALID_ARGUMENT, f"malformed TensorProto: {exc}") from None


def to_proto(array: np.ndarray):
    """A numpy array as a TensorProto (bytes objects become DT_STRING)."""
    return tf.make_tensor_proto(array)


def _shape_ok(expected, actual: tuple[int, ...]) -> bool:
    if expected.unknown_rank:
        return True
    dims = [d.size for d in expected.dim]
    if len(dims) != len(actual):
        return False
    return all(d < 0 or d == a for d, a in zip(dims, actual))


def _shape_text(tensor_info) -> str:
    if tensor_info.tensor_shape.unknown_rank:
        return "[?]"
    return "[" + ", ".join(str(d.size) for d in tensor_info.tensor_shape.dim) + "]"


def _np_dtype(enum_value: int):
    return tf.dtypes.as_dtype(enum_value).as_numpy_dtype


def check_inputs(signature_name: str, signature_def, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validate inputs against the SignatureDef and fill declared defaults.

    Returns arrays cast to the signature's dtypes. A default whose first dimension is 1
    is tiled to the request's batch so a [batch] signature input stays consistent.
    """
    known = dict(signature_def.inputs)
    unknown = sorted(set(inputs) - set(known))
    if unknown:
        raise StatusError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input tensor alias(es) {unknown} not found in signature '{signature_name}'; "
            f"it takes {sorted(known)}",
        )
    defaults = dict(signature_def.defaults)
    missing = sorted(set(known) - set(inputs) - set(defaults))
    if missing:
        raise StatusError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"signature '{signature_name}' needs input(s) {missing}; request has {sorted(inputs)}",
        )
    checked: dict[str, np.ndarray] = {}
    for name, value in inputs.items():
        info = known[name]
        want = tf.dtypes.as_dtype(info.dtype)
        arr = np.asarray(value)
        if want == tf.string:
            if arr.dtype.kind not in ("O", "S", "U"):
                raise StatusError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"input '{name}' must be {dtype_name(info.dtype)} (encoded bytes), got {arr.dtype}",
                )
            arr = arr.astype(object)
        else:
            if arr.dtype.kind in ("O", "S", "U"):
                raise StatusError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"input '{name}' must be {dtype_name(info.dtype)}, got strings/bytes",
                )
            try:
                arr = arr.astype(_np_dtype(info.dtype), casting="same_kind")
            except TypeError:
                raise StatusError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"input '{name}' must be {dtype_name(info.dtype)}, got {arr.dtype}",
                ) from None
        if not _shape_ok(info.tensor_shape, arr.shape):
            raise StatusError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input '{name}' has shape {list(arr.shape)}, signature '{signature_name}' "
                f"expects {_shape_text(info)}",
            )
        checked[name] = arr
    batch = next((a.shape[0] for a in checked.values() if a.ndim > 0), None)
    for name in set(known) - set(inputs):
        default = to_numpy(defaults[name])
        if batch is not None and default.ndim > 0 and default.shape[0] == 1 and batch != 1:
            default = np.repeat(default, batch, axis=0)
        checked[name] = default
    return checked


def batch_size_of(inputs: dict[str, np.ndarray]) -> int:
    """Leading dimension shared by every input (1 for scalars-only requests)."""
    sizes = {a.shape[0] for a in inputs.values() if a.ndim > 0}
    if len(sizes) > 1:
        raise StatusError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"inputs disagree on batch size: { {k: (a.shape[0] if a.ndim else None) for k, a in inputs.items()} }",
        )
    return sizes.pop() if sizes else 1
