"""A real `mlflow server` (SQLite backend, tmp artifact root) shared by the whole test session.

Import the fixture into a test module (`from mlflow_server import mlflow_server`); every
module that does so gets the same server: the process is kept on the pytest config, so
importing the fixture into several modules still starts it once.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

_KEY = "_imfuse_mlflow_server"


def _start(config) -> str:
    from imfuse.tracking.server import StoreLocation, start_server, stop_server

    root = Path(tempfile.mkdtemp(prefix="imfuse-mlflow-server-"))
    store = StoreLocation(f"sqlite:///{root / 'mlflow.db'}", str(root / "artifacts"))
    proc, url = start_server(store, log_path=root / "server.log", timeout=180)
    config.add_cleanup(lambda: stop_server(proc))
    return url


@pytest.fixture(scope="session")
def mlflow_server(request) -> str:
    """URL (http://127.0.0.1:PORT) of a running tracking + registry server."""
    config = request.config
    url = getattr(config, _KEY, None)
    if url is None:
        url = _start(config)
        setattr(config, _KEY, url)
    return url
