"""`imfuse serve` (local TF Serving stand-in) and `imfuse client ...` (gRPC/REST client).

Flags mirror tensorflow_model_server's (`--model_base_path` spellings are accepted too)
so commands move between this server and the real one unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from imfuse.errors import ConfigError, ImageError

from imfuse.serving.defaults import ADMIN_PORT as DEFAULT_ADMIN_PORT
from imfuse.serving.defaults import MAX_IMAGES_PER_REQUEST as DEFAULT_MAX_IMAGES
from imfuse.serving.defaults import MAX_PIXELS_PER_REQUEST as DEFAULT_MAX_PIXELS
from imfuse.serving.defaults import METRICS_PATH as DEFAULT_METRICS_PATH
from imfuse.serving.defaults import MODEL_NAME


def _flag(parser: argparse.ArgumentParser, *names: str, **kwargs) -> None:
    """--a-b plus TF Serving's --a_b spelling (for each given name)."""
    flags = []
    for name in names:
        flags.append(f"--{name}")
        if "-" in name:
            flags.append(f"--{name.replace('-', '_')}")
    parser.add_argument(*flags, **kwargs)


def register(subparsers) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="serve SavedModels over TF Serving's gRPC and REST APIs (development stand-in)",
        description="Local stand-in for TF Serving: PredictionService/ModelService over gRPC and "
        "TF Serving's REST API, polling the versioned base path. Production runs tensorflow/serving.",
    )
    _flag(serve, "model-name", default=MODEL_NAME, help=f"model name (default: {MODEL_NAME})")
    _flag(serve, "model-base-path", help="folder holding integer version folders, e.g. models/imfuse")
    serve.add_argument("--base-model", action="store_true",
                       help="serve the shipped base model (exported as version 1 to a temporary base path)")
    _flag(serve, "model-config-file", help="TF Serving model_config_list text proto (e.g. serving/models.config)")
    _flag(serve, "port", type=int, default=8500, help="gRPC port (default 8500)")
    _flag(serve, "rest-port", "rest-api-port", type=int, default=8501, help="REST port (default 8501; 0 disables REST)")
    _flag(serve, "host", default="127.0.0.1",
          help="address the gRPC and REST ports bind to (default 127.0.0.1, this machine only; "
          "give --host 0.0.0.0 to accept connections from other machines: there is no authentication)")
    _flag(serve, "enable-batching", action="store_true", help="merge concurrent requests into batches")
    _flag(serve, "batching-parameters-file", help="TF Serving BatchingParameters text proto (implies batching)")
    _flag(serve, "file-system-poll-wait-seconds", type=float, default=2.0, help="base path poll interval (0: load once)")
    _flag(serve, "max-request-bytes", type=int, default=64 * 1024 * 1024, help="largest accepted request (default 64 MiB)")
    _flag(serve, "version-labels", help="version labels, e.g. stable=1,canary=2 (adds to the config file's)")
    limits = serve.add_argument_group("request limits")
    _flag(limits, "max-images-per-request", type=int, default=DEFAULT_MAX_IMAGES,
          help=f"most encoded images (non-empty string input values) in one request (default {DEFAULT_MAX_IMAGES})")
    _flag(limits, "max-pixels-per-request", type=int, default=DEFAULT_MAX_PIXELS,
          help=f"most pixels the images of one request may declare in their headers, in total (default {DEFAULT_MAX_PIXELS})")
    _flag(limits, "max-concurrent-rpcs", type=int, default=64,
          help="gRPC calls handled or queued at once; more get RESOURCE_EXHAUSTED (default 64)")
    _flag(limits, "rest-max-connections", type=int, default=64,
          help="REST connections plus in-flight requests; more get HTTP 503 (default 64)")
    _flag(limits, "rest-body-timeout-seconds", type=float, default=30.0,
          help="deadline for receiving a REST request body; slower clients get HTTP 408 (default 30)")
    _flag(limits, "rest-keep-alive-seconds", type=int, default=5,
          help="idle REST keep-alive connections are closed after this (default 5)")
    admin = serve.add_argument_group("model management")
    _flag(admin, "enable-model-management", action="store_true",
          help="serve ModelService.HandleReloadConfigRequest on --admin-port (127.0.0.1 only); off by default, "
          "and never on the Predict port")
    _flag(admin, "admin-port", type=int, default=DEFAULT_ADMIN_PORT,
          help=f"gRPC port for model management, bound to 127.0.0.1 (default {DEFAULT_ADMIN_PORT})")
    _flag(admin, "model-root", action="append", default=[], metavar="DIR",
          help="a reloaded config's base paths must lie inside one of these folders (repeatable; "
          "default: the folders holding the base paths given at start)")
    _flag(serve, "monitoring-config-file",
          help="TF Serving MonitoringConfig text proto: prometheus_config { enable, path } for the metrics "
          f"endpoint on the REST port (default: on at {DEFAULT_METRICS_PATH})")
    serve.set_defaults(func=run_serve)

    client = subparsers.add_parser("client", help="call a TF Serving / imfuse serve endpoint")
    sub = client.add_subparsers(dest="client_command", metavar="ACTION")

    def common(p: argparse.ArgumentParser, func) -> None:
        """The flags every client action takes, and its handler."""
        p.add_argument("--target", default="localhost:8500", help="HOST:PORT (gRPC; the REST port with --rest)")
        p.add_argument("--model-name", default=MODEL_NAME)
        choice = p.add_mutually_exclusive_group()
        choice.add_argument("--version", type=int, help="serve a specific version")
        choice.add_argument("--label", help="serve the version behind a label (stable, canary)")
        p.add_argument("--rest", action="store_true", help="use the REST API instead of gRPC")
        p.add_argument("--timeout", type=float, default=30.0, help="deadline per call in seconds")
        p.add_argument("--retries", type=int, default=3, help="retries on UNAVAILABLE")
        p.set_defaults(func=func)

    stylize = sub.add_parser("stylize", help="stylise CONTENT with STYLE, write a PNG")
    stylize.add_argument("content", help="content image file")
    stylize.add_argument("style", nargs="?", help="style image file (or --embedding)")
    stylize.add_argument("-o", "--output", required=True, help="output PNG path")
    stylize.add_argument("--embedding", metavar="STYLE.json",
                         help="a style fitted by `imfuse fit-style` with the served model, instead of STYLE "
                              "(the stylize_with_embedding signature)")
    stylize.add_argument("--strength", type=float, help="style strength in [0, 1] (model default if omitted)")
    common(stylize, run_client_stylize)
    common(sub.add_parser("status", help="version states of a model (GetModelStatus)"), run_client_status)
    common(sub.add_parser("metadata", help="signature defs of a model (GetModelMetadata), as JSON"),
           run_client_metadata)
    client.set_defaults(func=lambda args: (client.print_help(), 2)[1])


def _export_base_model(name: str) -> str:
    """The shipped base model as a SavedModel version 1 under a fresh temporary base path."""
    import tempfile

    from imfuse.base_model import base_model_path
    from imfuse.export import export_saved_model
    from imfuse.networks import load_model

    root = tempfile.mkdtemp(prefix="imfuse-base-serving-")
    path = export_saved_model(load_model(base_model_path()), root, name=name, version=1)
    print(f"serving the shipped base model, exported to {path}", file=sys.stderr)
    return str(path.parent)


def run_serve(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from imfuse.config_io import config_from_args
    from imfuse.serving.config import BatchingOptions, load_batching_file, load_monitoring_file, parse_version_labels
    from imfuse.serving.limits import RequestLimits
    from imfuse.serving.rest import RestOptions
    from imfuse.serving.server import ServerOptions, serve

    batching = None
    if args.batching_parameters_file:
        batching = load_batching_file(args.batching_parameters_file)
    elif args.enable_batching:
        batching = BatchingOptions()
    for name in ("port", "rest_port", "admin_port"):
        value = getattr(args, name)
        if not 0 <= value < 65536:
            raise ConfigError(f"--{name.replace('_', '-')} must be a port number, got {value}")
    base_path = args.model_base_path
    if args.base_model:
        if base_path or args.model_config_file:
            raise ConfigError("--base-model replaces --model-base-path and --model-config-file; give only one")
        base_path = _export_base_model(args.model_name)
    options = config_from_args(  # model_name, model_config_file, ports, host, ... under their flags' names
        ServerOptions, args,
        model_base_path=base_path,
        version_labels=parse_version_labels(args.version_labels),
        rest_port=args.rest_port or None,
        batching=batching,
        poll_wait_s=args.file_system_poll_wait_seconds,
        limits=RequestLimits(max_images=args.max_images_per_request, max_pixels=args.max_pixels_per_request),
        rest=RestOptions(
            timeout_keep_alive_s=args.rest_keep_alive_seconds,
            body_timeout_s=args.rest_body_timeout_seconds,
            limit_concurrency=args.rest_max_connections,
            metrics_path=load_monitoring_file(args.monitoring_config_file) if args.monitoring_config_file
            else DEFAULT_METRICS_PATH,
        ),
        model_roots=tuple(args.model_root),
    )
    serve(options)
    return 0


def _client(args: argparse.Namespace):
    from imfuse.serving.client import make_client

    return make_client(
        args.target,
        rest=args.rest,
        model_name=args.model_name,
        version=args.version,
        version_label=args.label,
        timeout_s=args.timeout,
        retries=args.retries,
    )


def _read(path: str, what: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"{what} image not found: {p}")
    data = p.read_bytes()
    if not data:
        raise ImageError(f"{what} image is empty: {p}")
    return data


def run_client_stylize(args: argparse.Namespace) -> int:
    from imfuse.stylize import check_strength

    if args.strength is not None:
        check_strength(args.strength, "--strength")
    if bool(args.style) == bool(args.embedding):
        raise ConfigError("give either STYLE or --embedding")
    content = _read(args.content, "content")
    if args.embedding:
        from imfuse.style_fit import load_style_embedding

        png = _client(args).stylize_with_embedding(content, load_style_embedding(args.embedding), args.strength)
    else:
        png = _client(args).stylize(content, _read(args.style, "style"), args.strength)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png)
    print(f"wrote {out} ({len(png)} bytes)")
    return 0


def run_client_status(args: argparse.Namespace) -> int:
    for entry in _client(args).status():
        error = f" ({entry['error_message']})" if entry["error_message"] else ""
        print(f"{args.model_name} version {entry['version']}: {entry['state']}{error}")
    return 0


def run_client_metadata(args: argparse.Namespace) -> int:
    json.dump(_client(args).metadata(), sys.stdout, indent=2)
    print()
    return 0
