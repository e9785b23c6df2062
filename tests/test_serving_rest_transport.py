"""REST transport on uvicorn: malformed HTTP, size and time limits, concurrency, metrics.

Raw sockets are used where an HTTP client library would refuse to send what a hostile
client can (negative Content-Length, a truncated or trickled body, idle connections).
"""

import json
import re
import socket
import time
import urllib.error
import urllib.request

import pytest

from imfuse.serving import servable
from imfuse.serving.rest import RestOptions
from imfuse.serving.rest_json import JsonLimits
from imfuse.serving.server import ServerOptions, start_server
from serving_fixtures import b64, build_toy_model, content_images, rest_get, rest_post, style_images

OPTIONS = RestOptions(timeout_keep_alive_s=1, header_timeout_s=1.0, body_timeout_s=0.5, limit_concurrency=6,
                      json_limits=JsonLimits(max_elements=2000, max_depth=16))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("rest-transport") / "imfuse"
    build_toy_model(base, 1)
    running = start_server(ServerOptions(model_base_path=str(base), port=0, rest_port=0, poll_wait_s=0,
                                         max_request_bytes=100_000, rest=OPTIONS))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def images():
    return content_images(1, 40)[0], style_images(1, 32)[0]


def _post(server, path: str, body: bytes) -> tuple[int, bytes]:
    return rest_post(server.rest_port, path, body)


def _get(server, path: str):
    return rest_get(server.rest_port, path)


def _raw(server, data: bytes, wait_s: float = 5.0) -> bytes:
    """Send raw bytes, return everything the server sends until it closes (or wait_s)."""
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=wait_s) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except socket.timeout:
            pass
        return b"".join(chunks)


def _status(raw: bytes) -> int:
    match = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    assert match, raw[:200]
    return int(match.group(1))


PREDICT = b"POST /v1/models/imfuse:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@pytest.mark.parametrize("length", [b"-5", b"abc", b"1e3"])
def test_bad_content_length_is_400(server, length):
    assert _status(_raw(server, PREDICT + b"Content-Length: " + length + b"\r\n\r\n{}")) == 400


def test_declared_body_over_the_limit_is_413_without_reading_it(server):
    start = time.monotonic()
    raw = _raw(server, PREDICT + b"Content-Length: 5000000\r\n\r\n{")
    assert _status(raw) == 413 and b"100000 bytes" in raw
    assert time.monotonic() - start < 3


def test_chunked_body_over_the_limit_is_413(server):
    chunk = b"1," * 30_000  # 60 kB per chunk, no Content-Length
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(2)) + b"0\r\n\r\n"
    raw = _raw(server, PREDICT + b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert _status(raw) == 413


def test_trickled_body_gets_408_within_the_deadline(server):
    start = time.monotonic()
    raw = _raw(server, PREDICT + b"Content-Length: 100\r\n\r\n{\"instances\":", wait_s=5)
    assert _status(raw) == 408 and b"0.5 s" in raw
    assert time.monotonic() - start < 3


def test_truncated_body_then_close_leaves_the_server_serving(server, images):
    content, style = images
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=5) as sock:
        sock.sendall(PREDICT + b"Content-Length: 1000\r\n\r\n{\"inst")
    doc = {"instances": [{"content_image": b64(content), "style_image": b64(style)}]}
    assert _post(server, "/v1/models/imfuse:predict", json.dumps(doc).encode())[0] == 200


def test_slow_headers_are_cut_off(server):
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=5) as sock:
        sock.sendall(b"GET /v1/models/imfuse HTTP/1.1\r\nHost: x\r\n")  # headers never finish
        assert sock.recv(1024) == b""  # closed by the server
    assert 0.8 < time.monotonic() - start < 4


def test_idle_keep_alive_connection_is_closed(server):
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=5) as sock:
        sock.sendall(b"GET /v1/models/imfuse HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert _status(first) == 200
        start = time.monotonic()
        while sock.recv(65536):
            pass
        assert time.monotonic() - start < 4  # closed after timeout_keep_alive (1 s)


def test_connections_over_the_limit_get_503(server):
    idle = [socket.create_connection(("127.0.0.1", server.rest_port), timeout=5) for _ in range(OPTIONS.limit_concurrency)]
    try:
        time.sleep(0.2)
        raw = _raw(server, b"GET /v1/models/imfuse HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert _status(raw) == 503
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.3)
    assert _get(server, "/v1/models/imfuse")[0] == 200


def test_json_nesting_and_element_limits_are_400(server, images):
    deep = b'{"inputs": ' + b"[" * 20 + b"1" + b"]" * 20 + b"}"
    status, body = _post(server, "/v1/models/imfuse:predict", deep)
    assert status == 400 and "nested deeper than 16" in json.loads(body)["error"]
    very_deep = b'{"inputs": ' + b"[" * 40_000 + b"]" * 40_000 + b"}"  # past json's recursion limit
    status, body = _post(server, "/v1/models/imfuse:predict", very_deep)
    assert status == 400 and "nested deeper" in json.loads(body)["error"]
    many = json.dumps({"signature_name": "stylize_with_embedding", "inputs": {"strength": [0.5] * 3000}}).encode()
    status, body = _post(server, "/v1/models/imfuse:predict", many)
    assert status == 400 and "more than 2000 values" in json.loads(body)["error"]


def test_unsupported_method_is_json_405(server):
    request = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}/v1/models/imfuse", method="DELETE")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 405 and "GET or POST" in json.loads(info.value.read())["error"]


def test_server_fault_is_500_without_exception_text(server, images, monkeypatch):
    content, style = images

    def boom(self, signature_name, inputs):
        raise OSError("cannot read /srv/secret/models/imfuse/1/variables/variables.index")

    monkeypatch.setattr(servable.Servable, "run", boom)
    doc = {"instances": [{"content_image": b64(content), "style_image": b64(style)}]}
    status, body = _post(server, "/v1/models/imfuse:predict", json.dumps(doc).encode())
    error = json.loads(body)["error"]
    assert status == 500 and "/srv/secret" not in error and "OSError" not in error and "error id" in error


def test_random_bytes_image_over_rest_is_400(server, images):
    _, style = images
    junk = bytes(range(256)) * 4
    doc = {"instances": [{"content_image": b64(junk), "style_image": b64(style)}]}
    status, body = _post(server, "/v1/models/imfuse:predict", json.dumps(doc).encode())
    assert status == 400, body


SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? (\S+)$')


def _scrape(server) -> dict[str, float]:
    status, headers, body = _get(server, "/monitoring/prometheus/metrics")
    assert status == 200 and headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = {}
    for line in body.decode().splitlines():
        if line.startswith("# "):
            assert re.match(r"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$", line), line
            continue
        assert SAMPLE.match(line), line
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)  # ValueError for anything but a Prometheus number
    return samples


def test_prometheus_endpoint_counts_requests_errors_latency_and_versions(server, images):
    content, style = images
    ok_key = 'imfuse_serving_requests_total{api="rest",code="OK",method="Predict"}'  # labels sorted by name
    bad_key = 'imfuse_serving_request_errors_total{api="rest",code="INVALID_ARGUMENT",method="Predict"}'
    before = _scrape(server)
    doc = {"instances": [{"content_image": b64(content), "style_image": b64(style)}]}
    assert _post(server, "/v1/models/imfuse:predict", json.dumps(doc).encode())[0] == 200
    assert _post(server, "/v1/models/imfuse:predict", b"{nope")[0] == 400
    after = _scrape(server)
    assert after[ok_key] == before.get(ok_key, 0) + 1
    assert after[bad_key] == before.get(bad_key, 0) + 1
    assert after['imfuse_serving_http_responses_total{status="400"}'] >= 1
    assert after['imfuse_serving_model_version_available{model_name="imfuse",version="1"}'] == 1
    assert after['imfuse_serving_loaded_versions{model_name="imfuse"}'] == 1
    # histogram: cumulative buckets, +Inf equals _count
    prefix, suffix = 'imfuse_serving_request_latency_seconds_bucket{api="rest",le=', ',method="Predict"}'
    buckets = [(k, v) for k, v in after.items() if k.startswith(prefix) and k.endswith(suffix)]
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and buckets[-1][0] == f'{prefix}"+Inf"{suffix}'
    assert counts[-1] == after['imfuse_serving_request_latency_seconds_count{api="rest",method="Predict"}']
    assert after["imfuse_serving_batch_size_count"] >= 1


def test_stop_shuts_uvicorn_down_and_frees_the_port(tmp_path):
    base = tmp_path / "imfuse"
    build_toy_model(base, 1)
    running = start_server(ServerOptions(model_base_path=str(base), port=0, rest_port=0, poll_wait_s=0))
    port = running.rest_port
    assert _get(running, "/v1/models/imfuse")[0] == 200
    thread = running.rest._thread
    running.stop()
    assert not thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with socket.socket() as sock:  # free again for a new server
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    running.stop()  # idempotent
