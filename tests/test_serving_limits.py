"""Hostile and oversized gRPC requests: refused early, with the right code, never crashing.

Covers declared tensor shapes (checked before any array is built), per-request image and
pixel budgets (from headers, before the model runs), undecodable bytes, server faults
(generic reply with an error id), and the concurrent-RPC limit.
"""

import io
import logging
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc

from imfuse.serving import grpc_server, servable
from imfuse.serving.client import PredictionClient
from imfuse.serving.limits import RequestLimits
from imfuse.serving.server import ServerOptions, start_server
from imfuse.serving.status import StatusError
from imfuse.serving.tensors import check_request_protos
from serving_fixtures import build_toy_model, content_images, style_images

LIMITS = RequestLimits(max_images=4, max_pixels=100_000)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("limits") / "imfuse"
    build_toy_model(base, 1)
    running = start_server(ServerOptions(model_base_path=str(base), port=0, rest_port=None, poll_wait_s=0,
                                         limits=LIMITS))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def images():
    return content_images(1, 48)[0], style_images(1, 32)[0]


def _stub(server):
    return prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))


def _request(**inputs) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "imfuse"
    for name, proto in inputs.items():
        request.inputs[name].CopyFrom(proto)
    return request


def _strings(*values: bytes, shape=None) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=list(values))
    for size in shape if shape is not None else [len(values)]:
        proto.tensor_shape.dim.add(size=size)
    return proto


def _floats(values, shape, content: bool = False) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    if content:
        proto.tensor_content = np.asarray(values, np.float32).tobytes()
    else:
        proto.float_val.extend(values)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 90)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def no_array_building(monkeypatch):
    """Fail the test if a request reaches TensorProto -> numpy conversion."""
    calls = []

    def spy(proto):
        calls.append(list(proto.tensor_shape.dim))
        raise AssertionError("to_numpy reached")

    monkeypatch.setattr(grpc_server, "to_numpy", spy)
    return calls


MALFORMED = {
    "1e9 strings from one value": (_strings(b"x", shape=[10**9]), "more than the server's per-request limit"),
    "negative dimension": (_strings(b"x", shape=[-1]), "negative"),
    "product overflows int64": (_strings(b"x", shape=[2**40, 2**40]), "overflows"),
    "fewer values than declared": (_strings(b"a", b"b", shape=[3]), "declares 3"),
    "more values than declared": (_strings(b"a", b"b", b"c", shape=[1]), "declares 1"),
    "rank over the limit": (_strings(b"x", shape=[1] * 40), "rank"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_declared_shapes_are_checked_before_any_array_is_built(server, no_array_building, case):
    proto, text = MALFORMED[case]
    request = _request(content_image=proto, style_image=_strings(b"y"))
    assert request.ByteSize() < 300  # a few bytes on the wire
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as rpc:
        _stub(server).Predict(request, timeout=10)
    assert rpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, rpc.value.details()
    assert text in rpc.value.details() and "content_image" in rpc.value.details()
    assert time.monotonic() - start < 2.0 and no_array_building == []


@pytest.mark.parametrize(
    "proto, text",
    [(_floats([0.5, 0.5], [3], content=True), "tensor_content has 8 bytes"),
     (_floats([0.5, 0.5], [5]), "declares 5"),
     (_floats([0.5], [2**30]), "more than")],
)
def test_numeric_tensor_mismatches_are_invalid(server, images, no_array_building, proto, text):
    content, style = images
    request = _request(content_image=_strings(content), style_image=_strings(style), strength=proto)
    with pytest.raises(grpc.RpcError) as rpc:
        _stub(server).Predict(request, timeout=10)
    assert rpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT and text in rpc.value.details()
    assert no_array_building == []


def test_fill_form_tensors_still_work(server, images):
    """tf.make_tensor_proto(0.5, shape=[2]) sends one value for two elements: TF-legal."""
    content, style = images
    proto = tf.make_tensor_proto(0.5, shape=[2], dtype=tf.float32)
    assert len(proto.float_val) == 1
    request = _request(content_image=_strings(content, content), style_image=_strings(style, style), strength=proto)
    filled = _stub(server).Predict(request, timeout=20).outputs["stylized_image"].string_val
    explicit = PredictionClient(f"127.0.0.1:{server.grpc_port}").stylize(content, style, 0.5)
    assert list(filled) == [explicit, explicit]


def test_request_totals_are_bounded_too():
    protos = {f"s{i}": _strings(*[b"x"] * 3000) for i in range(2)}
    with pytest.raises(StatusError, match="6000 string elements in total"):
        check_request_protos(protos, numeric_limit=10, string_limit=4096)
    check_request_protos({"s": _strings(*[b"x"] * 3000)}, numeric_limit=10, string_limit=4096)


@pytest.fixture
def model_runs(monkeypatch):
    """Count executions of the model graph."""
    calls = []
    original = servable.Servable.run

    def counting(self, signature_name, inputs):
        calls.append(signature_name)
        return original(self, signature_name, inputs)

    monkeypatch.setattr(servable.Servable, "run", counting)
    return calls


def test_too_many_images_is_refused_before_the_model_runs(server, images, model_runs):
    content, style = images
    client = PredictionClient(f"127.0.0.1:{server.grpc_port}", retries=0)
    with pytest.raises(StatusError) as info:  # 3 contents + 3 styles = 6 images > 4
        client.predict({"content_image": np.array([content] * 3, dtype=object),
                        "style_image": np.array([style] * 3, dtype=object)})
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "more than 4 images" in str(info.value)
    assert model_runs == []
    client.predict({"content_image": np.array([content] * 2, dtype=object),
                    "style_image": np.array([style] * 2, dtype=object)})
    assert len(model_runs) == 1


def test_declared_pixels_over_budget_are_refused_from_the_header(server, images, model_runs):
    _, style = images
    big = _png(400, 300)  # 120k declared pixels > 100k budget, though a small valid file
    client = PredictionClient(f"127.0.0.1:{server.grpc_port}", retries=0)
    with pytest.raises(StatusError) as info:
        client.stylize(big, style)
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "100000 pixels" in str(info.value) and "400x300 PNG" in str(info.value)
    assert model_runs == []
    with pytest.raises(StatusError) as info:  # known format, unreadable header
        client.stylize(b"\x89PNG\r\n\x1a\n" + b"\x00" * 4, style)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and "PNG header" in str(info.value)


def test_random_bytes_are_invalid_argument(server, images):
    _, style = images
    client = PredictionClient(f"127.0.0.1:{server.grpc_port}", retries=0)
    for seed in range(3):
        junk = np.random.default_rng(seed).integers(0, 256, 512, dtype=np.uint8).tobytes()
        with pytest.raises(StatusError) as info:
            client.stylize(junk, style)
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT, str(info.value)


class _RawBytesAssert(tf.Module):
    """What older exports do: an Assert quoting the input's raw first bytes."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="content_image")])
    def serving_default(self, content_image):
        check = tf.debugging.Assert(tf.strings.length(content_image[0]) < 0,
                                    ["content_image: not an image; first bytes:", tf.strings.substr(content_image[0], 0, 16)])
        with tf.control_dependencies([check]):
            return {"out": tf.identity(content_image)}


def test_undecodable_tf_error_message_is_invalid_argument_not_internal(tmp_path):
    path = tmp_path / "1"
    module = _RawBytesAssert()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serving_default})
    loaded = servable.load_servable("m", 1, path)
    with pytest.raises(StatusError) as info:
        loaded.run("serving_default", {"content_image": np.array([bytes(range(128, 160))], dtype=object)})
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "not an image" in info.value.message and "function_node" not in info.value.message


def test_server_faults_reply_generically_and_log_the_detail(server, images, monkeypatch, caplog):
    content, style = images

    def boom(self, signature_name, inputs):
        raise RuntimeError("disk error in /srv/secret/models/imfuse/1/variables")

    monkeypatch.setattr(servable.Servable, "run", boom)
    with caplog.at_level(logging.ERROR, logger="imfuse.serving"):
        with pytest.raises(grpc.RpcError) as rpc:
            _stub(server).Predict(_request(content_image=_strings(content), style_image=_strings(style)), timeout=10)
    assert rpc.value.code() == grpc.StatusCode.INTERNAL
    details = rpc.value.details()
    assert "/srv/secret" not in details and "RuntimeError" not in details and "error id" in details
    error_id = details.split("error id ")[1].split(";")[0]
    assert any(error_id in r.getMessage() and "/srv/secret" in r.getMessage() for r in caplog.records)


def test_tf_internal_errors_are_generic_too(server, images, monkeypatch):
    content, style = images

    def internal(self, signature_name, inputs):
        raise StatusError(grpc.StatusCode.INTERNAL, "op failed reading /srv/secret/file")

    monkeypatch.setattr(servable.Servable, "run", internal)
    with pytest.raises(grpc.RpcError) as rpc:
        _stub(server).Predict(_request(content_image=_strings(content), style_image=_strings(style)), timeout=10)
    assert rpc.value.code() == grpc.StatusCode.INTERNAL and "/srv/secret" not in rpc.value.details()


def test_concurrent_rpcs_over_the_limit_are_resource_exhausted(tmp_path):
    base = tmp_path / "imfuse"
    build_toy_model(base, 1)
    running = start_server(ServerOptions(model_base_path=str(base), port=0, rest_port=None, poll_wait_s=0,
                                         max_concurrent_rpcs=2))
    gate = threading.Event()
    original = running.store.version_states

    def slow(*args, **kwargs):
        gate.wait(10)
        return original(*args, **kwargs)

    running.store.version_states = slow
    try:
        stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(f"127.0.0.1:{running.grpc_port}"))
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "imfuse"
        pending = [stub.GetModelStatus.future(request, timeout=20) for _ in range(2)]
        time.sleep(0.5)  # both are now inside the server
        with pytest.raises(grpc.RpcError) as rpc:
            stub.GetModelStatus(request, timeout=20)
        assert rpc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        gate.set()
        assert all(f.result().model_version_status[0].state == 30 for f in pending)  # AVAILABLE
        assert stub.GetModelStatus(request, timeout=20).model_version_status  # free again
    finally:
        gate.set()
        running.stop()


def test_metrics_count_grpc_outcomes(server, images):
    content, style = images
    metrics = server.metrics
    grpc_call = {"api": "grpc", "method": "Predict"}
    bad = {**grpc_call, "code": "INVALID_ARGUMENT"}
    before = metrics.value("imfuse_serving_requests_total", **bad)
    with pytest.raises(grpc.RpcError):
        _stub(server).Predict(_request(content_image=_strings(b"x", shape=[-1]), style_image=_strings(style)), timeout=10)
    assert metrics.value("imfuse_serving_requests_total", **bad) == before + 1
    assert metrics.value("imfuse_serving_request_errors_total", **bad) >= 1
    ok = metrics.value("imfuse_serving_requests_total", **grpc_call, code="OK")
    rows = metrics.value("imfuse_serving_batch_size_count")
    PredictionClient(f"127.0.0.1:{server.grpc_port}").stylize(content, style)
    assert metrics.value("imfuse_serving_requests_total", **grpc_call, code="OK") == ok + 1
    assert metrics.value("imfuse_serving_request_errors_total", **grpc_call, code="OK") == 0
    assert metrics.value("imfuse_serving_batch_size_count") == rows + 1
    assert metrics.value("imfuse_serving_model_version_available", model_name="imfuse", version="1") == 1
