"""One loaded SavedModel version: its signature defs and a way to run them.

Signature defs are read from saved_model.pb (not reconstructed from the restored
functions) so GetModelMetadata returns exactly what TF Serving would.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from imfuse.errors import ModelError
from imfuse.serving.status import StatusError, code_from_value, invalid_argument
from imfuse.serving.tensors import check_inputs

DEFAULT_SIGNATURE = "serving_default"
INIT_OP_SIGNATURE = "__saved_model_init_op"  # listed in metadata (as TF Serving does), not callable
log = logging.getLogger("imfuse.serving")


def read_signature_defs(path: Path) -> dict:
    """SignatureDefs of the serving MetaGraph (tag 'serve'), from the file itself."""
    from google.protobuf import text_format

    proto = saved_model_pb2.SavedModel()
    pb = path / "saved_model.pb"
    try:
        if pb.is_file():
            proto.ParseFromString(pb.read_bytes())
        else:
            text_format.Parse((path / "saved_model.pbtxt").read_text(), proto)
    except Exception as exc:  # noqa: BLE001 - any corruption is a model problem
        raise ModelError(f"{path}: cannot parse saved_model.pb: {exc}") from None
    for meta_graph in proto.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ModelError(f"{path}: SavedModel has no MetaGraph tagged 'serve'")


def op_error_message(exc: tf.errors.OpError) -> str:
    """The human part of a graph error ('Unknown image file format...'), plus the op."""
    lines = [ln.strip() for ln in (exc.message or str(exc)).splitlines() if ln.strip()]
    skip = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "[[")
    useful = [ln for ln in lines if not ln.startswith(skip) and not ln.startswith("File ")]
    node = next((ln.split("Detected at node", 1)[1].split(" defined", 1)[0].strip() for ln in lines if ln.startswith("Detected at node")), "")
    text = useful[-1] if useful else (lines[0] if lines else type(exc).__name__)
    return f"{text} (at {node})" if node else text


@dataclass
class Servable:
    """A loaded version. Requests hold a reference, so unloading never breaks them."""

    name: str
    version: int
    path: Path
    signature_defs: dict
    module: object = field(repr=False)

    def signature_def(self, signature_name: str):
        key = signature_name or DEFAULT_SIGNATURE
        if key not in self.signature_defs or key == INIT_OP_SIGNATURE:
            raise StatusError(
                grpc.StatusCode.NOT_FOUND,
                f"signature '{key}' not found in model '{self.name}' version {self.version}; "
                f"it has {sorted(set(self.signature_defs) - {INIT_OP_SIGNATURE})}",
            )
        return key, self.signature_defs[key]

    def prepare(self, signature_name: str, inputs: dict[str, np.ndarray]) -> tuple[str, dict[str, np.ndarray]]:
        """Resolve the signature and check/complete the inputs (cheap; before batching)."""
        key, sig = self.signature_def(signature_name)
        return key, check_inputs(key, sig, inputs)

    def run(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run a signature on already-checked inputs; TF errors keep their canonical code."""
        fn = self.module.signatures[signature_name]
        try:
            outputs = fn(**{k: tf.constant(v) for k, v in inputs.items()})
            return {k: v.numpy() for k, v in outputs.items()}
        except tf.errors.OpError as exc:
            raise StatusError(code_from_value(exc.error_code), op_error_message(exc)) from None
        except UnicodeDecodeError as exc:
            raise undecodable_error(exc) from None


def undecodable_error(exc: UnicodeDecodeError) -> StatusError:
    """TensorFlow failed to turn an error message into text (it quoted raw input bytes).

    TF raises UnicodeDecodeError instead of the OpError, so the code is lost; the
    message is still in `exc.object`. Asserts (what the serving graphs use to reject
    inputs, quoting the first bytes) are INVALID_ARGUMENT; anything else stays a
    server fault.
    """
    raw = exc.object if isinstance(exc.object, bytes) else b""
    text = raw.decode("utf-8", "backslashreplace")
    if "assertion failed" not in text:
        return StatusError(grpc.StatusCode.INTERNAL, f"undecodable TensorFlow error: {text[:500]}")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("[[")]
    message = lines[0] if lines else "input rejected by the model"
    message = message.split("}}", 1)[-1].strip()  # drop the {{function_node ...}} prefix
    return invalid_argument(message[:500])


def load_servable(name: str, version: int, path: Path) -> Servable:
    """Load one version folder; raises ModelError with the path on failure."""
    start = time.perf_counter()
    signature_defs = read_signature_defs(path)
    try:
        module = tf.saved_model.load(str(path))
    except Exception as exc:  # noqa: BLE001 - report any loader failure as a model error
        raise ModelError(f"{path}: tf.saved_model.load failed: {type(exc).__name__}: {exc}") from None
    missing = sorted(set(signature_defs) - set(module.signatures) - {INIT_OP_SIGNATURE})
    if missing:
        raise ModelError(f"{path}: signatures {missing} are in saved_model.pb but not restorable")
    log.debug("loaded %s version %d in %.2fs", name, version, time.perf_counter() - start)
    return Servable(name=name, version=version, path=path, signature_defs=signature_defs, module=module)
