"""`imfuse data prepare|demo`: build a prepared dataset, or demo images to build one from.

Beam pipeline options go after `--` and reach PipelineOptions untouched, e.g.
    imfuse data prepare --content photos/ --styles 'art/*.jpg' --out ds -- --direct_num_workers=2
    imfuse data prepare ... --runner DataflowRunner -- --project=P --region=R --temp_location=gs://b/tmp \\
        --setup_file=./setup.py
"""

from __future__ import annotations

import argparse
import logging
import sys


def register(subparsers) -> None:
    from imfuse.data.prepare import IMAGE_FORMATS
    from imfuse.data.prepare import PrepareConfig as D

    data = subparsers.add_parser("data", help="prepare datasets (Beam ingest) and demo images")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(func=lambda args: (data.print_help(), 2)[1])

    p = sub.add_parser(
        "prepare",
        help="validate, dedupe, split and resize images into TFRecords (Apache Beam)",
        description=(
            "Ingest content and style images into DIR: manifest.json, quarantine.jsonl and "
            "{content,style}/{train,eval,unseen}/*.tfrecord. SRC is a folder, a glob or a "
            ".txt/.lst file listing URIs, on any Beam filesystem. Beam options follow '--'."
        ),
        epilog=(
            "runners: DirectRunner (default, local threads), FlinkRunner, SparkRunner, "
            "DataflowRunner; their options (e.g. --flink_master, --project, --region, "
            "--temp_location) go after '--'."
        ),
    )
    p.add_argument("--content", required=True, metavar="SRC", help="content images")
    p.add_argument("--styles", required=True, metavar="SRC", help="style images")
    p.add_argument("--out", required=True, metavar="DIR", help="output dataset folder")
    p.add_argument("--runner", default=D.runner, help="Beam runner (default: %(default)s)")
    p.add_argument("--content-size", type=int, default=D.content_size, help="content shorter side in px (%(default)s)")
    p.add_argument("--style-size", type=int, default=D.style_size, help="style shorter side in px (%(default)s)")
    p.add_argument("--style-large-size", type=int, default=D.style_large_size,
                   help="shorter side of the larger style copy, feature image_large (%(default)s)")
    p.add_argument("--eval-fraction", type=float, default=D.eval_fraction,
                   help="eval share of content and styles (%(default)s)")
    p.add_argument("--unseen-fraction", type=float, default=D.unseen_fraction,
                   help="held-out unseen styles (%(default)s)")
    p.add_argument("--max-pixels", type=int, default=D.max_pixels, help="largest declared image size (%(default)s)")
    p.add_argument("--min-side", type=int, default=D.min_side, help="smallest accepted shorter side in px (%(default)s)")
    p.add_argument("--image-format", choices=IMAGE_FORMATS, default=D.image_format, help="encoding in the shards")
    p.add_argument("--images-per-shard", type=int, default=D.images_per_shard,
                   help="target examples per shard (%(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a different dataset in DIR (only files imfuse wrote are deleted)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("beam_args", nargs="*", metavar="-- BEAM_OPTION",
                   help="Beam pipeline options after '--', passed through untouched")
    p.set_defaults(func=_prepare)

    d = sub.add_parser("demo", help="write demo content and style images (no network)")
    d.add_argument("--out", required=True, metavar="DIR")
    d.add_argument("--content", type=int, default=12, metavar="N", help="content images (12)")
    d.add_argument("--styles", type=int, default=12, metavar="N", help="style images (12)")
    d.add_argument("--size", type=int, default=320, help="shorter side in px (320)")
    d.set_defaults(func=_demo)


def _prepare(args: argparse.Namespace) -> int:
    from imfuse.config_io import config_from_args
    from imfuse.data.prepare import PrepareConfig, prepare_dataset

    _log_to_stderr()
    cfg = config_from_args(PrepareConfig, args, beam_args=list(args.beam_args), progress=not args.no_progress)
    manifest = prepare_dataset(cfg)
    print(summary(manifest, args.out))
    return 0


def summary(manifest: dict, out: str) -> str:
    """A few human lines: counts per kind/split, rejects by reason, the dataset hash."""
    c = manifest["counts"]
    lines = [
        f"dataset {out}: matched {c['matched']} = accepted {c['accepted']} + "
        f"quarantined {c['quarantined']} + duplicates {c['duplicates']}",
        "  content: " + ", ".join(f"{s} {c['content'][s]}" for s in ("train", "eval")),
        "  style:   " + ", ".join(f"{s} {c['style'][s]}" for s in ("train", "eval", "unseen")),
    ]
    if c["quarantined_by_reason"]:
        reasons = ", ".join(f"{k} {v}" for k, v in c["quarantined_by_reason"].items())
        lines.append(f"  quarantined: {reasons} (see quarantine.jsonl)")
    lines.append(f"  hash: {manifest['dataset_hash']}")
    return "\n".join(lines)


def _log_to_stderr() -> None:
    """imfuse's own progress lines on stderr; Beam's INFO chatter stays quiet."""
    logger = logging.getLogger("imfuse")
    if not any(getattr(h, "_imfuse_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._imfuse_cli = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _demo(args: argparse.Namespace) -> int:
    from imfuse.data.demo import write_demo_data

    written = write_demo_data(args.out, n_content=args.content, n_styles=args.styles, size=args.size)
    print(
        f"wrote {len(written['content'])} content and {len(written['styles'])} style images to {args.out}; "
        f"next: imfuse data prepare --content {args.out}/content --styles {args.out}/styles --out DIR"
    )
    return 0
