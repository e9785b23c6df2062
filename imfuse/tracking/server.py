"""Start a local `mlflow server` on a store: `imfuse ui` and the test fixture share this.

The server runs in its own process group so stopping it also stops the uvicorn
workers it spawns.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from imfuse.errors import ConfigError, TrackingError
from imfuse.tracking.client import artifact_root_for, health_problem, is_http, sqlite_path


@dataclass(frozen=True)
class StoreLocation:
    """Where a server keeps runs/registry (backend URI) and artefacts (a folder)."""

    backend_uri: str
    artifact_root: str


def store_for_uri(uri: str) -> StoreLocation:
    """Backend and artefact folder of a local tracking URI (sqlite:/// or file:)."""
    if is_http(uri):
        raise ConfigError(f"{uri} is already a tracking server; open it in a browser")
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        return StoreLocation(uri, artifact_root_for(uri))
    if uri.startswith("file:"):
        path = Path(uri[len("file://"):] if uri.startswith("file://") else uri[len("file:"):])
        return StoreLocation(uri, str(path))
    raise ConfigError(f"cannot serve tracking URI {uri}: use sqlite:///PATH.db or a file: store")


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def server_command(store: StoreLocation, host: str = "127.0.0.1", port: int = 5000, workers: int = 1) -> list[str]:
    """`mlflow server` serving the store's artefacts through the server (proxied uploads)."""
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", store.backend_uri,
        "--artifacts-destination", store.artifact_root,
        "--host", host,
        "--port", str(port),
        "--workers", str(workers),
    ]  # fmt: skip


def start_server(
    store: StoreLocation,
    host: str = "127.0.0.1",
    port: int | None = None,
    log_path: str | os.PathLike | None = None,
    timeout: float = 120.0,
) -> tuple[subprocess.Popen, str]:
    """Start the server, wait for its health check; returns (process, URL)."""
    if port and port_in_use(host, port):
        raise TrackingError(f"port {port} on {host} is already in use; pass another --port")
    port = port or free_port(host)
    Path(store.artifact_root).mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    # The GenAI job runner (trace scoring schedulers) only costs start-up time and CPU here.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    proc = subprocess.Popen(
        server_command(store, host, port),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    if log_path:
        log.close()
    url = f"http://{host}:{port}"
    try:
        wait_until_ready(url, proc, timeout)
    except BaseException:
        stop_server(proc)
        raise
    return proc, url


def wait_until_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TrackingError(f"mlflow server exited with code {proc.returncode} before {url} came up")
        if health_problem(url, timeout=2) is None:
            return
        time.sleep(0.3)
    raise TrackingError(f"mlflow server at {url} did not answer within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM the server's process group (server + its workers); SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        pass
