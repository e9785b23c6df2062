"""`imfuse ui`: the MLflow UI on the tracking store the other commands use."""

from __future__ import annotations

import argparse

from imfuse.cli.registry import add_uri_option


def register(subparsers) -> None:
    ui = subparsers.add_parser(
        "ui",
        help="open the MLflow UI on the tracking store (runs, metrics, registry)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--host", default="127.0.0.1")
    add_uri_option(ui)
    ui.set_defaults(func=run_ui)


def run_ui(args) -> int:
    from imfuse.tracking.client import is_http, resolve_tracking_uri
    from imfuse.tracking.server import start_server, stop_server, store_for_uri

    uri = resolve_tracking_uri(args.mlflow_uri)
    if is_http(uri):
        print(f"tracking URI {uri} is already a server: open {uri}")
        return 0
    import signal
    import sys

    store = store_for_uri(uri)
    proc, url = start_server(store, host=args.host, port=args.port)
    # `kill` (SIGTERM) must also stop the server, which runs in its own process group.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    print(f"MLflow UI on {store.backend_uri} (artifacts {store.artifact_root}): {url}  (Ctrl-C to stop)", flush=True)
    try:
        return proc.wait()
    finally:
        stop_server(proc)
