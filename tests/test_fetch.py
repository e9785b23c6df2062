"""Tests for imfuse.fetch: address policy on every hop, pinned connections, total deadline."""

from __future__ import annotations

import http.server
import ipaddress
import re
import threading
import time
import urllib.parse

import numpy as np
import pytest

from imfuse.errors import ConfigError, ImageError
from imfuse.fetch import ALLOW_PRIVATE_ENV, address_problem, fetch_url
from imfuse.images import ImageLimits, encode_png, load_image

PAYLOAD = encode_png(np.full((32, 32, 3), 0.5, np.float32))
LOOPBACK_ONLY = ImageLimits(allowed_networks=("127.0.0.1/32",))


@pytest.fixture(autouse=True)
def _no_trusted_networks(monkeypatch):
    monkeypatch.delenv(ALLOW_PRIVATE_ENV, raising=False)


# ---------------------------------------------------------------- address policy


@pytest.mark.parametrize(
    "address,problem",
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback (IPv4 127.0.0.1)"),
        ("::ffff:169.254.169.254", "link-local (IPv4 169.254.169.254)"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("100.64.0.1", "not globally routable"),  # carrier-grade NAT / some cluster networks
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("fec0::1", "site-local"),
        ("2002:7f00:1::", "loopback (IPv4 127.0.0.1)"),  # 6to4
        ("64:ff9b::a9fe:a9fe", "link-local (IPv4 169.254.169.254)"),  # NAT64
    ],
)
def test_non_public_addresses_are_named(address, problem):
    assert address_problem(ipaddress.ip_address(address)) == problem


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"])
def test_public_addresses_pass(address):
    assert address_problem(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url,reason",
    [
        ("http://127.0.0.1:8080/a.png", "address 127.0.0.1 is loopback"),
        ("http://[::1]/a.png", "address ::1 is loopback"),
        ("http://[::ffff:127.0.0.1]/a.png", "address ::ffff:127.0.0.1 is loopback (IPv4 127.0.0.1)"),
        ("http://169.254.169.254/latest/meta-data/", "address 169.254.169.254 is link-local"),
        ("http://10.0.0.7/a.png", "address 10.0.0.7 is private"),
    ],
)
def test_literal_private_addresses_refused_with_one_line(url, reason):
    with pytest.raises(ImageError) as info:
        fetch_url(url, ImageLimits())
    message = str(info.value)
    assert message.startswith(f"refusing to fetch {url}: {reason}; set {ALLOW_PRIVATE_ENV}=1")
    assert "\n" not in message


def test_host_names_are_checked_after_resolution():
    def resolver(host, port):
        return {"cdn.test": ["93.184.216.34", "10.0.0.5"], "meta.test": ["169.254.169.254"]}[host]

    with pytest.raises(ImageError, match="host meta.test resolves to 169.254.169.254, which is link-local"):
        fetch_url("http://meta.test/x", ImageLimits(), resolver)
    # One bad address among good ones is enough to refuse: the attacker picks which is used.
    with pytest.raises(ImageError, match="host cdn.test resolves to 10.0.0.5, which is private"):
        fetch_url("https://cdn.test/x", ImageLimits(), resolver)


def test_unresolvable_host_is_one_line():
    def resolver(host, port):
        raise OSError(-2, "Name or service not known")

    with pytest.raises(ImageError, match=r"http://nope.test/x: cannot resolve host nope.test \(Name or service"):
        fetch_url("http://nope.test/x", ImageLimits(), resolver)


def test_env_var_allows_all_or_listed_networks(monkeypatch, http_server):
    url = f"{http_server.base}/ok.png"
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")
    assert fetch_url(url, ImageLimits()) == PAYLOAD
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "10.0.0.0/8, 127.0.0.0/8")
    assert fetch_url(url, ImageLimits()) == PAYLOAD
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "10.0.0.0/8")
    with pytest.raises(ImageError, match="loopback"):
        fetch_url(url, ImageLimits())
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "intranet")
    with pytest.raises(ConfigError, match=ALLOW_PRIVATE_ENV):
        fetch_url(url, ImageLimits())


def test_allowed_networks_cover_ipv4_mapped_forms():
    seen = []

    def resolver(host, port):
        seen.append(host)
        return ["::ffff:127.0.0.1"]

    # Allowed by its IPv4 form; the connection itself then fails (nothing listens on :9).
    with pytest.raises(ImageError, match="cannot download"):
        fetch_url("http://img.test:9/x", ImageLimits(allowed_networks=("127.0.0.1/32",), url_timeout_s=2), resolver)
    assert seen == ["img.test"]


# ------------------------------------------------------------------ test servers


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server API
        type(self).hits.append(f"{self.server.server_address[0]} {self.headers['Host']} {self.path}")
        path, _, query = self.path.partition("?")
        route = getattr(self, "route_" + path.strip("/").replace("-", "_").replace(".", "_"), None)
        if route is None:
            self.send_error(404, "Not Found")
        else:
            route(urllib.parse.parse_qs(query))

    def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
        try:
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True  # the client gave up (deadline tests)

    def route_ok_png(self, query):
        self._send(200, PAYLOAD)

    def route_host(self, query):  # the Host header must be the URL's name, not the IP
        if self.headers["Host"] == query["expect"][0]:
            self._send(200, PAYLOAD)
        else:
            self._send(400, b"wrong host")

    def route_redirect(self, query):
        self._send(302, Location=query["to"][0])

    def route_slow_loop(self, query):  # each hop answers in time, the chain never ends
        time.sleep(0.3)
        self._send(302, Location="/slow-loop")

    def route_loop(self, query):
        self._send(302, Location="/loop")

    def route_trickle_body(self, query):
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self._trickle()

    def route_trickle_headers(self, query):
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        self._trickle()

    def _trickle(self):
        """One byte every 0.5 s: each read is well inside any per-read timeout."""
        try:
            for _ in range(120):
                self.wfile.write(b"X")
                self.wfile.flush()
                time.sleep(0.5)
        except OSError:
            pass  # the client hung up, as it should
        self.close_connection = True

    def log_message(self, *args):
        pass


class _Server:
    def __init__(self, host: str):
        self.httpd = http.server.ThreadingHTTPServer((host, 0), _Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://{host}:{self.httpd.server_address[1]}"
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def http_server():
    server = _Server("127.0.0.1")
    yield server
    server.close()


@pytest.fixture(scope="module")
def internal_server():
    """A second 'internal' service on 127.0.0.2, outside the trusted 127.0.0.1/32."""
    try:
        server = _Server("127.0.0.2")
    except OSError:
        pytest.skip("cannot bind 127.0.0.2 on this system")
    yield server
    server.close()


# ---------------------------------------------------------------------- fetching


def test_trusted_loopback_fetch_works(http_server):
    assert fetch_url(f"{http_server.base}/ok.png", LOOPBACK_ONLY) == PAYLOAD
    with pytest.raises(ImageError, match="refusing to fetch .*loopback"):
        fetch_url(f"{http_server.base}/ok.png", ImageLimits())


@pytest.mark.parametrize(
    "target,reason",
    [
        ("http://169.254.169.254/latest/meta-data/", "address 169.254.169.254 is link-local"),
        ("http://[::ffff:169.254.169.254]/", "address ::ffff:169.254.169.254 is link-local (IPv4 169.254.169.254)"),
        ("http://[::1]:{port}/ok.png", "address ::1 is loopback"),
        ("http://meta.test/computeMetadata/v1/", "host meta.test resolves to 169.254.169.254, which is link-local"),
    ],
)
def test_redirect_to_private_address_refused(http_server, target, reason):
    target = target.format(port=http_server.port)
    url = f"{http_server.base}/redirect?to={urllib.parse.quote(target, safe='')}"

    def resolver(host, port):
        return {"127.0.0.1": ["127.0.0.1"], "meta.test": ["169.254.169.254"]}.get(host, [host])

    with pytest.raises(ImageError) as info:
        fetch_url(url, LOOPBACK_ONLY, resolver)
    message = str(info.value)
    assert message.startswith(f"refusing to fetch {url} (redirected to {target}): {reason}")


def test_redirect_to_internal_service_is_never_requested(http_server, internal_server):
    _Handler.hits.clear()
    secret = f"{internal_server.base}/ok.png"
    url = f"{http_server.base}/redirect?to={urllib.parse.quote(secret, safe='')}"
    with pytest.raises(ImageError, match=r"redirected to .*address 127.0.0.2 is loopback"):
        load_image(url, LOOPBACK_ONLY)
    assert not [hit for hit in _Handler.hits if hit.startswith("127.0.0.2 ")]
    # Trusting that network too makes the same chain work.
    both = ImageLimits(allowed_networks=("127.0.0.1/32", "127.0.0.2/32"))
    assert load_image(url, both).rgb.shape == (32, 32, 3)


def test_each_hop_resolved_once_and_connected_by_checked_ip(http_server):
    """No DNS-rebinding window: a second lookup would answer 127.0.0.2 (not trusted)."""
    answers = iter([["127.0.0.1"]])
    calls = []

    def rebinding_resolver(host, port):
        calls.append(host)
        return next(answers, ["127.0.0.2"])

    host = f"img.test:{http_server.port}"
    url = f"http://{host}/host?expect={host}"
    assert fetch_url(url, LOOPBACK_ONLY, rebinding_resolver) == PAYLOAD  # Host header kept
    assert calls == ["img.test"]


def test_redirect_hops_are_limited(http_server):
    with pytest.raises(ImageError, match=r"too many redirects \(more than 3\)"):
        fetch_url(f"{http_server.base}/loop", ImageLimits(allowed_networks=("127.0.0.1/32",), max_redirects=3))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", ["/trickle-body", "/trickle-headers", "/slow-loop"])
def test_trickling_server_cut_off_by_total_deadline(http_server, path):
    limits = ImageLimits(allowed_networks=("127.0.0.1/32",), url_timeout_s=20.0, url_deadline_s=1.5, max_redirects=50)
    url = f"{http_server.base}{path}"
    started = time.monotonic()
    with pytest.raises(ImageError) as info:
        fetch_url(url, limits)
    elapsed = time.monotonic() - started
    assert str(info.value) == f"{url}: timed out: the download did not finish within the 1.5 s deadline"
    assert elapsed < 4.0  # the per-read timeout (20 s) alone would never end these


def test_deadline_leaves_no_timer_behind(http_server):
    def timers() -> int:
        return sum(isinstance(t, threading.Timer) for t in threading.enumerate())

    before = timers()
    for _ in range(5):
        fetch_url(f"{http_server.base}/ok.png", LOOPBACK_ONLY)
    with pytest.raises(ImageError):
        fetch_url(f"{http_server.base}/missing", LOOPBACK_ONLY)
    end = time.monotonic() + 2.0
    while timers() > before and time.monotonic() < end:
        time.sleep(0.01)
    assert timers() <= before


# --------------------------------------------------------------------------- TLS


def _self_signed(tmp_path, name: str):
    """(cert.pem, key.pem) for `name`, made with cryptography (skip when missing)."""
    pytest.importorskip("cryptography")
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path):
    import ssl

    cert, key = _self_signed(tmp_path, "img.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    server = _Server("127.0.0.1")
    server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
    server.cert, server.sni = cert, names
    yield server
    server.close()


def test_https_by_pinned_ip_keeps_sni_host_header_and_certificate_check(tls_server, monkeypatch):
    import ssl

    import imfuse.fetch as fetch

    host = f"img.test:{tls_server.port}"
    url = f"https://{host}/host?expect={host}"
    resolve = lambda h, p: ["127.0.0.1"]  # noqa: E731
    with pytest.raises(ImageError, match=rf"^{re.escape(url)}: cannot download \(TLS certificate: .*\)$"):
        fetch_url(url, LOOPBACK_ONLY, resolve)  # self-signed: refused by the system CAs
    monkeypatch.setattr(fetch, "_tls_context", lambda: ssl.create_default_context(cafile=str(tls_server.cert)))
    assert fetch_url(url, LOOPBACK_ONLY, resolve) == PAYLOAD
    assert tls_server.sni[-1] == "img.test"
    # The certificate is for img.test: the same server reached by another name is refused.
    other = f"https://other.test:{tls_server.port}/ok.png"
    with pytest.raises(ImageError, match="TLS certificate"):
        fetch_url(other, LOOPBACK_ONLY, resolve)


@pytest.mark.parametrize(
    "url,reason",
    [
        ("http://[::1/x", "malformed URL"),
        ("http://127.0.0.1:99999/x", "invalid port"),
        ("http:///x", "no host name"),
    ],
)
def test_malformed_urls_are_one_line_errors(url, reason):
    with pytest.raises(ImageError, match=reason):
        fetch_url(url, ImageLimits(allow_private=True))
