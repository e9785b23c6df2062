"""`imfuse batch-stylize`: stylise a whole set of images with a Beam RunInference pipeline."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    from imfuse.batch_stylize import BatchConfig as D

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
    p.add_argument("--strength", type=float, default=D.strength, help="0 = content's own style, 1 = full style")
    p.add_argument("--preserve-color", action="store_true", help="keep the contents' colours")
    p.add_argument("--max-side", type=int, default=D.max_side, help="downscale contents whose longer side exceeds this")
    p.add_argument("--batch-size", type=int, default=D.batch_size, help="max images per model call")
    p.add_argument("--runner", default=D.runner, help="Beam runner")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("beam_args", nargs=argparse.REMAINDER, help="Beam options after '--'")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imfuse.batch_stylize import BatchConfig, run_batch_stylize
    from imfuse.config_io import config_from_args

    config = config_from_args(BatchConfig, args, input_glob=args.input,
                              beam_args=[a for a in args.beam_args if a != "--"], progress=not args.no_progress)
    print(json.dumps(run_batch_stylize(config), indent=2))
    return 0
