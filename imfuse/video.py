"""Video files for `imfuse stylize-video`: probe, decode, encode, audio kept (PyAV).

PyAV (FFmpeg inside the wheel) does all container and codec work; nothing here parses a
container by hand. Frames stream through one at a time (RGB uint8 arrays), so memory does
not grow with the clip's length.

Formats by output extension:

| ext | video | audio |
|---|---|---|
| .mp4 | H.264 (libx264, CRF 18; yuv420p, yuv444p for odd sizes) | copied if AAC/MP3/AC-3/ALAC, else AAC 128 kb/s |
| .webm | VP9 (libvpx-vp9, CRF 31) | copied if Opus/Vorbis, else Opus 96 kb/s |
| .gif | GIF, one 256-colour palette for the clip (from the first frame, no dithering: a per-frame palette or dither would flicker) | none (dropped, with a note) |
| .mkv | FFV1 lossless RGB | copied, whatever it is |

Inputs are whatever FFmpeg reads (mp4/mov, webm/mkv, gif, avi, ...). Output frame times
are the input's own (variable frame rate kept, audio stays in sync); frame size and count
equal the input's. Every bad input raises `VideoError` (an ImageError: one line on the
CLI, exit code 2): missing, empty, not a video (random bytes, a still image), no video
stream, truncated (the packets end well before the duration the header promises, or a
GIF without its trailer), undecodable packets.
"""

from __future__ import annotations

import bisect
import math
import os
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from imfuse.errors import ConfigError, ImageError
from imfuse.fsutil import atomic_path

MAX_FRAME_PIXELS = 64_000_000  # 8K x 8K; bigger frames are refused before decoding
# FFmpeg demuxers for still images: such a file is not a video.
_IMAGE_DEMUXERS = ("image2", "_pipe", "apng")


class VideoError(ImageError):
    """A video could not be read, decoded or written (names the file)."""


@dataclass(frozen=True)
class OutputFormat:
    ext: str
    video_codec: str
    pix_fmt: str
    audio_codec: str | None  # encoder for transcoded audio; None: no audio in this format
    audio_copy: tuple[str, ...]  # input audio codecs copied as they are ("*": any)
    audio_rate: int | None = None  # transcoded audio sample rate (None: keep the input's)
    time_base: Fraction = Fraction(1, 1000)  # of the written video stream
    video_options: dict = field(default_factory=dict)
    container_options: dict = field(default_factory=dict)


FORMATS = {
    ".mp4": OutputFormat(".mp4", "libx264", "yuv420p", "aac", ("aac", "mp3", "ac3", "eac3", "alac"),
                         time_base=Fraction(1, 90000), video_options={"crf": "18", "preset": "medium"},
                         container_options={"movflags": "+faststart"}),
    ".webm": OutputFormat(".webm", "libvpx-vp9", "yuv420p", "libopus", ("opus", "vorbis"), audio_rate=48000,
                          video_options={"crf": "31", "b": "0", "deadline": "good", "cpu-used": "4",
                                         "row-mt": "1"}),
    ".gif": OutputFormat(".gif", "gif", "pal8", None, (), time_base=Fraction(1, 100), container_options={"loop": "0"}),
    ".mkv": OutputFormat(".mkv", "ffv1", "bgr0", "libopus", ("*",), audio_rate=48000),
}
_AUDIO_BITRATE = {"aac": 128_000, "libopus": 96_000}
_AUDIO_FRAME_SIZE = {"aac": 1024, "libopus": 960}


def output_format(path: str | os.PathLike) -> OutputFormat:
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise ConfigError(f"output {path}: unsupported video format '{ext or '(none)'}' "
                          f"(use {', '.join(FORMATS)})")
    return FORMATS[ext]


# ----------------------------------------------------------------------------- probing


@dataclass
class VideoInfo:
    """What `probe` learns from a whole pass over the packets (no decoding)."""

    path: str
    container: str
    codec: str
    width: int
    height: int
    fps: Fraction  # average frame rate
    frames: int  # video packets with data (= frames for every codec FFmpeg decodes 1:1)
    duration: float  # seconds, from the packets
    time_base: Fraction
    audio_codec: str | None
    frame_pts: list[int]  # presentation times of the frames in display order (stream time base)

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None

    def describe(self) -> str:
        audio = f", audio {self.audio_codec}" if self.audio_codec else ", no audio"
        return (f"{self.width}x{self.height}, {self.frames} frames at {float(self.fps):.3g} fps "
                f"({self.duration:.2f} s), {self.codec} in {self.container}{audio}")


def _av_message(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '")[0].strip() or type(exc).__name__


@contextmanager
def open_input(path: str | os.PathLike):
    """av.open(path) for reading; anything FFmpeg cannot open -> VideoError."""
    import av

    name = os.fspath(path)
    p = Path(name)
    if not p.exists():
        raise VideoError(f"video not found: {name}")
    if p.is_dir():
        raise VideoError(f"{name} is a directory, not a video")
    if p.stat().st_size == 0:
        raise VideoError(f"{name} is empty")
    try:
        container = av.open(name, "r", metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise VideoError(f"cannot read video {name}: not a video file FFmpeg can read ({_av_message(exc)})") from None
    try:
        fmt = container.format.name
        if any(fmt == d or fmt.endswith(d) for d in _IMAGE_DEMUXERS):
            raise VideoError(f"{name} is a still image ({fmt}), not a video: use `imfuse stylize` for images")
        if not container.streams.video:
            raise VideoError(f"{name} has no video stream")
        yield container
    finally:
        container.close()


def _check_gif_trailer(name: str) -> None:
    """A GIF ends with its trailer byte (0x3B); FFmpeg stops quietly at a cut, so check it."""
    with open(name, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) != b"\x3b":
            raise VideoError(f"{name} is truncated (the GIF ends without its trailer)")


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read every packet once (no decoding): size, rate, frame count and times, audio codec.

    Refuses truncated files: when all streams' packets end more than max(0.2 s, 3 frames)
    before the duration the container's header records, or a GIF lacks its trailer.
    """
    import av

    name = os.fspath(path)
    with open_input(name) as container:
        vs = container.streams.video[0]
        ctx = vs.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width <= 0 or height <= 0:
            raise VideoError(f"{name}: the video stream has no frame size (unsupported or damaged)")
        if width * height > MAX_FRAME_PIXELS:
            raise VideoError(f"{name}: frames of {width}x{height} are larger than {MAX_FRAME_PIXELS // 1_000_000} MP")
        audio = container.streams.audio[0] if container.streams.audio else None
        streams = [vs] + ([audio] if audio is not None else [])
        pts: list[int] = []
        end = 0.0  # latest packet end over the streams, seconds
        last_dur = 0
        try:
            for packet in container.demux(*streams):
                if packet.size == 0:
                    continue  # flush packets
                tb = packet.time_base or packet.stream.time_base
                if packet.pts is not None and tb is not None:
                    end = max(end, float((packet.pts + (packet.duration or 0)) * tb))
                if packet.stream is vs:
                    pts.append(packet.pts if packet.pts is not None else (pts[-1] + max(last_dur, 1) if pts else 0))
                    last_dur = packet.duration or last_dur
        except av.FFmpegError as exc:
            raise VideoError(f"{name} is damaged or truncated: {_av_message(exc)}") from None
        if not pts:
            raise VideoError(f"{name} has no video frames")
        pts.sort()
        tb = vs.time_base or Fraction(1, 1000)
        fps = vs.average_rate or vs.guessed_rate
        if not fps or fps <= 0:
            span = (pts[-1] - pts[0]) * tb
            fps = Fraction(len(pts) - 1, 1) / span if len(pts) > 1 and span > 0 else Fraction(25)
        fps = Fraction(fps).limit_denominator(100000)
        header = container.duration / 1e6 if container.duration else None
        if container.format.name == "gif":
            _check_gif_trailer(name)
        elif header is not None and end + max(0.2, 3.0 / float(fps)) < header:
            raise VideoError(f"{name} is truncated: its packets end at {end:.2f} s of the {header:.2f} s "
                             "its header records")
        duration = float((pts[-1] - pts[0]) * tb) + (float(last_dur * tb) if last_dur else 1.0 / float(fps))
        return VideoInfo(
            path=name, container=container.format.name, codec=ctx.name, width=width, height=height,
            fps=fps, frames=len(pts), duration=duration, time_base=Fraction(tb),
            audio_codec=audio.codec_context.name if audio is not None else None, frame_pts=pts,
        )


# ----------------------------------------------------------------------------- decoding


@dataclass
class Frame:
    index: int  # position in display order
    time: Fraction  # presentation time, seconds
    rgb: np.ndarray  # (H, W, 3) uint8


def iter_frames(info: VideoInfo, start: int = 0, stop: int | None = None) -> Iterator[Frame]:
    """Decoded frames [start, stop) of the probed video, in display order.

    `start > 0` seeks to the keyframe before it and decodes forward (chunks of a long
    video decode only their own part); frames are identified by their presentation time
    from the probe, with a plain decode from the beginning when times are missing.
    """
    stop = info.frames if stop is None else min(int(stop), info.frames)
    if start >= stop:
        return
    try:
        yield from _decode(info, start, stop, seek=start > 0)
    except _Reseek:  # raised before any frame was yielded
        yield from _decode(info, start, stop, seek=False)


class _Reseek(Exception):
    pass


def _decode(info: VideoInfo, start: int, stop: int, seek: bool) -> Iterator[Frame]:
    """Frames [start, stop): from the keyframe before `start` when `seek` (else from the
    beginning, counting frames); _Reseek when a frame after the seek cannot be placed."""
    import av

    with open_input(info.path) as container:
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        index = 0
        if seek:
            try:
                container.seek(int(info.frame_pts[start]), stream=vs, backward=True, any_frame=False)
                index = None
            except av.FFmpegError:
                pass
        try:
            for frame in container.decode(vs):
                if index is None:  # after a seek: place the frame by its time
                    i = len(info.frame_pts) if frame.pts is None else bisect.bisect_left(info.frame_pts, frame.pts)
                    if i >= len(info.frame_pts) or info.frame_pts[i] != frame.pts or i > start:
                        raise _Reseek()  # a frame without a known time, or the seek landed after `start`
                    index = i
                if index >= stop:
                    break
                if index >= start:
                    pts = frame.pts if frame.pts is not None else info.frame_pts[min(index, info.frames - 1)]
                    yield Frame(index, Fraction(pts - info.frame_pts[0]) * info.time_base,
                                frame.to_ndarray(format="rgb24"))
                index += 1
        except av.FFmpegError as exc:
            raise VideoError(f"cannot decode {info.path} (frame {index}): {_av_message(exc)}") from None


# ----------------------------------------------------------------------------- encoding


class _AudioPump:
    """The source's first audio stream into the output: packets copied, or decoded,
    resampled and re-encoded; fed up to a time so the muxer interleaves with bounded buffers."""

    def __init__(self, source: str, output, fmt: OutputFormat, offset: Fraction):
        import av

        self.container = av.open(source, "r", metadata_errors="ignore")
        self.input = self.container.streams.audio[0]
        self.output = output
        self.offset = offset  # seconds subtracted from the source's times (the video's first pts)
        name = self.input.codec_context.name
        self.copy = "*" in fmt.audio_copy or name in fmt.audio_copy
        if self.copy:
            self.stream = output.add_stream_from_template(self.input)
        else:
            layout = self.input.layout.name if self.input.layout and self.input.layout.nb_channels <= 2 else "stereo"
            rate = fmt.audio_rate or self.input.codec_context.sample_rate or 48000
            self.stream = output.add_stream(fmt.audio_codec, rate=rate)
            self.stream.layout = layout
            self.stream.bit_rate = _AUDIO_BITRATE.get(fmt.audio_codec, 128_000)
            sample_fmt = "fltp" if fmt.audio_codec == "aac" else "flt"
            self.resampler = av.AudioResampler(format=sample_fmt, layout=layout, rate=rate,
                                               frame_size=_AUDIO_FRAME_SIZE.get(fmt.audio_codec))
        self.packets = self.container.demux(self.input)
        self.done = False

    def _shift(self, packet) -> None:
        if self.offset and packet.pts is not None and packet.time_base:
            delta = int(round(self.offset / packet.time_base))
            packet.pts -= delta
            if packet.dts is not None:
                packet.dts -= delta

    def feed(self, until: float | None) -> None:
        """Mux audio up to `until` seconds (None: all of it)."""
        import av

        while not self.done:
            try:
                packet = next(self.packets)
            except (StopIteration, av.FFmpegError):  # the end, or a damaged audio tail: keep what was read
                self._finish()
                return
            if packet.size == 0:
                continue
            t = float(packet.pts * packet.time_base) if packet.pts is not None and packet.time_base else None
            if self.copy:
                self._shift(packet)
                packet.stream = self.stream
                self.output.mux(packet)
            else:
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    frames = []
                for frame in frames:
                    frame.pts = None
                    for r in self.resampler.resample(frame):
                        self.output.mux(self.stream.encode(r))
            if until is not None and t is not None and t - float(self.offset) > until:
                return

    def _finish(self) -> None:
        self.done = True
        if not self.copy:
            for r in self.resampler.resample(None):
                self.output.mux(self.stream.encode(r))
            self.output.mux(self.stream.encode(None))

    def close(self) -> None:
        self.container.close()


class VideoWriter:
    """Encode RGB uint8 frames to `path` (format from its extension), with the audio of
    `audio_source` (a video path) kept when the format has audio.

    `write(rgb, time)` per frame, times in seconds (increasing); `close()` flushes. As a
    context manager it closes after the block, or aborts when the block raises.
    """

    @classmethod
    def like(cls, path: str | os.PathLike, info: "VideoInfo") -> "VideoWriter":
        """An output with the size, frame rate and audio of the probed input `info`, its audio
        aligned to the input's first frame."""
        return cls(path, info.width, info.height, info.fps, audio_source=info.path if info.has_audio else None,
                   audio_offset=info.frame_pts[0] * info.time_base)

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: Fraction,
                 audio_source: str | None = None, audio_offset: Fraction = Fraction(0)):
        import av

        self.path = os.fspath(path)
        self.fmt = fmt = output_format(self.path)
        self.width, self.height = int(width), int(height)
        self.time_base = fmt.time_base
        try:
            self.container = av.open(self.path, "w", options=dict(fmt.container_options))
        except av.FFmpegError as exc:
            raise VideoError(f"cannot write {self.path}: {_av_message(exc)}") from None
        rate = Fraction(fps).limit_denominator(100000) if fps else Fraction(25)
        self.stream = self.container.add_stream(fmt.video_codec, rate=rate, options=dict(fmt.video_options))
        self.stream.width, self.stream.height = self.width, self.height
        pix_fmt = fmt.pix_fmt
        if fmt.video_codec == "libx264" and (self.width % 2 or self.height % 2):
            pix_fmt = "yuv444p"  # 4:2:0 needs even sizes; keep the exact size instead of padding
        self.stream.pix_fmt = pix_fmt
        self.stream.codec_context.time_base = self.time_base
        self.stream.time_base = self.time_base
        self.audio = None
        self.audio_note = None
        if audio_source is not None:
            if fmt.audio_codec is None and not fmt.audio_copy:
                self.audio_note = f"audio dropped: {fmt.ext} has no sound"
            else:
                self.audio = _AudioPump(audio_source, self.container, fmt, audio_offset)
                self.audio_note = ("audio copied" if self.audio.copy else f"audio re-encoded to {fmt.audio_codec}")
        self._palette = None
        self._last_pts = -1
        self.frames = 0

    def _video_frame(self, rgb: np.ndarray):
        import av

        if self.fmt.pix_fmt != "pal8":
            return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        from PIL import Image

        im = Image.fromarray(rgb, "RGB")
        if self._palette is None:  # one palette for the whole clip (from the first frame)
            self._palette = im.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        indices = np.asarray(im.quantize(palette=self._palette, dither=Image.Dither.NONE), dtype=np.uint8)
        pal = np.zeros((256, 4), np.uint8)
        colours = np.asarray(self._palette.getpalette()[:768], np.uint8).reshape(-1, 3)
        pal[:len(colours), 0] = 255  # ARGB
        pal[:len(colours), 1:] = colours
        return av.VideoFrame.from_ndarray((np.ascontiguousarray(indices), pal), format="pal8")

    def write(self, rgb: np.ndarray, time: Fraction | float) -> None:
        rgb = np.asarray(rgb)
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"frame {rgb.shape} {rgb.dtype} does not match the writer ({self.height}, {self.width}, 3) uint8")
        if self.audio is not None:
            self.audio.feed(float(time) + 1.0)
        frame = self._video_frame(rgb)
        # the time rounded to the time base, kept strictly increasing
        self._last_pts = max(math.floor(Fraction(time) / self.time_base + Fraction(1, 2)), self._last_pts + 1)
        frame.pts = self._last_pts
        frame.time_base = self.time_base
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def close(self, flush: bool = True) -> None:
        """Flush the encoders (unless not `flush`) and close the files."""
        try:
            if flush:
                self.container.mux(self.stream.encode(None))
                if self.audio is not None:
                    self.audio.feed(None)
        finally:
            if self.audio is not None:
                self.audio.close()
            self.container.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            with suppress(Exception):  # closing a half-written file after an error
                self.close(flush=False)


def atomic_output(path: str | os.PathLike):
    """fsutil.atomic_path for a video: the output must be a file in an existing folder."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"output {target} is a directory")
    if not target.parent.exists():
        raise ConfigError(f"output folder {target.parent} does not exist")
    return atomic_path(target)
