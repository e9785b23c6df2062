"""TF Serving's REST JSON <-> tensors (tensorflow_serving/util/json_tensor.cc semantics).

Requests: `{"instances": [...]}` (row) or `{"inputs": ...}` (columnar); binary strings
as `{"b64": "..."}`. Responses: `predictions` / `outputs`; DT_STRING outputs whose name
ends in `_bytes` are written as `{"b64": ...}`, other DT_STRING outputs as raw JSON
strings holding the bytes unchanged (what TF Serving's writer emits; such a body is not
valid UTF-8 when the bytes are binary, so `client.RestClient` reads it byte-exactly).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass

import grpc
import numpy as np
import tensorflow as tf

from imfuse.serving.status import StatusError, invalid_argument

BYTES_SUFFIX = "_bytes"


def is_b64_object(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _leaf(value, is_string: bool):
    if is_string:
        if is_b64_object(value):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise invalid_argument("Unable to base64 decode") from None
        if isinstance(value, str):
            return value.encode("utf-8")
        raise invalid_argument(f"JSON value {json.dumps(value)[:80]} is not of expected type DT_STRING")
    if isinstance(value, dict):
        raise invalid_argument(f"JSON object {json.dumps(value)[:80]} is only allowed (as b64) for DT_STRING inputs")
    return value


def map_leaves(value, fn):
    """`fn` applied to every non-list value of nested lists (the lists' shape kept)."""
    return [map_leaves(v, fn) for v in value] if isinstance(value, list) else fn(value)


def json_to_array(value, dtype_enum: int, name: str) -> np.ndarray:
    """One JSON value (scalar or nested lists) as an array of the signature's dtype."""
    dtype = tf.dtypes.as_dtype(dtype_enum)
    is_string = dtype == tf.string
    try:
        converted = map_leaves(value, lambda leaf: _leaf(leaf, is_string))
    except StatusError as exc:
        raise invalid_argument(f"input '{name}': {exc.message}") from None
    try:
        if is_string:
            arr = np.array(converted, dtype=object)
            if arr.dtype != object or any(not isinstance(x, bytes) for x in arr.flat):
                raise ValueError("ragged")
            return arr
        if dtype == tf.bool:
            return np.array(converted, dtype=bool)
        arr = np.array(converted)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"values of type {arr.dtype}")
        return arr.astype(dtype.as_numpy_dtype)
    except ValueError as exc:
        raise invalid_argument(f"input '{name}': cannot build a {dtype.name} tensor from the JSON value ({exc})") from None


def _single_input(signature_def, signature_name: str) -> str:
    required = [k for k in signature_def.inputs if k not in signature_def.defaults]
    if len(signature_def.inputs) == 1:
        return next(iter(signature_def.inputs))
    if len(required) == 1:
        return required[0]
    raise invalid_argument(
        f"a plain value/list was sent, but signature '{signature_name}' takes several inputs "
        f"{sorted(signature_def.inputs)}: send a JSON object keyed by input name"
    )


@dataclass(frozen=True)
class JsonLimits:
    """Bounds on a request document: values (array items, object members, scalars) and nesting.

    The value count is first bounded from the raw bytes (commas), so a body that would
    expand into millions of Python objects is refused before it is parsed.
    """

    max_elements: int = 1 << 20
    max_depth: int = 32


def load_json(body: bytes, limits: JsonLimits = JsonLimits()):
    """json.loads with the element and depth limits; every violation is INVALID_ARGUMENT."""
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    if body.count(b",") + 1 > limits.max_elements:
        raise invalid_argument(f"JSON document has more than {limits.max_elements} values (the server's limit)")
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise invalid_argument(f"JSON Parse error: {exc}") from None
    except RecursionError:
        raise invalid_argument(f"JSON document is nested deeper than {limits.max_depth} levels (the server's limit)") from None
    count, stack = 0, [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if depth > limits.max_depth:
            raise invalid_argument(f"JSON document is nested deeper than {limits.max_depth} levels (the server's limit)")
        if count > limits.max_elements:
            raise invalid_argument(f"JSON document has more than {limits.max_elements} values (the server's limit)")
        if isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
    return doc


def parse_predict_body(
    body: bytes, signature_for, limits: JsonLimits = JsonLimits()
) -> tuple[str, dict[str, np.ndarray], str]:
    """Parse a :predict body. `signature_for(name)` returns (key, SignatureDef).

    Returns (signature key, inputs, format) where format is 'row' or 'columnar'.
    """
    doc = load_json(body, limits)
    if not isinstance(doc, dict):
        raise invalid_argument("JSON Value: request body is not an object")
    signature_name = doc.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid_argument("'signature_name' key must be a string value")
    key, sig = signature_for(signature_name)
    if ("instances" in doc) == ("inputs" in doc):
        raise invalid_argument("expecting exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    if "instances" in doc:
        return key, _parse_instances(doc["instances"], sig, key), "row"
    return key, _parse_inputs(doc["inputs"], sig, key), "columnar"


def _check_names(names, sig, key: str) -> None:
    for name in names:
        if name not in sig.inputs:
            raise invalid_argument(f"JSON object: does not have named input: {name} (signature '{key}')")


def _parse_instances(instances, sig, key: str) -> dict[str, np.ndarray]:
    if not isinstance(instances, list) or not instances:
        raise invalid_argument("'instances' must be a non-empty list")
    named = isinstance(instances[0], dict) and not is_b64_object(instances[0])
    if not named:
        name = _single_input(sig, key)
        if any(isinstance(x, dict) and not is_b64_object(x) for x in instances):
            raise invalid_argument("'instances' mixes objects and plain values")
        return {name: json_to_array(instances, sig.inputs[name].dtype, name)}
    columns: dict[str, list] = {}
    keys = set(instances[0])
    for i, item in enumerate(instances):
        if not isinstance(item, dict) or is_b64_object(item):
            raise invalid_argument(f"expecting object but got value/list at item {i} of 'instances'")
        if set(item) != keys:
            raise invalid_argument(f"item {i} of 'instances' has keys {sorted(item)}, item 0 has {sorted(keys)}")
        _check_names(item, sig, key)
        for name, value in item.items():
            columns.setdefault(name, []).append(value)
    return {name: json_to_array(values, sig.inputs[name].dtype, name) for name, values in columns.items()}


def _parse_inputs(inputs, sig, key: str) -> dict[str, np.ndarray]:
    if not isinstance(inputs, dict) or is_b64_object(inputs):
        name = _single_input(sig, key)
        return {name: json_to_array(inputs, sig.inputs[name].dtype, name)}
    _check_names(inputs, sig, key)
    return {name: json_to_array(value, sig.inputs[name].dtype, name) for name, value in inputs.items()}


# --- response writing -----------------------------------------------------------
_ESCAPES = {0x08: b"\\b", 0x09: b"\\t", 0x0A: b"\\n", 0x0C: b"\\f", 0x0D: b"\\r", 0x22: b'\\"', 0x5C: b"\\\\"}
_NEEDS_ESCAPE = re.compile(rb'[\x00-\x1f"\\]')


def _raw_string(data: bytes) -> bytes:
    """Bytes as a JSON string, byte for byte (only quote, backslash, controls escaped)."""
    body = _NEEDS_ESCAPE.sub(lambda m: _ESCAPES.get(m.group()[0], b"\\u%04x" % m.group()[0]), data)
    return b'"' + body + b'"'


def _float_text(value, is_float32: bool) -> bytes:
    x = float(value)
    if math.isnan(x):
        return b"NaN"
    if math.isinf(x):
        return b"Infinity" if x > 0 else b"-Infinity"
    text = str(np.float32(x)) if is_float32 else repr(x)
    if "." not in text and "e" not in text:
        text += ".0"
    return text.encode()


def _value(v, as_b64: bool, is_float32: bool) -> bytes:
    if isinstance(v, bytes):
        if as_b64:
            return b'{"b64": "' + base64.b64encode(v) + b'"}'
        return _raw_string(v)
    if isinstance(v, (bool, np.bool_)):
        return b"true" if v else b"false"
    if isinstance(v, (np.floating, float)):
        return _float_text(v, is_float32)
    if isinstance(v, (np.integer, int)):
        return str(int(v)).encode()
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).encode("utf-8")
    raise TypeError(f"cannot write {type(v).__name__} to JSON")


def _row(arr: np.ndarray, i: int) -> np.ndarray:
    """arr[i] as an array (keeps dtype; plain indexing turns 1-D rows into scalars)."""
    return arr[i : i + 1].reshape(arr.shape[1:])


def _tensor(arr: np.ndarray, as_b64: bool) -> bytes:
    if arr.ndim == 0:
        return _value(arr[()], as_b64, arr.dtype == np.float32)
    return b"[" + b", ".join(_tensor(_row(arr, i), as_b64) for i in range(arr.shape[0])) + b"]"


def write_predict_response(outputs: dict[str, np.ndarray], fmt: str) -> bytes:
    """JSON body for a :predict response in the request's format (row or columnar)."""
    names = sorted(outputs)
    b64 = {n: n.endswith(BYTES_SUFFIX) and outputs[n].dtype == object for n in names}

    def body(pick) -> bytes:
        """A lone output as its value, several as an object by name; `pick` takes the part to write."""
        if len(names) == 1:
            return _tensor(pick(outputs[names[0]]), b64[names[0]])
        parts = (json.dumps(n).encode() + b": " + _tensor(pick(outputs[n]), b64[n]) for n in names)
        return b"{" + b", ".join(parts) + b"}"

    if fmt == "columnar":
        return b'{"outputs": ' + body(lambda arr: arr) + b"}"
    sizes = {outputs[n].shape[0] if outputs[n].ndim else None for n in names}
    if len(sizes) != 1 or None in sizes:
        raise invalid_argument("outputs have inconsistent batch sizes; use the columnar 'inputs' format")
    rows = [body(lambda arr: _row(arr, i)) for i in range(sizes.pop())]
    return b'{"predictions": [' + b", ".join(rows) + b"]}"


def decode_response_body(body: bytes):
    """Parse a REST body that may hold raw binary strings (see module docstring).

    Strings come back as `str` whose code points are the original bytes when the body
    is not UTF-8 (latin-1 maps byte n to code point n), so `.encode('latin-1')` recovers
    them; `string_bytes` does that.
    """
    try:
        return json.loads(body.decode("utf-8")), "utf-8"
    except UnicodeDecodeError:
        return json.loads(body.decode("latin-1")), "latin-1"


def string_bytes(value, encoding: str) -> bytes:
    """One DT_STRING output value from a parsed REST body, as bytes."""
    if is_b64_object(value):
        return base64.b64decode(value["b64"])
    if isinstance(value, str):
        return value.encode(encoding)
    raise StatusError(grpc.StatusCode.INTERNAL, f"expected a string output, got {type(value).__name__}")
