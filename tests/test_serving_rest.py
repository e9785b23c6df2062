"""TF Serving REST API of the local server: same bytes as gRPC, TF Serving's JSON rules."""

import json
import re

import grpc
import numpy as np
import pytest

from imfuse.errors import ServingError
from imfuse.serving.client import PredictionClient, RestClient
from imfuse.serving.config import BatchingOptions
from imfuse.serving.rest_json import decode_response_body, parse_predict_body, string_bytes, write_predict_response
from imfuse.serving.server import ServerOptions, start_server
from imfuse.serving.status import StatusError
from serving_fixtures import b64, build_toy_model, content_images, rest_get, rest_post, style_images


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("rest") / "imfuse"
    build_toy_model(base, 3, gain=0.8)
    running = start_server(
        ServerOptions(model_base_path=str(base), port=0, rest_port=0, host="127.0.0.1",
                      batching=BatchingOptions(), poll_wait_s=0, max_request_bytes=200 * 1024,
                      version_labels={"stable": 3})
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def images():
    return content_images(2, 40)[1], style_images(1, 32)[0]


def _post(server, path: str, doc) -> tuple[int, bytes]:
    return rest_post(server.rest_port, path, doc)


def _get(server, path: str) -> tuple[int, dict]:
    status, _, body = rest_get(server.rest_port, path)
    return status, json.loads(body)


def test_rest_equals_grpc_bytes(server, images):
    content, style = images
    via_grpc = PredictionClient(f"127.0.0.1:{server.grpc_port}").stylize(content, style, 0.7)
    rest = RestClient(f"127.0.0.1:{server.rest_port}")
    assert rest.stylize(content, style, 0.7) == via_grpc
    assert RestClient(f"127.0.0.1:{server.rest_port}", version_label="stable").stylize(content, style, 0.7) == via_grpc
    emb = rest.style_embedding(style)
    np.testing.assert_allclose(emb, PredictionClient(f"127.0.0.1:{server.grpc_port}").style_embedding(style), rtol=1e-6)
    assert rest.stylize_with_embedding(content, emb, 0.7) == via_grpc


def test_row_and_columnar_formats(server, images):
    content, style = images
    status, row = _post(server, "/v1/models/imfuse:predict",
                        {"instances": [{"content_image": b64(content), "style_image": b64(style)}] * 2})
    assert status == 200
    parsed, enc = decode_response_body(row)
    assert len(parsed["predictions"]) == 2
    png = string_bytes(parsed["predictions"][0], enc)
    assert png[:4] == b"\x89PNG"
    status, col = _post(server, "/v1/models/imfuse/versions/3:predict",
                        {"inputs": {"content_image": [b64(content)], "style_image": [b64(style)]}})
    parsed, enc = decode_response_body(col)
    assert status == 200 and string_bytes(parsed["outputs"][0], enc) == png
    status, emb = _post(server, "/v1/models/imfuse:predict",
                        {"signature_name": "style_embedding", "instances": [b64(style)]})
    values = json.loads(emb)["predictions"][0]
    assert status == 200 and len(values) == 3 and all(isinstance(v, float) for v in values)


def test_status_and_metadata_endpoints(server):
    status, body = _get(server, "/v1/models/imfuse")
    assert status == 200
    assert body["model_version_status"] == [
        {"version": "3", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
    status, body = _get(server, "/v1/models/imfuse/labels/stable/metadata")
    sigs = body["metadata"]["signature_def"]["signature_def"]
    assert status == 200 and body["model_spec"]["version"] == "3"
    assert sigs["serving_default"]["outputs"]["stylized_image"]["dtype"] == "DT_STRING"
    meta = RestClient(f"127.0.0.1:{server.rest_port}").metadata()
    assert meta["signatures"]["stylize_with_embedding"]["inputs"]["embedding"]["shape"] == [-1, 3]
    assert RestClient(f"127.0.0.1:{server.rest_port}").status()[0]["state"] == "AVAILABLE"


def test_rest_client_status_codes_are_grpcs_numbers(monkeypatch):
    """TF Serving's REST status names its code; the client reports gRPC's number, as over gRPC."""
    doc = {"model_version_status": [
        {"version": "2", "state": "END", "status": {"error_code": "NOT_FOUND", "error_message": "gone"}},
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "0", "state": "END", "status": {"error_code": "SOMETHING_NEW"}},
    ]}
    client = RestClient("127.0.0.1:1")
    monkeypatch.setattr(client, "_http", lambda *a, **k: json.dumps(doc).encode())
    assert [s["error_code"] for s in client.status()] == [5, 0, 2]


def test_failed_version_status_has_no_paths_or_exception_text(tmp_path):
    base = tmp_path / "secret-models" / "imfuse"
    build_toy_model(base, 1)
    broken = base / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "imfuse" base_path: "{base}" model_platform: "tensorflow"'
                      ' model_version_policy { all {} } } }')
    running = start_server(ServerOptions(model_config_file=str(config), port=0, rest_port=0, host="127.0.0.1", poll_wait_s=0))
    try:
        status, body = _get(running, "/v1/models/imfuse")
        _, one = _get(running, "/v1/models/imfuse/versions/2")
    finally:
        running.stop()
    assert status == 200
    by_version = {s["version"]: s for s in body["model_version_status"]}
    assert by_version["1"]["status"] == {"error_code": "OK", "error_message": ""}
    failed = by_version["2"]
    assert failed["state"] == "END" and failed["status"]["error_code"] == "UNKNOWN"
    message = failed["status"]["error_message"]
    assert re.fullmatch(r"version 2 failed to load; see the server log \(error id [0-9a-f]{12}\)", message), message
    assert "secret-models" not in json.dumps(body) and "saved_model" not in json.dumps(body)
    assert one["model_version_status"] == [failed]


@pytest.mark.parametrize(
    "path, doc, code, text",
    [
        ("/v1/models/nope:predict", {"instances": [1]}, 404, "nope"),
        ("/v1/models/imfuse/versions/8:predict", {"instances": [1]}, 404, "8"),
        ("/v1/models/imfuse/labels/beta:predict", {"instances": [1]}, 404, "beta"),
        ("/v1/models/imfuse:predict", b"{not json", 400, "JSON Parse error"),
        ("/v1/models/imfuse:predict", {"instances": [{"content_image": b64(b"junk"), "style_image": b64(b"junk")}]}, 400, "image"),
        ("/v1/models/imfuse:predict", {"instances": [{"content_image": {"b64": "@@@"}, "style_image": "x"}]}, 400, "base64"),
        ("/v1/models/imfuse:predict", {"inputs": {"bogus": [1]}}, 400, "bogus"),
        ("/v1/models/imfuse:classify", {"examples": []}, 501, "classify"),
        ("/v1/models/imfuse:predict", {"inputs": {"content_image": [b64(b"x" * 300_000)]}}, 413, "limit"),
    ],
)
def test_errors_are_json_with_http_codes(server, path, doc, code, text):
    status, body = _post(server, path, doc)
    assert status == code
    assert text.lower() in json.loads(body)["error"].lower()


def test_rest_client_maps_errors(server, images):
    content, style = images
    with pytest.raises(ServingError) as info:
        RestClient(f"127.0.0.1:{server.rest_port}", version=99).stylize(content, style)
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(ServingError) as info:
        RestClient(f"127.0.0.1:{server.rest_port}").stylize(b"not an image", style)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert len(RestClient(f"127.0.0.1:{server.rest_port}").stylize(content, style)) > 0  # still serving


class _Sig:
    """Minimal SignatureDef stand-in for the pure JSON tests."""

    def __init__(self, inputs, defaults=()):
        from tensorflow.core.protobuf import meta_graph_pb2

        self.proto = meta_graph_pb2.SignatureDef()
        for name, dtype in inputs.items():
            self.proto.inputs[name].dtype = dtype
        for name in defaults:
            self.proto.defaults[name].dtype = inputs[name]


def test_json_parsing_rules():
    import tensorflow as tf

    sig = _Sig({"content_image": tf.string.as_datatype_enum, "strength": tf.float32.as_datatype_enum}, ["strength"]).proto
    key, inputs, fmt = parse_predict_body(b'{"instances": [{"b64": "YWI="}, "cd"]}', lambda name: ("serving_default", sig))
    assert fmt == "row" and list(inputs["content_image"]) == [b"ab", b"cd"]
    _, inputs, fmt = parse_predict_body(
        b'{"inputs": {"content_image": [{"b64": "YWI="}], "strength": [0.5]}}', lambda name: ("s", sig))
    assert fmt == "columnar" and inputs["strength"].dtype == np.float32 and inputs["strength"][0] == 0.5
    with pytest.raises(StatusError, match="exactly one"):
        parse_predict_body(b'{"inputs": {}, "instances": []}', lambda name: ("s", sig))
    with pytest.raises(StatusError, match="content_image"):
        parse_predict_body(b'{"instances": [{"content_image": [[1]]}]}', lambda name: ("s", sig))


def test_json_writing_rules():
    raw = bytes(range(256))
    body = write_predict_response({"stylized_image": np.array([raw], dtype=object)}, "row")
    parsed, enc = decode_response_body(body)
    assert enc == "latin-1" and string_bytes(parsed["predictions"][0], enc) == raw
    body = write_predict_response(
        {"image_bytes": np.array([b"\x00\xff"], dtype=object), "score": np.array([[0.2, 1.0]], np.float32)}, "columnar")
    assert json.loads(body) == {"outputs": {"image_bytes": [{"b64": "AP8="}], "score": [[0.2, 1.0]]}}
    body = write_predict_response({"label": np.array([b"caf\xc3\xa9"], dtype=object)}, "row")
    assert json.loads(body) == {"predictions": ["café"]}
