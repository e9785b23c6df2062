"""`imfuse registry list|promote|compare`: the MLflow model registry from the terminal."""

from __future__ import annotations

import argparse
import time


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "registry",
        help="list, promote and compare registered model versions (MLflow registry)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = p.add_subparsers(dest="registry_command", metavar="ACTION")

    ls = sub.add_parser("list", help="versions with aliases, run ids and key metrics")
    ls.add_argument("--name", action="append", default=None, help="registered model (repeatable; default: all)")
    add_uri_option(ls)
    ls.set_defaults(func=run_list)

    pr = sub.add_parser("promote", help="set alias 'champion' on an existing version")
    pr.add_argument("name", help="registered model, e.g. imfuse-reduced")
    pr.add_argument("version", help="version number")
    pr.add_argument("--require-blessing", action="store_true", help="refuse unless the version's evaluation blessed it")
    add_uri_option(pr)
    pr.set_defaults(func=run_promote)

    cmp_ = sub.add_parser("compare", help="table of versions x metrics")
    cmp_.add_argument("--name", action="append", default=None, help="registered model (repeatable; default: all)")
    cmp_.add_argument("--metrics", nargs="+", default=None, help="metric names (default: train/loss and eval/*)")
    add_uri_option(cmp_)
    cmp_.set_defaults(func=run_compare)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def add_uri_option(parser) -> None:
    parser.add_argument("--mlflow-uri", default=None, help="tracking URI (default: MLFLOW_TRACKING_URI or ./imfuse-work)")


def _names(args) -> list[str]:
    from imfuse.tracking.registry import list_models

    return args.name or list_models(args.mlflow_uri)


def run_list(args) -> int:
    from imfuse.tracking import TAG_BLESSED
    from imfuse.tracking.registry import DEFAULT_METRICS, list_versions

    names = _names(args)
    if not names:
        print("no registered models yet (run `imfuse train` first)")
        return 0
    for name in names:
        versions = list_versions(name, args.mlflow_uri)
        print(f"{name}: {len(versions)} version(s)")
        for v in versions:
            created = time.strftime("%Y-%m-%d %H:%M", time.localtime(v.created_ms / 1000))
            aliases = ",".join(v.aliases) or "-"
            blessed = v.run_tags.get(TAG_BLESSED, "-")
            metrics = "  ".join(f"{m}={v.metrics[m]:.5g}" for m in DEFAULT_METRICS if m in v.metrics)
            print(f"  v{v.version:<4} {aliases:<22} run {v.run_id or '-'}  {created}  blessed={blessed}  {metrics}".rstrip())
    return 0


def run_promote(args) -> int:
    from imfuse.tracking.registry import promote

    info = promote(args.name, args.version, args.mlflow_uri, require_blessing=args.require_blessing)
    print(f"{info.name} version {info.version} is now champion (aliases: {', '.join(info.aliases)}; run {info.run_id})")
    return 0


def run_compare(args) -> int:
    from imfuse.tracking.registry import DEFAULT_METRICS, compare, format_table

    names = _names(args)
    header, rows = compare(names, tuple(args.metrics or DEFAULT_METRICS), args.mlflow_uri)
    print(format_table(header, rows) if rows else "no registered versions")
    return 0
