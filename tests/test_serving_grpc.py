"""Client <-> local server over loopback with TF Serving's real protos and stubs."""

import io
import logging
import re
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from imfuse.errors import ServingError
from imfuse.serving.client import PredictionClient
from imfuse.serving.config import BatchingOptions
from imfuse.serving.server import ServerOptions, start_server
from imfuse.serving.status import StatusError
from serving_fixtures import (
    build_toy_model, content_images, copy_version, expected_stylized, labelled_toy_models, style_images,
)


def _pixels(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32) / 255.0


def _assert_close(got: np.ndarray, expected: np.ndarray) -> None:
    """PIL and TF decode JPEG slightly differently: allow a few grey levels, not more."""
    assert got.shape == expected.shape
    diff = np.abs(got - expected)
    assert diff.max() <= 6 / 255 and diff.mean() <= 1.5 / 255, (diff.max(), diff.mean())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = labelled_toy_models(tmp_path_factory.mktemp("models"))
    options = ServerOptions(
        model_config_file=str(config), port=0, rest_port=0, host="127.0.0.1",
        batching=BatchingOptions(max_batch_size=8, batch_timeout_micros=3000, num_batch_threads=2),
        poll_wait_s=0.2, max_request_bytes=256 * 1024,
    )
    running = start_server(options)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def images():
    return content_images(2, 48), style_images(2, 32)


def _client(server, **kwargs):
    return PredictionClient(f"127.0.0.1:{server.grpc_port}", timeout_s=20, **kwargs)


def test_stylize_matches_the_model_computation(server, images):
    (content, _), (style, _) = images
    png = _client(server).stylize(content, style, strength=0.6)
    expected = expected_stylized(content, style, strength=0.6, gain=0.5)  # latest = version 2
    _assert_close(_pixels(png), expected)


def test_embedding_signatures_agree_with_serving_default(server, images):
    (content, _), (style, _) = images
    client = _client(server)
    emb = client.style_embedding(style)
    s = np.asarray(Image.open(io.BytesIO(style)).convert("RGB"), np.float32) / 255.0
    assert emb.shape == (3,)
    np.testing.assert_allclose(emb, s.reshape(-1, 3).mean(0), atol=3 / 255)
    assert client.stylize_with_embedding(content, emb, 0.3) == client.stylize(content, style, 0.3)
    # the optional strength input falls back to the SignatureDef default (1.0)
    assert client.stylize(content, style) == client.stylize(content, style, 1.0)


def test_version_and_label_selection(server, images):
    (content, _), (style, _) = images
    v1 = _client(server, version=1).stylize(content, style)
    stable = _client(server, version_label="stable").stylize(content, style)
    canary = _client(server, version_label="canary").stylize(content, style)
    assert v1 == stable and canary != stable
    _assert_close(_pixels(v1), expected_stylized(content, style, gain=1.0))


@pytest.mark.parametrize(
    "kwargs, text",
    [({"model_name": "nope"}, "nope"), ({"version": 9}, "9"), ({"version_label": "beta"}, "beta")],
)
def test_unknown_model_version_label_is_not_found(server, images, kwargs, text):
    (content, _), (style, _) = images
    with pytest.raises(ServingError, match=text) as info:
        _client(server, **kwargs).stylize(content, style)
    assert info.value.code == grpc.StatusCode.NOT_FOUND and "NOT_FOUND" in str(info.value)


def test_unknown_signature_is_not_found(server):
    with pytest.raises(StatusError) as info:
        _client(server).predict({"x": np.array([b"a"], dtype=object)}, "no_such_signature")
    assert info.value.code == grpc.StatusCode.NOT_FOUND


def test_invalid_bytes_is_invalid_argument_and_server_keeps_serving(server, images):
    (content, _), (style, _) = images
    client = _client(server)
    with pytest.raises(ServingError, match="INVALID_ARGUMENT") as info:
        client.stylize(b"definitely not an image", style)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "image" in str(info.value).lower()
    with pytest.raises(StatusError) as info:  # wrong input name
        client.predict({"content": np.array([content], dtype=object)})
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert _pixels(client.stylize(content, style)).shape[2] == 3


def test_request_too_large_is_rejected(server, images):
    (_, _), (style, _) = images
    with pytest.raises(ServingError) as info:
        _client(server, retries=0).stylize(b"\xff" * (300 * 1024), style)
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_concurrent_clients_all_correct(server, images):
    contents, styles = images
    client = _client(server)
    expected = {(i, j): client.stylize(contents[i], styles[j], 0.5) for i in range(2) for j in range(2)}
    results, errors = {}, []

    def work(t):
        try:
            for k in range(3):
                i, j = (t + k) % 2, (t // 2 + k) % 2
                results[(t, k)] = (client.stylize(contents[i], styles[j], 0.5), expected[(i, j)])
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 24 and all(got == want for got, want in results.values())


def test_metadata_contains_signature_defs(server):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "imfuse"
    response = stub.GetModelMetadata(request, timeout=10)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sig_map)
    sigs = sig_map.signature_def
    assert {"serving_default", "style_embedding", "stylize_with_embedding"} <= set(sigs)
    assert set(sigs["serving_default"].inputs) == {"content_image", "style_image", "strength"}
    assert sigs["serving_default"].outputs["stylized_image"].dtype == tf.string.as_datatype_enum
    assert "strength" in sigs["serving_default"].defaults
    summary = _client(server).metadata()
    assert summary["version"] == 2
    assert summary["signatures"]["style_embedding"]["outputs"]["embedding"] == {"dtype": "DT_FLOAT", "shape": [-1, 3]}


def test_model_status_and_unimplemented_methods(server):
    status = _client(server).status()
    assert [(s["version"], s["state"]) for s in status] == [(2, "AVAILABLE"), (1, "AVAILABLE")]
    assert _client(server, version=2).status()[0]["error_code"] == 0
    with pytest.raises(ServingError) as info:
        _client(server, version=5).status()
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
    with pytest.raises(grpc.RpcError) as rpc:
        stub.Classify(classification_pb2.ClassificationRequest(), timeout=5)
    assert rpc.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_raw_predict_echoes_model_spec_and_honours_output_filter(server, images):
    (content, _), (style, _) = images
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "imfuse"
    request.model_spec.version_label = "stable"
    request.inputs["content_image"].CopyFrom(tf.make_tensor_proto([content, content]))
    request.inputs["style_image"].CopyFrom(tf.make_tensor_proto([style, style]))
    request.output_filter.append("stylized_image")
    response = stub.Predict(request, timeout=10)
    assert response.model_spec.version.value == 1 and response.model_spec.signature_name == "serving_default"
    assert len(response.outputs["stylized_image"].string_val) == 2
    request.output_filter[:] = ["nope"]
    with pytest.raises(grpc.RpcError) as rpc:
        stub.Predict(request, timeout=10)
    assert rpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_new_version_is_served_without_restart_and_old_unloaded(tmp_path, images):
    (content, _), (style, _) = images
    base = tmp_path / "imfuse"
    v1 = build_toy_model(base, 1, gain=1.0)
    running = start_server(ServerOptions(model_base_path=str(base), port=0, rest_port=None, host="127.0.0.1", poll_wait_s=0.2))
    try:
        client = PredictionClient(f"127.0.0.1:{running.grpc_port}", timeout_s=20)
        before = client.stylize(content, style)
        build_toy_model(tmp_path / "staging", 2, gain=0.25)
        copy_version(tmp_path / "staging" / "2", base, 2)
        deadline = time.monotonic() + 15
        while client.status()[0]["version"] != 2 or client.status()[0]["state"] != "AVAILABLE":
            assert time.monotonic() < deadline, client.status()
            time.sleep(0.1)
        after = client.stylize(content, style)
        assert after != before
        _assert_close(_pixels(after), expected_stylized(content, style, gain=0.25))
        states = {s["version"]: s["state"] for s in client.status()}
        assert states == {2: "AVAILABLE", 1: "END"}
        with pytest.raises(ServingError) as info:
            PredictionClient(f"127.0.0.1:{running.grpc_port}", version=1).stylize(content, style)
        assert info.value.code == grpc.StatusCode.NOT_FOUND
        assert v1.exists()  # unloading never deletes files
        # Model management is off by default and never on the Predict port.
        stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(f"127.0.0.1:{running.grpc_port}"))
        reload = model_management_pb2.ReloadConfigRequest()
        reload.config.model_config_list.config.add(name="imfuse", base_path=str(base))
        with pytest.raises(grpc.RpcError) as rpc:
            stub.HandleReloadConfigRequest(reload, timeout=20)
        assert rpc.value.code() == grpc.StatusCode.UNIMPLEMENTED and "--enable-model-management" in rpc.value.details()
        assert running.admin_server is None and running.admin_port is None
    finally:
        running.stop()


def test_failed_version_status_names_an_error_id_not_paths(tmp_path, caplog):
    """A version that fails to load: the public status says so with an id; the log has the detail."""
    base = tmp_path / "secret-models" / "imfuse"
    broken = base / "4"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    with caplog.at_level(logging.ERROR, logger="imfuse.serving"):
        running = start_server(ServerOptions(model_base_path=str(base), port=0, rest_port=None, host="127.0.0.1", poll_wait_s=0))
    try:
        (entry,) = _client(running).status()
    finally:
        running.stop()
    message = entry["error_message"]
    assert entry["version"] == 4 and entry["state"] == "END" and entry["error_code"] != 0
    match = re.fullmatch(r"version 4 failed to load; see the server log \(error id ([0-9a-f]{12})\)", message)
    assert match, message
    assert "secret-models" not in message and "saved_model" not in message and "Error" not in message
    logged = [r.getMessage() for r in caplog.records if match[1] in r.getMessage()]
    assert logged and str(broken) in logged[0], [r.getMessage() for r in caplog.records]


def test_client_retries_unavailable_then_reports(unused_port):
    client = PredictionClient(f"127.0.0.1:{unused_port}", timeout_s=2, retries=2, backoff_s=0.05)
    start = time.monotonic()
    with pytest.raises(ServingError, match="UNAVAILABLE") as info:
        client.status()
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - start >= 0.05 + 0.1  # two backoffs happened


@pytest.fixture
def unused_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
