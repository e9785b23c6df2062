"""`imfuse` command line: discovers subcommand modules in this package.

Each module `imfuse/cli/<area>.py` defines `register(subparsers)` and sets
`func=handler` on its parsers. Modules keep heavy imports (TensorFlow, Beam, MLflow)
inside handlers so `imfuse --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback

from imfuse import __version__
from imfuse.errors import ImfuseError

# Command groups that never touch TensorFlow, so they skip its import.
_TF_FREE_COMMANDS = {"registry", "ui", "pipeline"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imfuse",
        description="Arbitrary neural style transfer: data, training, registry, serving, pipelines.",
    )
    parser.add_argument("--version", action="version", version=f"imfuse {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ start-up chatter is noise for CLI users; IMFUSE_DEBUG keeps it.
    if not os.environ.get("IMFUSE_DEBUG"):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if args.command not in _TF_FREE_COMMANDS:
            from imfuse._quiet import import_tensorflow_quietly

            import_tensorflow_quietly()
        result = args.func(args)
        return int(result or 0)
    except ImfuseError as exc:
        print(f"imfuse: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("imfuse: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if os.environ.get("IMFUSE_DEBUG"):
            traceback.print_exc()
        print(
            f"imfuse: internal error: {type(exc).__name__}: {exc} "
            "(set IMFUSE_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
