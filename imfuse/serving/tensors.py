"""TensorProto <-> numpy, and request checking against a SignatureDef.

Both transports (gRPC protos, REST JSON) end up as `dict[str, np.ndarray]`; checking
names, dtypes and shapes here, before the graph runs, turns client mistakes into
INVALID_ARGUMENT with a message instead of a TensorFlow stack trace.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from imfuse.serving.status import invalid_argument


def dtype_name(enum_value: int) -> str:
    """DT_FLOAT etc. for messages and metadata."""
    return types_pb2.DataType.Name(enum_value)


# Which repeated field holds a dtype's values, and how many field entries per element.
_VALUE_FIELDS: dict[int, tuple[str, int]] = {
    types_pb2.DT_FLOAT: ("float_val", 1),
    types_pb2.DT_DOUBLE: ("double_val", 1),
    types_pb2.DT_INT32: ("int_val", 1),
    types_pb2.DT_INT16: ("int_val", 1),
    types_pb2.DT_INT8: ("int_val", 1),
    types_pb2.DT_UINT8: ("int_val", 1),
    types_pb2.DT_UINT16: ("int_val", 1),
    types_pb2.DT_HALF: ("half_val", 1),
    types_pb2.DT_BFLOAT16: ("half_val", 1),
    types_pb2.DT_INT64: ("int64_val", 1),
    types_pb2.DT_UINT32: ("uint32_val", 1),
    types_pb2.DT_UINT64: ("uint64_val", 1),
    types_pb2.DT_BOOL: ("bool_val", 1),
    types_pb2.DT_STRING: ("string_val", 1),
    types_pb2.DT_COMPLEX64: ("scomplex_val", 2),
    types_pb2.DT_COMPLEX128: ("dcomplex_val", 2),
}
_MAX_RANK = 32
_INT64_MAX = (1 << 63) - 1


def declared_elements(proto, name: str, limit: int) -> int:
    """Element count of a TensorProto's declared shape, refusing it before any allocation.

    Negative dimensions, products over int64 (TensorFlow's own bound) and counts over
    `limit` are INVALID_ARGUMENT; nothing is allocated for the shape itself.
    """
    shape = proto.tensor_shape
    if shape.unknown_rank:
        raise invalid_argument(f"input '{name}': a TensorProto needs a known shape")
    if len(shape.dim) > _MAX_RANK:
        raise invalid_argument(f"input '{name}': rank {len(shape.dim)} is over the limit of {_MAX_RANK}")
    dims = [d.size for d in shape.dim]
    for size in dims:
        if size < 0:
            raise invalid_argument(f"input '{name}': shape dimension {size} is negative")
    count = math.prod(dims)  # at most _MAX_RANK int64 factors: a small Python int
    if count > _INT64_MAX:
        raise invalid_argument(f"input '{name}': shape {dims} overflows int64")
    if count > limit:
        raise invalid_argument(
            f"input '{name}': shape {dims} declares {count} elements, more than "
            f"the server's per-request limit of {limit}"
        )
    return count


def check_tensor_proto(proto, name: str, numeric_limit: int, string_limit: int) -> tuple[int, bool]:
    """Check a wire tensor's declared shape against the values it carries.

    Returns (element count, is DT_STRING). Runs before `to_numpy`, which would otherwise
    expand a few bytes declaring a huge shape into a huge array (make_ndarray pads by
    repeating the last value). Accepted: exactly one value per element, or a single
    value filling the whole shape (what tf.make_tensor_proto(scalar, shape=...) writes);
    anything else is INVALID_ARGUMENT.
    """
    entry = _VALUE_FIELDS.get(proto.dtype)
    if entry is None:
        known = proto.dtype in types_pb2.DataType.values()
        raise invalid_argument(f"input '{name}': dtype {dtype_name(proto.dtype) if known else proto.dtype} is not supported")
    field, per_element = entry
    is_string = proto.dtype == types_pb2.DT_STRING
    count = declared_elements(proto, name, string_limit if is_string else numeric_limit)
    if proto.tensor_content and is_string:
        raise invalid_argument(f"input '{name}': DT_STRING values go in string_val, not tensor_content")
    if proto.tensor_content:
        itemsize = tf.dtypes.as_dtype(proto.dtype).size
        if len(proto.tensor_content) != count * itemsize:
            raise invalid_argument(
                f"input '{name}': tensor_content has {len(proto.tensor_content)} bytes, shape "
                f"{[d.size for d in proto.tensor_shape.dim]} of {dtype_name(proto.dtype)} needs {count * itemsize}"
            )
        return count, is_string
    supplied = len(getattr(proto, field))
    if supplied % per_element:
        raise invalid_argument(f"input '{name}': {field} has an odd number of entries for a complex tensor")
    supplied //= per_element
    if supplied != count and not (supplied == 1 and count > 1):
        raise invalid_argument(
            f"input '{name}': shape {[d.size for d in proto.tensor_shape.dim]} declares {count} element(s), "
            f"the request carries {supplied}"
        )
    return count, is_string


def check_request_protos(protos: Mapping[str, object], numeric_limit: int, string_limit: int) -> None:
    """check_tensor_proto over all inputs of a request; the limits also bound the totals."""
    totals = {False: 0, True: 0}
    for name in sorted(protos):
        count, is_string = check_tensor_proto(protos[name], name, numeric_limit, string_limit)
        totals[is_string] += count
    for is_string, limit in ((False, numeric_limit), (True, string_limit)):
        if totals[is_string] > limit:
            kind = "string" if is_string else "numeric"
            raise invalid_argument(f"the request's inputs declare {totals[is_string]} {kind} elements in total, over the limit of {limit}")


def to_numpy(proto) -> np.ndarray:
    """A TensorProto as a numpy array (DT_STRING -> object array of bytes).

    Call check_tensor_proto first: it bounds what this may allocate.
    """
    try:
        return tf.make_ndarray(proto)
    except Exception as exc:  # noqa: BLE001 - malformed protos come from clients
        raise invalid_argument(f"malformed TensorProto: {exc}") from None


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


def check_inputs(signature_name: str, signature_def, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validate inputs against the SignatureDef and fill declared defaults.

    Returns arrays cast to the signature's dtypes. A default whose first dimension is 1
    is tiled to the request's batch so a [batch] signature input stays consistent.
    """
    known = dict(signature_def.inputs)
    unknown = sorted(set(inputs) - set(known))
    if unknown:
        raise invalid_argument(
            f"input tensor alias(es) {unknown} not found in signature '{signature_name}'; "
            f"it takes {sorted(known)}",
        )
    defaults = dict(signature_def.defaults)
    missing = sorted(set(known) - set(inputs) - set(defaults))
    if missing:
        raise invalid_argument(
            f"signature '{signature_name}' needs input(s) {missing}; request has {sorted(inputs)}",
        )
    checked: dict[str, np.ndarray] = {}
    for name, value in inputs.items():
        info = known[name]
        want = tf.dtypes.as_dtype(info.dtype)
        arr = np.asarray(value)
        if want == tf.string:
            if arr.dtype.kind not in ("O", "S", "U"):
                raise invalid_argument(
                    f"input '{name}' must be {dtype_name(info.dtype)} (encoded bytes), got {arr.dtype}",
                )
            arr = arr.astype(object)
        else:
            if arr.dtype.kind in ("O", "S", "U"):
                raise invalid_argument(
                    f"input '{name}' must be {dtype_name(info.dtype)}, got strings/bytes",
                )
            try:
                arr = arr.astype(want.as_numpy_dtype, casting="same_kind")
            except TypeError:
                raise invalid_argument(
                    f"input '{name}' must be {dtype_name(info.dtype)}, got {arr.dtype}",
                ) from None
        if not _shape_ok(info.tensor_shape, arr.shape):
            raise invalid_argument(
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
        raise invalid_argument(
            f"inputs disagree on batch size: { {k: (a.shape[0] if a.ndim else None) for k, a in inputs.items()} }",
        )
    return sizes.pop() if sizes else 1
