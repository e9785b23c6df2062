"""Stylise many videos, or long ones in chunks, with Apache Beam (`imfuse batch-stylize-video`).

Pipeline (one Beam element per clip, or per chunk of `chunk_frames` frames):

1. **Probe** each matched file (imfuse.video.probe: size, frame count and times, truncation
   check). A bad file goes to OUT/quarantine.jsonl with its one-line reason; a good one
   becomes its chunks (start, stop) by frame index.
2. **Stylise** each chunk (`StylizeChunk`, a DoFn whose `setup` loads the model and
   computes the style embedding once per worker). A whole-clip chunk is transcoded
   straight to OUT/<stem><ext> with the same code as `imfuse stylize-video`, so it gives
   the same frames. A chunk of a longer clip seeks to `start - warmup`, runs the
   stabiliser over the warm-up frames without writing them (so the temporal blending
   carries into the chunk), and writes its frames to a lossless FFV1 part file under
   OUT/.parts/. The influence of where the warm-up began decays as weight**warmup
   (0.8**30 = 0.0012, below 1/255), so chunked output matches the direct path to +-1/255.
3. **Join**: the parts of a clip are grouped by clip, decoded in order and encoded into
   the final file with the source's audio (imfuse.video.VideoWriter); the parts are removed.

OUT/summary.json holds the counts (matched == written + quarantined) and frames. Files are
read and written with PyAV, so inputs and OUT must be local paths or a shared mount the
workers see (gs:// and the like are not handled here).
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imfuse.beam_jobs import (
    Progress, finish, import_beam, make_runner, open_job, output_stem, pipeline_failed, pipeline_options, write_record,
)
from imfuse.errors import ConfigError, DataError, ImfuseError
from imfuse.video_stability import StabilityConfig

DEFAULT_WARMUP = 30
PARTS_DIR = ".parts"


@dataclass
class VideoBatchConfig:
    input_glob: str
    style: str
    output: str
    model: str | None = None  # None: the shipped base model
    out_format: str | None = None  # ".mp4", ...; None: the input's extension when supported
    strength: float = 1.0
    preserve_color: bool = False
    precision: str = "auto"
    tile: Any = "auto"
    style_scale: float | None = None
    stability: StabilityConfig = field(default_factory=StabilityConfig)
    chunk_frames: int = 0  # 0: one element per clip
    warmup: int | None = None
    runner: str = "DirectRunner"
    beam_args: list[str] = field(default_factory=list)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.chunk_frames < 0:
            raise ConfigError(f"--chunk-frames must be >= 0, got {self.chunk_frames}")
        if self.warmup is None:
            self.warmup = DEFAULT_WARMUP
        if self.warmup < 0:
            raise ConfigError(f"--warmup must be >= 0, got {self.warmup}")
        if self.out_format is not None:
            from imfuse.video import output_format

            output_format("x" + self.out_format)


def plan_chunks(frames: int, chunk_frames: int) -> list[tuple[int, int]]:
    """[(start, stop), ...] covering range(frames); one chunk when chunk_frames is 0."""
    if chunk_frames <= 0 or frames <= chunk_frames:
        return [(0, frames)]
    return [(s, min(frames, s + chunk_frames)) for s in range(0, frames, chunk_frames)]


def output_path(src: str, output: str, out_format: str | None, colliding: frozenset[str]) -> str:
    from imfuse.video import FORMATS

    ext = out_format or (Path(src).suffix.lower() if Path(src).suffix.lower() in FORMATS else ".mp4")
    return os.path.join(output, output_stem(src, colliding) + ext)


# ----------------------------------------------------------------------------- steps


def probe_clip(path: str, chunk_frames: int):
    """path -> [("bad", path, reason)] or [("chunk", path, index, count, start, stop), ...]."""
    from imfuse.video import probe

    try:
        info = probe(path)
    except ImfuseError as exc:
        return [("bad", path, str(exc))]
    chunks = plan_chunks(info.frames, chunk_frames)
    return [("chunk", path, i, len(chunks), s, e) for i, (s, e) in enumerate(chunks)]


def _stylize_chunk_dofn():
    import apache_beam as beam

    class StylizeChunk(beam.DoFn):
        """One chunk of one clip; the model and the style embedding are set up once per worker."""

        def __init__(self, config: VideoBatchConfig, style_bytes: bytes, style_name: str, colliding: frozenset[str]):
            self.config = config
            self.style_bytes = style_bytes
            self.style_name = style_name
            self.colliding = colliding

        def setup(self):
            from imfuse._quiet import import_tensorflow_quietly

            import_tensorflow_quietly()
            from imfuse.base_model import resolve_model_path
            from imfuse.images import decode_image
            from imfuse.networks import load_model
            from imfuse.video_stylize import FrameStylizer, VideoOptions

            cfg = self.config
            model = load_model(resolve_model_path(cfg.model), precision=cfg.precision)
            styles = [(decode_image(self.style_bytes, self.style_name).rgb, 1.0)]
            options = VideoOptions(strength=cfg.strength, preserve_color=cfg.preserve_color, tile=cfg.tile,
                                   style_scale=cfg.style_scale, stability=cfg.stability)
            self.stylizer = FrameStylizer(model, styles, options)  # embedding computed once

        def process(self, element):
            _, path, index, count, start, stop = element
            try:
                yield (path, self._run(path, index, count, start, stop))
            except ImfuseError as exc:
                yield (path, {"index": index, "error": str(exc)})

        def _run(self, path, index, count, start, stop):
            from imfuse.video import VideoWriter, atomic_output, iter_frames, probe
            from imfuse.video_stylize import ClipProcessor, transcode

            cfg = self.config
            info = probe(path)
            self.stylizer.start_clip(info)
            processor = ClipProcessor(self.stylizer, cfg.stability)
            target = output_path(path, cfg.output, cfg.out_format, self.colliding)
            if count == 1:
                result = transcode(path, target, processor, info=info)
                return {"index": 0, "final": target, "frames": result.frames, "audio": result.audio}
            parts = os.path.join(cfg.output, PARTS_DIR, Path(target).name)
            os.makedirs(parts, exist_ok=True)
            part = os.path.join(parts, f"{index:06d}.mkv")
            first = max(0, start - cfg.warmup)
            with atomic_output(part) as tmp, VideoWriter(tmp, info.width, info.height, info.fps) as writer:
                for frame in iter_frames(info, first, stop):
                    out = processor(frame.rgb)  # warm-up frames are blended, not written
                    if frame.index >= start:
                        writer.write(out, frame.time)
            if writer.frames != stop - start:
                raise DataError(f"{path}: chunk {index} decoded {writer.frames} of {stop - start} frames")
            return {"index": index, "part": part, "frames": writer.frames, "count": count}

    return StylizeChunk


def join_clip(item, config: VideoBatchConfig, colliding: frozenset[str]):
    """(path, [chunk results]) -> ("written", path, frames, audio) or ("bad", path, reason)."""
    from imfuse.video import VideoWriter, atomic_output, iter_frames, probe

    path, results = item
    results = sorted(results, key=lambda r: r["index"])
    errors = [r["error"] for r in results if "error" in r]
    target = output_path(path, config.output, config.out_format, colliding)
    parts = [r["part"] for r in results if "part" in r]
    try:
        if errors:
            return ("bad", path, errors[0])
        if len(results) == 1 and "final" in results[0]:
            return ("written", path, results[0]["frames"], results[0]["audio"])
        if len(parts) != results[0]["count"]:
            return ("bad", path, f"only {len(parts)} of {results[0]['count']} chunks were stylised")
        info = probe(path)
        with atomic_output(target) as tmp, VideoWriter.like(tmp, info) as writer:
            frames = itertools.chain.from_iterable(iter_frames(probe(part)) for part in parts)
            for n, frame in enumerate(frames):
                # the part's own times restart at 0; the source's times are the truth
                writer.write(frame.rgb, (info.frame_pts[n] - info.frame_pts[0]) * info.time_base)
        return ("written", path, writer.frames, writer.audio_note)
    except ImfuseError as exc:
        return ("bad", path, str(exc))
    finally:
        if parts:  # a clip's parts share one folder
            shutil.rmtree(os.path.dirname(parts[0]), ignore_errors=True)


def run_video_batch(config: VideoBatchConfig) -> dict[str, Any]:
    """Run the pipeline to completion; returns the summary (also written to OUT/summary.json)."""
    beam = import_beam()
    if "://" in config.input_glob:
        raise ConfigError(f"{config.input_glob}: videos are read with PyAV, which needs local paths (or a shared mount)")
    style_bytes, style_name, paths, colliding = open_job(config.style, config.input_glob, config.output)
    options, runner_name = pipeline_options(config.runner, config.beam_args)
    progress = Progress(len(paths), config.progress, desc="batch-stylize-video", unit="clip")
    dofn = _stylize_chunk_dofn()(config, style_bytes, style_name, colliding)
    started = time.perf_counter()
    try:
        with beam.Pipeline(runner=make_runner(runner_name), options=options) as p:
            probed = (
                p
                | "Paths" >> beam.Create(paths)
                | "Probe" >> beam.FlatMap(probe_clip, config.chunk_frames)
            )
            bad = probed | "Unreadable" >> beam.Filter(lambda r: r[0] == "bad")
            chunks = (
                probed
                | "Chunks" >> beam.Filter(lambda r: r[0] == "chunk")
                | "Spread" >> beam.Reshuffle()
                | "Stylize" >> beam.ParDo(dofn)
            )
            joined = (
                chunks
                | "ByClip" >> beam.GroupByKey()
                | "Join" >> beam.Map(join_clip, config, colliding)
            )
            _ = (
                (bad, joined)
                | "All" >> beam.Flatten()
                | "Progress" >> beam.Map(progress)
                | "Record" >> beam.Map(write_record, config.output, ("frames", "audio"))
            )
    except ImfuseError:
        raise
    except Exception as exc:  # noqa: BLE001 - runner failures carry long nested messages
        raise pipeline_failed("video batch", exc) from None
    finally:
        progress.close()
    summary = finish(config.output, {
        "input": config.input_glob, "style": style_name, "model": config.model or "base",
        "output": config.output, "chunk_frames": config.chunk_frames, "warmup": config.warmup,
        "temporal_weight": config.stability.weight,
    }, matched=len(paths), totals=lambda written: {
        "frames": sum(r["frames"] for r in written),
        "outputs": {r["source"]: output_path(r["source"], config.output, config.out_format, colliding)
                    for r in written},
    })
    shutil.rmtree(os.path.join(config.output, PARTS_DIR), ignore_errors=True)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    return summary
