"""`imfuse batch-stylize`: stylise a whole set of images with a Beam RunInference pipeline."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "batch-stylize",
        help="stylise many images with Beam (RunInference); bad inputs are quarantined",
        description=(
            "Stylise every file matching --input with one --style and write OUTPUT/<stem>.png, "
            "OUTPUT/quarantine.jsonl and OUTPUT/summary.json. Extra Beam pipeline options go after "
            "'--', e.g. -- --runner=FlinkRunner --flink_master=host:8081."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", required=True, help=".keras file, SavedModel version dir, or TF Serving model dir")
    p.add_argument("--input", required=True, help="file glob (local or any Beam filesystem, e.g. gs://b/*.jpg)")
    p.add_argument("--style", required=True, help="style image (path or http(s) URL)")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--strength", type=float, default=1.0, help="0 = content's own style, 1 = full style")
    p.add_argument("--preserve-color", action="store_true", help="keep the contents' colours")
    p.add_argument("--max-side", type=int, default=None, help="downscale contents whose longer side exceeds this")
    p.add_argument("--batch-size", type=int, default=4, help="max images per model call")
    p.add_argument("--runner", default="DirectRunner", help="Beam runner")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("beam_args", nargs=argparse.REMAINDER, help="Beam options after '--'")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imfuse.batch_stylize import BatchConfig, run_batch_stylize

    beam_args = [a for a in args.beam_args if a != "--"]
    config = BatchConfig(
        model=args.model,
        input_glob=args.input,
        style=args.style,
        output=args.output,
        strength=args.strength,
        preserve_color=args.preserve_color,
        max_side=args.max_side,
        batch_size=args.batch_size,
        runner=args.runner,
        beam_args=beam_args,
        progress=not args.no_progress,
    )
    summary = run_batch_stylize(config)
    print(json.dumps(summary, indent=2))
    return 0
