"""Fetch image URLs without becoming an SSRF proxy or a hostage of slow servers.

A URL given to imfuse (CLI argument, list file in `data prepare`, batch style) may be
attacker-chosen. So every hop, redirects included, is resolved once, each address is
checked (loopback, link-local such as the 169.254.169.254 metadata service, private,
multicast, reserved, unspecified; IPv4-mapped/6to4/NAT64 IPv6 unwrapped), and the socket
goes to that checked address while the URL's host name still drives the Host header, SNI
and certificate check: no second DNS lookup for a rebinding attacker to answer. A total
wall-time deadline shuts the socket down, so a server trickling one byte per read cannot
hold a worker, and the byte cap holds while streaming.

Trusted networks: `ImageLimits(allow_private=True)` / `allowed_networks=(CIDR, ...)`, or
the environment variable named by `ALLOW_PRIVATE_ENV` ("1" allows every address, or a
comma-separated CIDR list allows just those networks).
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imfuse.errors import ConfigError, ImageError

if TYPE_CHECKING:
    from imfuse.images import ImageLimits

__all__ = ["ALLOW_PRIVATE_ENV", "Resolver", "address_problem", "fetch_url"]

ALLOW_PRIVATE_ENV = "IMFUSE_FETCH_ALLOW_PRIVATE"

Resolver = Callable[[str, int], Sequence[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_CHUNK = 1 << 16
_REDIRECTS = {301, 302, 303, 307, 308}
_NO_BODY = {204, 205, 206}  # 206: we never ask for ranges, a partial body is not the image
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_TRUE = {"1", "true", "yes", "on", "all"}
_FALSE = {"", "0", "false", "no", "off"}


# ----------------------------------------------------------------- address policy


def _kind(ip: IPAddress) -> str | None:
    """Why an address is off limits ("loopback", ...), or None when it is public."""
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("site-local", getattr(ip, "is_site_local", False)),
        ("not globally routable", not ip.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), which is what gets reached."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.ipv4_mapped or ip.sixtofour


def address_problem(ip: IPAddress) -> str | None:
    """Why `ip` must not be fetched ("loopback", "private (IPv4 10.0.0.1)"), None if public."""
    inner = _embedded_ipv4(ip)
    if inner is None:
        return _kind(ip)
    kind = _kind(inner)  # the IPv4 host is what the packets reach
    return None if kind is None else f"{kind} (IPv4 {inner})"


def _parse_networks(values: Sequence[str], where: str) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())
    except ValueError as exc:
        raise ConfigError(f"{where}: not a list of CIDR networks ({exc})") from None


@dataclass(frozen=True)
class _Policy:
    """Which non-public addresses the caller trusts: all of them, or some networks."""

    allow_all: bool
    networks: tuple[Network, ...]

    def permits(self, ip: IPAddress) -> bool:
        if self.allow_all:
            return True
        candidates = [ip] + [a for a in (_embedded_ipv4(ip),) if a is not None]
        return any(a.version == n.version and a in n for a in candidates for n in self.networks)


def _policy(limits: ImageLimits) -> _Policy:
    """Combine the limits with the environment variable (read per fetch, so workers see it)."""
    networks = _parse_networks(limits.allowed_networks, "ImageLimits.allowed_networks")
    raw = os.environ.get(ALLOW_PRIVATE_ENV, "").strip()
    if raw.lower() in _TRUE:
        return _Policy(True, networks)
    if raw.lower() not in _FALSE:
        networks += _parse_networks(raw.split(","), ALLOW_PRIVATE_ENV)
    return _Policy(limits.allow_private, networks)


# --------------------------------------------------------------------------- hops


@dataclass(frozen=True)
class _Hop:
    """One request target: the URL's parts plus the checked addresses to connect to."""

    url: str
    scheme: str
    host: str
    port: int
    target: str  # path + query sent in the request line
    addresses: tuple[str, ...]


def _split(url: str, limits: ImageLimits, what: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, request target) of an allowed URL."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise ImageError(f"{what}: malformed URL {url} ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in limits.allowed_schemes:
        if what != url:
            raise ImageError(f"{what}: redirect to disallowed scheme '{scheme}' ({url})")
        raise ImageError(f"{url}: URL scheme '{scheme}' is not allowed (allowed: {', '.join(limits.allowed_schemes)})")
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 80)
    except ValueError:
        raise ImageError(f"{what}: invalid port in {url}") from None
    if not parts.hostname:
        raise ImageError(f"{what}: no host name in {url}")
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    return scheme, parts.hostname, port, target


def _system_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _refusal(first: str, hop_url: str, host: str, ip: str, problem: str) -> ImageError:
    via = "" if hop_url == first else f" (redirected to {hop_url})"
    where = f"address {ip}" if host == ip else f"host {host} resolves to {ip}, which"
    return ImageError(
        f"refusing to fetch {first}{via}: {where} is {problem}; "
        f"set {ALLOW_PRIVATE_ENV}=1 (or a CIDR list) to allow private networks"
    )


def _checked_hop(url: str, first: str, limits: ImageLimits, policy: _Policy, resolver: Resolver) -> _Hop:
    """Resolve a hop once and refuse it if any of its addresses is off limits."""
    scheme, host, port, target = _split(url, limits, first)
    try:
        addresses = tuple(resolver(host, port))
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ImageError(f"{first}: cannot resolve host {host} ({reason})") from None
    if not addresses:
        raise ImageError(f"{first}: host {host} has no addresses")
    for text in addresses:
        ip = ipaddress.ip_address(text)
        problem = address_problem(ip)
        if problem is not None and not policy.permits(ip):
            raise _refusal(first, url, host, text, problem)
    return _Hop(url, scheme, host, port, target, addresses)


# ----------------------------------------------------------------------- deadline


class _DeadlineExpired(Exception):
    """Internal: the fetch ran out of wall time."""


class _Deadline:
    """Total wall time of one fetch; when it runs out the open sockets are shut down,
    which wakes any blocked read, so no sequence of slow reads can outlive it."""

    def __init__(self, seconds: float):
        self.expired = False
        self._end = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._timer = threading.Timer(max(seconds, 0.0), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        remaining = self._end - time.monotonic()
        if remaining <= 0 or self.expired:
            raise _DeadlineExpired
        return remaining

    def over(self) -> bool:
        """Expired, or about to be: a connect given the last milliseconds as its timeout
        fails before the timer fires, and is the deadline's failure all the same."""
        return self.expired or time.monotonic() >= self._end

    def watch(self, sock: socket.socket, replaces: socket.socket | None = None) -> None:
        with self._lock:
            if replaces in self._socks:
                self._socks.remove(replaces)
            self._socks.append(sock)
            if self.expired:
                _shutdown(sock)

    def close_sockets(self) -> None:
        """Close watched sockets under the lock, so the timer never touches a reused fd."""
        with self._lock:
            for sock in self._socks:
                sock.close()
            self._socks.clear()

    def cancel(self) -> None:
        self._timer.cancel()
        self.close_sockets()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._socks:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    try:
        # socket.socket's own shutdown, also for SSLSocket: it must not drop the TLS
        # object under a reader in another thread; the reader then just sees EOF.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


# ------------------------------------------------------------------- connection


class _PinnedConnection(http.client.HTTPConnection):
    """http.client connection whose socket goes to the hop's checked addresses only.

    The base class keeps the URL's host name for the Host header; TLS uses it for SNI
    and the certificate check. Only `connect` (the documented override point) changes.
    """

    def __init__(self, hop: _Hop, deadline: _Deadline, read_timeout: float):
        super().__init__(hop.host, hop.port, timeout=read_timeout)
        self._hop = hop
        self._deadline = deadline

    def connect(self) -> None:
        error: OSError | None = None
        for address in self._hop.addresses:
            try:
                sock = socket.create_connection(
                    (address, self._hop.port), timeout=min(self.timeout, self._deadline.left())
                )
            except OSError as exc:
                error = exc
                continue
            self._deadline.watch(sock)
            self.sock = self._wrap_tls(sock) if self._hop.scheme == "https" else sock
            return
        raise error or OSError("no address to connect to")

    def _wrap_tls(self, sock: socket.socket) -> ssl.SSLSocket:
        tls = _tls_context().wrap_socket(sock, server_hostname=self._hop.host, do_handshake_on_connect=False)
        self._deadline.watch(tls, replaces=sock)
        tls.do_handshake()
        return tls


def _tls_context() -> ssl.SSLContext:
    """System CAs, certificate and host name checks on (what urllib did before)."""
    return ssl.create_default_context()


# -------------------------------------------------------------------------- fetch


def _read_body(resp: http.client.HTTPResponse, first: str, limits: ImageLimits) -> bytes:
    """The body, cut off at the byte cap while streaming (Content-Length is only a hint)."""
    declared = resp.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > limits.max_bytes:
        raise ImageError(f"{first}: download is {declared} bytes, over the {limits.max_bytes}-byte limit")
    chunks: list[bytes] = []
    total = 0
    while chunk := resp.read1(_CHUNK):
        total += len(chunk)
        if total > limits.max_bytes:
            raise ImageError(f"{first}: download exceeded the {limits.max_bytes}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _request(hop: _Hop, first: str, limits: ImageLimits, deadline: _Deadline) -> tuple[str | None, bytes]:
    """One GET: (redirect location, b"") or (None, body)."""
    conn = _PinnedConnection(hop, deadline, limits.url_timeout_s)
    try:
        conn.request("GET", hop.target, headers={"User-Agent": "imfuse", "Accept-Encoding": "identity"})
        resp = conn.getresponse()
        if resp.status in _REDIRECTS:
            location = resp.getheader("Location")
            if not location:
                raise ImageError(f"{first}: HTTP {resp.status} redirect without a Location header")
            return urllib.parse.urljoin(hop.url, location), b""
        if not 200 <= resp.status < 300 or resp.status in _NO_BODY:
            raise ImageError(f"{first}: HTTP {resp.status} {resp.reason}")
        return None, _read_body(resp, first, limits)
    finally:
        deadline.close_sockets()
        conn.close()


def _fetch_hops(url: str, limits: ImageLimits, resolver: Resolver, deadline: _Deadline) -> bytes:
    policy = _policy(limits)
    current = url
    for _ in range(limits.max_redirects + 1):
        hop = _checked_hop(current, url, limits, policy, resolver)
        location, body = _request(hop, url, limits, deadline)
        if location is None:
            if deadline.expired:  # a shut-down socket reads as EOF: never return a cut body
                raise _DeadlineExpired
            return body
        current = location
    raise ImageError(f"{url}: too many redirects (more than {limits.max_redirects})")


def fetch_url(url: str, limits: ImageLimits, resolver: Resolver | None = None) -> bytes:
    """Download `url` under the address policy, the total deadline and the byte cap.

    `resolver(host, port) -> [ip, ...]` replaces DNS (tests, custom resolution); each hop
    is resolved exactly once and connected to by those addresses.
    """
    deadline = _Deadline(limits.url_deadline_s)
    try:
        return _fetch_hops(url, limits, resolver or _system_resolve, deadline)
    except (ImageError, _DeadlineExpired, OSError, http.client.HTTPException) as exc:
        if isinstance(exc, _DeadlineExpired) or deadline.over():
            raise ImageError(f"{url}: timed out: the download did not finish within the "
                             f"{limits.url_deadline_s:g} s deadline") from None
        if isinstance(exc, ImageError):
            raise
        raise _network_error(url, limits, exc) from None
    finally:
        deadline.cancel()


def _network_error(url: str, limits: ImageLimits, exc: BaseException) -> ImageError:
    if isinstance(exc, TimeoutError):
        return ImageError(f"{url}: timed out after {limits.url_timeout_s:g} s without a response")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ImageError(f"{url}: cannot download (TLS certificate: {exc.verify_message})")
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return ImageError(f"{url}: cannot download ({reason})")
