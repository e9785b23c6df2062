"""Tracking URI resolution, one cached MlflowClient per store, MLflow errors -> TrackingError.

A down server must fail in seconds with a readable message, not after MLflow's default
seven retries with exponential backoff, so HTTP stores are probed (`/health`) first.
"""

from __future__ import annotations

import contextlib
import os
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from imfuse.errors import TrackingError

WORK_DIR = "imfuse-work"
_ENV = "MLFLOW_TRACKING_URI"


def default_tracking_uri(cwd: str | os.PathLike | None = None) -> str:
    """The embedded default store: `sqlite:///<cwd>/imfuse-work/mlflow.db`."""
    base = Path(cwd or os.getcwd()).resolve() / WORK_DIR
    return f"sqlite:///{base / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None) -> str:
    """Explicit argument > MLFLOW_TRACKING_URI > embedded default under the working dir."""
    uri = uri or os.environ.get(_ENV)
    return _normalise(uri) if uri else default_tracking_uri()


def _normalise(uri: str) -> str:
    """A bare path means a local file store; make it absolute so every process agrees."""
    if "://" in uri or uri.startswith("sqlite:") or uri.startswith("databricks"):
        return uri.rstrip("/") if uri.startswith("http") else uri
    return Path(uri).resolve().as_uri()


def sqlite_path(uri: str) -> Path | None:
    """File of a `sqlite:///...` URI (None for other stores)."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def artifact_root_for(uri: str) -> str | None:
    """Artifact folder kept next to a local store (None: the store/server decides).

    SQLite stores keep artifacts in `<db dir>/mlartifacts`, so the default store puts
    them in `<cwd>/imfuse-work/mlartifacts` and `imfuse ui` finds them again.
    """
    db = sqlite_path(uri)
    return None if db is None else str(db.parent / "mlartifacts")


def is_http(uri: str) -> bool:
    return uri.startswith("http://") or uri.startswith("https://")


def health_problem(url: str, timeout: float) -> str | None:
    """Why the tracking server at `url` fails its health check, or None when it answers."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return None if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """TrackingError unless an HTTP tracking server answers its health check."""
    reason = health_problem(uri, timeout) if is_http(uri) else None
    if reason is not None:
        raise TrackingError(
            f"cannot reach the MLflow tracking server at {uri} ({reason}); start it (e.g. `imfuse ui`) "
            "or pass another --mlflow-uri / MLFLOW_TRACKING_URI"
        )


@lru_cache(maxsize=8)
def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def get_client(uri: str):
    """A client whose tracking and registry stores are both `uri` (after a reachability check)."""
    # Fail fast on a flaky server instead of retrying for minutes (callers can still override).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    check_reachable(uri)
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    with tracking_errors(uri, "opening the store"):
        return _client(uri)


def open_store(tracking_uri: str | None) -> tuple[str, object]:
    """(resolved URI, its client): what every registry and run call starts from."""
    uri = resolve_tracking_uri(tracking_uri)
    return uri, get_client(uri)


def error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", "") or "")


@contextlib.contextmanager
def tracking_errors(uri: str, action: str) -> Iterator[None]:
    """Re-raise anything MLflow or the network throws as one readable TrackingError."""
    try:
        yield
    except TrackingError:
        raise
    except Exception as exc:  # noqa: BLE001 - MlflowException, requests/urllib3, sqlalchemy errors
        from mlflow.exceptions import MlflowException

        if not isinstance(exc, (MlflowException, OSError)) and "requests" not in type(exc).__module__:
            if "sqlalchemy" not in type(exc).__module__ and "urllib3" not in type(exc).__module__:
                raise
        message = str(getattr(exc, "message", None) or exc).strip().splitlines()
        first = message[0] if message else type(exc).__name__
        raise TrackingError(f"MLflow at {uri}: {action} failed: {first[:400]}") from None
