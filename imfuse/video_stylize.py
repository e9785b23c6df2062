"""Stylise a whole video with a feed-forward model (`imfuse stylize-video`).

One style embedding for the whole clip: the style images are embedded once (the VGG16
predictor and the style heads run once, not per frame), so every frame goes through the
transformer only. With `strength < 1` the content's own embedding comes from the first
frame and stays fixed too (a per-frame one would itself flicker). Frames stream from the
decoder through the network and the temporal stabiliser (imfuse.video_stability) into
the encoder one at a time; the output is written to a temporary file beside OUT and
renamed at the end, so a failed run leaves no half-written video.

Frames above imfuse.tiling.AUTO_TILE_PIXELS (4 MP) go through the tiled path with shared
normalisation statistics, as in `imfuse stylize`; `style_scale` works as there too.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from imfuse.errors import ConfigError
from imfuse.images import to_float32, to_uint8
from imfuse.stylize import check_strength
from imfuse.video_stability import StabilityConfig, TemporalStabilizer


@dataclass
class VideoOptions:
    strength: float = 1.0
    preserve_color: bool = False
    tile: int | str | None = "auto"
    style_scale: float | None = None
    stability: StabilityConfig = field(default_factory=StabilityConfig)

    def __post_init__(self) -> None:
        check_strength(self.strength)
        if self.style_scale is not None and not float(self.style_scale) > 0:
            raise ConfigError(f"style scale must be positive, got {self.style_scale}")


def _transformer_function(transformer):
    """tf.function(content (1, H, W, 3), params) -> stylised float32 in [0, 1], one per
    transformer (traced once per frame size, not once per clip)."""
    import tensorflow as tf

    from imfuse.networks import cached_on

    def build():
        @tf.function(reduce_retracing=True)
        def fn(content, params):
            return tf.clip_by_value(tf.cast(transformer([content, params]), tf.float32), 0.0, 1.0)

        return fn

    return cached_on(transformer, "_imfuse_video_function", build)


class FrameStylizer:
    """model + styles -> a callable frame (H, W, 3) uint8 -> stylised float32 (H, W, 3) in [0, 1].

    The mixed style embedding and the style heads' parameters are computed here once.
    """

    def __init__(self, model, styles: list[tuple[np.ndarray, float]], options: VideoOptions | None = None):
        from imfuse.stylize import mix_style_embeddings

        self.model = model
        self.options = options or VideoOptions()
        self.style_embedding = mix_style_embeddings(model, styles)
        self._params = None  # style-head parameters, fixed after the first frame
        self._run = _transformer_function(model.transformer)

    def start_clip(self, info=None) -> None:
        """Forget the previous clip's parameters; with strength < 1 fix them from `info`'s
        first frame (what the direct path does lazily), so every chunk of a clip agrees."""
        self._params = None
        if info is not None and float(self.options.strength) < 1.0:
            from imfuse import tiling
            from imfuse.video import iter_frames

            first = next(iter_frames(info, 0, 1)).rgb
            self._ensure_params(tiling.resize_image(first, tiling.working_size(*first.shape[:2], self.options.style_scale)))

    def _ensure_params(self, work: np.ndarray):
        if self._params is None:
            from imfuse import tiling

            embedding = self.style_embedding
            s = float(self.options.strength)
            if s < 1.0:
                own = np.asarray(self.model.embed_style(tiling.stats_image(work)[None]), dtype=np.float32)
                embedding = s * embedding + (1.0 - s) * own
            self._params = self.model.style_heads(embedding)
        return self._params

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        from imfuse import tiling

        h, w = frame.shape[:2]
        work_hw = tiling.working_size(h, w, self.options.style_scale)
        work = tiling.resize_image(frame, work_hw)
        params = self._ensure_params(work)
        tile = tiling.resolve_tile(self.options.tile, *work_hw)
        if tile:
            stats = tiling.norm_statistics(self.model.transformer, tiling.stats_image(work)[None], params)
            plan = tiling.plan_tiles(*work_hw, tile, margin=tiling.receptive_radius(self.model.variant))
            out = to_float32(tiling.stylize_tiled(self.model.transformer, work, params, stats, plan))
        else:
            batch = tf.convert_to_tensor(to_float32(work)[None])
            out = self._run(batch, tf.cast(params, tf.float32)).numpy()[0]
        if out.shape[:2] != (h, w):
            out = np.clip(tiling.resize_image(out, (h, w)), 0.0, 1.0)
        if self.options.preserve_color:
            from imfuse.color import preserve_color

            out = preserve_color(to_float32(frame), out)
        return out


class ClipProcessor:
    """Stylisation + temporal stability of consecutive frames: frame uint8 -> output uint8."""

    def __init__(self, stylizer: FrameStylizer, stability: StabilityConfig | None = None):
        self.stylizer = stylizer
        self.stabilizer = TemporalStabilizer(stability or stylizer.options.stability)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return to_uint8(self.stabilizer(frame, self.stylizer(frame)))


@dataclass
class VideoResult:
    output: str
    frames: int
    width: int
    height: int
    fps: float
    seconds: float
    audio: str | None  # what happened to the audio (None: the input had none)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def transcode(src: str, dst: str, process: Callable[[np.ndarray], np.ndarray], info=None,
              progress: Callable[[int, int], None] | None = None) -> VideoResult:
    """Decode `src`, map each frame through `process`, encode to `dst` with the audio kept."""
    from imfuse.video import VideoWriter, atomic_output, iter_frames, output_format, probe

    output_format(dst)  # refuse a bad extension before any work
    info = info or probe(src)
    started = time.perf_counter()
    with atomic_output(dst) as tmp, VideoWriter.like(tmp, info) as writer:
        for done, frame in enumerate(iter_frames(info), 1):
            writer.write(process(frame.rgb), frame.time)
            if progress is not None:
                progress(done, info.frames)
    return VideoResult(os.fspath(dst), writer.frames, info.width, info.height, float(info.fps),
                       time.perf_counter() - started, writer.audio_note)


def stylize_video(model, src: str, dst: str, styles: list[tuple[np.ndarray, float]],
                  options: VideoOptions | None = None, progress=None, info=None) -> VideoResult:
    """Stylise video `src` into `dst` (.mp4/.webm/.gif/.mkv) with one style embedding and
    temporal stability; returns what was written."""
    options = options or VideoOptions()
    processor = ClipProcessor(FrameStylizer(model, styles, options), options.stability)
    return transcode(src, dst, processor, info=info, progress=progress)
