"""A real `mlflow server` (SQLite backend, tmp artifact root) shared by the whole test session.

Import the fixture into a test module (`from mlflow_server import mlflow_server`); every
module that does so gets the same server: the process is kept on the pytest config, so
importing the fixture into several modules still starts it once.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

_KEY = "_imfuse_mlflow_server"


def _start(config, root: Path) -> str:
    from imfuse.tracking.server import StoreLocation, start_server, stop_server

    store = StoreLocation(f"sqlite:///{root / 'mlflow.db'}", str(root / "artifacts"))
    # Cleanups run last-in first-out: the server stops, then its folder goes.
    config.add_cleanup(lambda: shutil.rmtree(root, ignore_errors=True))
    proc, url = start_server(store, log_path=root / "server.log", timeout=180)
    config.add_cleanup(lambda: stop_server(proc))
    return url


@pytest.fixture(scope="session")
def mlflow_server(request, tmp_path_factory) -> str:
    """URL (http://127.0.0.1:PORT) of a running tracking + registry server."""
    config = request.config
    url = getattr(config, _KEY, None)
    if url is None:
        # Under pytest's own temp root, so a run killed before its cleanups (a timeout) leaves
        # it where pytest's retention of the last few runs removes it, not in /tmp for good.
        url = _start(config, tmp_path_factory.mktemp("mlflow-server"))
        setattr(config, _KEY, url)
    return url


def register_file(run, model_path, *, name: str | None = None) -> int:
    """Log `model_path` (a .keras file, a SavedModel or a package dir) as `run`'s `model`
    artefact and register it as a challenger version, returning the version: what
    imfuse.training.tracked.register_model does, without exporting a SavedModel first, so
    registry tests can use small stand-in files."""
    from imfuse.tracking import MODEL_ARTIFACT, TAG_FILE, TAG_FORMAT, registered_model_name
    from imfuse.tracking.registry import register_run_model

    path = Path(model_path)
    run.log_artifact(path, MODEL_ARTIFACT)
    if path.is_file():
        model_format = "keras"
    elif (path / "saved_model.pb").is_file():
        model_format = "saved_model"
    else:
        model_format = "keras+saved_model"  # imfuse.export.package_model
    tags = {TAG_FORMAT: model_format, TAG_FILE: path.name if path.is_file() else ""}
    return register_run_model(run.tracking_uri, run.run_id, name or registered_model_name(run.variant), tags=tags)
