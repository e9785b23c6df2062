"""`imfuse models ...`: inspect the style network variants."""

from __future__ import annotations

import argparse

from imfuse.errors import ConfigError

_VARIANT_CHOICES = ("full", "reduced", "all")


def _parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--sizes must be comma-separated integers like 256,512, got {text!r}") from None
    if not sizes or any(s < 16 or s > 8192 for s in sizes):
        raise ConfigError(f"--sizes needs sizes between 16 and 8192 px, got {text!r}")
    return sizes


def _describe(args: argparse.Namespace) -> int:
    sizes = _parse_sizes(args.sizes)
    from imfuse.networks.describe import describe_variants, format_base_models, format_summaries

    variants = ["full", "reduced"] if args.variant == "all" else [args.variant]
    print(format_summaries(describe_variants(variants, sizes)))
    print()
    print(format_base_models())
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="inspect the style network variants")
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    describe = sub.add_parser("describe", help="parameters and FLOPs per variant")
    describe.add_argument("--variant", choices=_VARIANT_CHOICES, default="all")
    describe.add_argument("--sizes", default="256,512", help="content sizes in px, comma-separated (default 256,512)")
    describe.set_defaults(func=_describe)
