"""`imfuse stylize-video`: stylise a video (mp4/webm/gif/mkv) with a feed-forward model, audio kept."""

from __future__ import annotations

import argparse
import sys

from imfuse.cli.stylize import _tile_arg, load_model_arg, load_styles
from imfuse.precision import PRECISIONS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "stylize-video",
        help="stylise a video (mp4/webm/gif) with temporal stability; audio kept",
        description=(
            "Stylise every frame of INPUT with the style of STYLE (one style embedding for the whole clip) "
            "and write OUTPUT (.mp4 H.264, .webm VP9, .gif, or .mkv lossless FFV1) at the input's size, "
            "frame count and timing, with its audio. Consecutive frames are blended along the content's "
            "optical flow where it is consistent, which removes most flicker (--temporal-weight 0: off). "
            "For many clips or long videos on Beam: imfuse batch-stylize-video."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("input", help="input video (mp4, mov, webm, mkv, gif, ...)")
    p.add_argument("style", nargs="?", help="style image (or use --style, repeatable, PATH[:WEIGHT])")
    p.add_argument("--style", dest="styles", action="append", default=[], metavar="PATH[:WEIGHT]")
    p.add_argument("-o", "--output", required=True, help="output video: .mp4, .webm, .gif or .mkv")
    add_model_options(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
    _register_batch(subparsers)


def add_model_options(p) -> None:
    p.add_argument("--model", help="trained model (.keras from `imfuse train`); default: the shipped base model")
    p.add_argument("--strength", type=float, default=1.0, help="0 = content's own style, 1 = full style")
    p.add_argument("--preserve-color", action="store_true", help="keep the video's colours")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="compute precision of the style networks")
    p.add_argument("--tile", type=_tile_arg, default="auto", metavar="SIZE",
                   help="tiled inference for big frames, as in imfuse stylize (auto: above 4 megapixels)")
    p.add_argument("--style-scale", type=float, default=None, metavar="S",
                   help="stroke size relative to the frame, as in imfuse stylize")
    t = p.add_argument_group("temporal stability")
    t.add_argument("--temporal-weight", type=float, default=0.8, metavar="W",
                   help="weight of the previous output frame (warped by optical flow) where the flow is "
                        "consistent; 0 = frame by frame")
    t.add_argument("--flow-size", type=int, default=256, metavar="PX",
                   help="longer side of the frames the optical flow is computed on")


def stability_config(args):
    from imfuse.video_stability import StabilityConfig

    return StabilityConfig(weight=args.temporal_weight, flow_size=args.flow_size)


def _progress_bar(enabled: bool, total: int):
    if not enabled:
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=total, desc="stylize-video", unit="frame", file=sys.stderr, dynamic_ncols=True)

    def report(done: int, _total: int) -> None:
        bar.update(done - bar.n)

    return bar, report


def run(args) -> int:
    from imfuse.video import output_format, probe
    from imfuse.video_stylize import VideoOptions, stylize_video

    output_format(args.output)
    options = VideoOptions(strength=args.strength, preserve_color=args.preserve_color, tile=args.tile,
                           style_scale=args.style_scale, stability=stability_config(args))
    info = probe(args.input)  # a bad or truncated input is refused before the model loads
    styles = load_styles(args)
    model, described = load_model_arg(args)
    print(f"input: {info.describe()}", file=sys.stderr)
    weight = options.stability.weight
    print(f"{described}; "
          f"temporal stability {'off' if weight == 0 else f'weight {weight:g}, flow at {options.stability.flow_size} px'}",
          file=sys.stderr)
    bar, report = _progress_bar(not args.no_progress, info.frames)
    try:
        result = stylize_video(model, args.input, args.output, styles, options, progress=report, info=info)
    finally:
        if bar is not None:
            bar.close()
    audio = f", {result.audio}" if result.audio else ""
    print(f"wrote {result.output} ({result.width}x{result.height}, {result.frames} frames at {result.fps:.3g} fps"
          f"{audio}, {result.seconds:.1f}s, {result.frames_per_second:.2f} frames/s)")
    return 0


def _register_batch(subparsers) -> None:
    p = subparsers.add_parser(
        "batch-stylize-video",
        help="stylise many videos, or long ones in chunks, with a Beam pipeline",
        description=(
            "Stylise every video matching --input with --style into OUTPUT/<stem><ext> (Beam). "
            "--chunk-frames N splits each clip into chunks of N frames stylised in parallel (each starts "
            "--warmup frames early so the temporal blending carries over), then joins them with the audio. "
            "Bad inputs go to OUTPUT/quarantine.jsonl; OUTPUT/summary.json has the counts. Extra Beam "
            "options after '--'."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--input", required=True, help="file glob of videos")
    p.add_argument("--style", required=True, help="style image")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--format", default=None, choices=(".mp4", ".webm", ".gif", ".mkv"),
                   help="output format (default: the input's extension when supported, else .mp4)")
    add_model_options(p)
    p.add_argument("--chunk-frames", type=int, default=0, help="frames per Beam element (0: one element per clip)")
    p.add_argument("--warmup", type=int, default=None, help="frames decoded and blended before each chunk")
    p.add_argument("--runner", default="DirectRunner")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("beam_args", nargs=argparse.REMAINDER, help="Beam options after '--'")
    p.set_defaults(func=run_batch)


def run_batch(args) -> int:
    import json

    from imfuse.config_io import config_from_args
    from imfuse.video_batch import VideoBatchConfig, run_video_batch

    config = config_from_args(
        VideoBatchConfig, args, input_glob=args.input, out_format=args.format, stability=stability_config(args),
        beam_args=[a for a in args.beam_args if a != "--"], progress=not args.no_progress,
    )
    print(json.dumps(run_video_batch(config), indent=2))
    return 0
