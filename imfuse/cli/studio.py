"""`imfuse studio`: a web page for stylising images and comparing model versions.

A thin shell over imfuse.studio: heavy imports (TensorFlow, Starlette, uvicorn) happen
inside the handler so `imfuse --help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys

from imfuse.errors import ConfigError


def register(subparsers) -> None:
    from imfuse.studio.config import StudioConfig as D

    p = subparsers.add_parser(
        "studio",
        help="web app: stylise images in a browser, compare model versions side by side",
        description=(
            "Serve the imfuse studio page. Without --target it loads the model itself (the shipped "
            "base model unless --model is given); with --target it calls `imfuse serve` or TF Serving "
            "(gRPC, or REST with --rest). With an MLflow store it compares registry versions and shows "
            "their metrics."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--target", default=None, help="HOST:PORT of imfuse serve / TF Serving (default: load a model here)")
    p.add_argument("--rest", action="store_true", help="--target is the REST port (default: gRPC)")
    p.add_argument("--model-name", default=D.model_name, help="served model name")
    p.add_argument("--model", default=None, help="model loaded here without --target (.keras; default: shipped base model)")
    p.add_argument("--mlflow-uri", default=None,
                   help="tracking URI for registry versions and metrics (default: MLFLOW_TRACKING_URI, "
                        "else ./imfuse-work/mlflow.db when it exists)")
    p.add_argument("--mlflow-ui-url", default=None,
                   help="where a browser opens the MLflow UI, for run links (default: the tracking URI when it "
                        "is http(s), else http://127.0.0.1:5000, where `imfuse ui` listens)")
    p.add_argument("--registered-model", default=D.registered_model, help="registered model whose versions compare")
    p.add_argument("--host", default=D.host,
                   help="address to listen on (127.0.0.1: this machine only; 0.0.0.0 accepts other machines, "
                        "there is no authentication)")
    p.add_argument("--port", type=int, default=D.port, help="port to listen on")
    p.add_argument("--timeout", type=float, default=D.timeout_s, help="deadline of each serving call, seconds")
    p.set_defaults(func=run)


def _tracking_uri(explicit: str | None) -> str | None:
    """Explicit > MLFLOW_TRACKING_URI > the default local store, only if it already exists."""
    from imfuse.tracking.client import default_tracking_uri, resolve_tracking_uri, sqlite_path

    if explicit:
        return resolve_tracking_uri(explicit)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    uri = default_tracking_uri()
    path = sqlite_path(uri)
    return uri if path is not None and path.is_file() else None


def _check_port_free(host: str, port: int) -> None:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    from imfuse.config_io import config_from_args
    from imfuse.studio.config import StudioConfig

    mlflow_uri = _tracking_uri(args.mlflow_uri)
    ui = args.mlflow_ui_url
    if not ui and mlflow_uri and not mlflow_uri.startswith(("http://", "https://")):
        ui = "http://127.0.0.1:5000"
    config = config_from_args(StudioConfig, args, mlflow_uri=mlflow_uri, mlflow_ui_url=ui, timeout_s=args.timeout)
    config.validate()
    if args.model not in (None, "", "base") and not os.path.exists(args.model):
        raise ConfigError(f"--model {args.model}: no such file")
    _check_port_free(config.host, config.port)

    import uvicorn

    from imfuse.studio.app import create_app

    app = create_app(config)
    backend = app.state.studio.backend
    if hasattr(backend, "warm_up"):  # load and trace the local model now, not on the first click
        backend.warm_up()
    where = config.target or backend.description
    print(f"imfuse studio on http://{config.host}:{config.port}/ (stylising with {where}"
          f"{'; MLflow ' + mlflow_uri if mlflow_uri else ''})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
    return 0
