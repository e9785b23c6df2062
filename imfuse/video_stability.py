"""Temporal stability for video stylisation, and the flicker figure that measures it.

A feed-forward network stylises each frame on its own, so small changes between frames
(camera motion by a fraction of a pixel, sensor noise, codec noise) come out as a
different brush texture every frame: the clip shimmers. `TemporalStabilizer` blends each
new stylised frame with the previous *output* frame, warped into the new frame by the
content's optical flow, wherever that warp is trustworthy (after Ruder et al. 2016's
flow-guided temporal term, applied at inference time instead of by optimisation):

1. **Flow.** Lucas-Kanade flow (scikit-image `optical_flow_ilk`, a coarse-to-fine
   pyramid with warping) between the grey content frames, computed at a reduced size
   (longer side `flow_size`, 256 px by default: 60 ms at 854x480 on 2 CPU cores) and
   upsampled bilinearly; it maps each pixel of frame t to where it was in frame t-1.
2. **Warp.** The previous output frame and the previous content frame are warped into
   frame t by bilinear sampling (numpy gathers; pixels whose source lies outside frame
   t-1 are invalid).
3. **Consistency mask.** Where the warped previous *content* does not match the new
   content (occlusions, disocclusions, lighting changes, flow errors), the mask falls to
   0: 1 below a mean absolute difference of `tolerance[0]`, 0 above `tolerance[1]`
   (on a 3x3-smoothed difference), linear in between; invalid pixels are 0.
4. **Blend.** out_t = s_t + weight * mask * (warp(out_{t-1}) - s_t): the fresh stylised
   frame s_t where the warp is wrong, mostly the carried-over texture where it is right.
   Since 1 - weight of every frame is fresh, errors and the blur of repeated bilinear
   resampling fade geometrically (a frame's texture has weight weight**k after k frames).

The flicker figure (`warping_error`) is the usual one for video style transfer (Lai et
al. 2018): the mean absolute difference between each stylised frame and the previous
stylised frame warped by the *content's* flow, over the pixels where that flow is
reliable, in 1/255 units. Its flow is computed independently of the stabiliser's (TV-L1
at a separate resolution, with a forward-backward occlusion check), so the stabiliser is
not graded by its own flow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imfuse.color import LUMA_WEIGHTS
from imfuse.errors import ConfigError
from imfuse.images import to_float32

DEFAULT_WEIGHT = 0.8
DEFAULT_FLOW_SIZE = 256
DEFAULT_TOLERANCE = (0.03, 0.10)  # mean |content_t - warp(content_{t-1})| in [0, 1]


# ----------------------------------------------------------------------------- helpers


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 or float in [0, 1] -> float32 (H, W) luma in [0, 1]."""
    arr = np.asarray(rgb)
    scale = np.float32(1.0 / 255.0) if arr.dtype == np.uint8 else np.float32(1.0)
    r, g, b = (np.float32(w * scale) for w in LUMA_WEIGHTS)
    return (arr[..., 0] * r + arr[..., 1] * g + arr[..., 2] * b).astype(np.float32)


def _resize_plane(plane: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float32 (h, w) plane (Pillow 'F' mode; pixel-centre aligned)."""
    from PIL import Image

    h, w = size_hw
    if plane.shape == (h, w):
        return plane.astype(np.float32, copy=False)
    downscale = plane.shape[0] > h and plane.shape[1] > w
    resample = Image.Resampling.BOX if downscale else Image.Resampling.BILINEAR  # BOX: antialiased
    return np.asarray(Image.fromarray(np.ascontiguousarray(plane, np.float32), "F").resize((w, h), resample),
                      dtype=np.float32)


def reduced_size(height: int, width: int, longer: int) -> tuple[int, int]:
    """(h, w) with the longer side at most `longer` px, same aspect ratio (never upscaled)."""
    f = min(1.0, float(longer) / max(height, width))
    return max(8, round(height * f)), max(8, round(width * f))


def upsample_flow(flow: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """(2, h, w) flow in small-image pixels -> (2, H, W) in full-size pixels."""
    h, w = flow.shape[1:]
    H, W = size_hw
    if (h, w) == (H, W):
        return flow.astype(np.float32, copy=False)
    return np.stack([_resize_plane(flow[0], (H, W)) * np.float32(H / h),
                     _resize_plane(flow[1], (H, W)) * np.float32(W / w)])


def lk_flow(cur_gray: np.ndarray, prev_gray: np.ndarray, radius: int = 4, num_warp: int = 3) -> np.ndarray:
    """Backward flow (2, h, w) = (dy, dx): prev[y + dy, x + dx] ~ cur[y, x] (Lucas-Kanade)."""
    from skimage.registration import optical_flow_ilk

    return optical_flow_ilk(cur_gray, prev_gray, radius=radius, num_warp=num_warp).astype(np.float32)


def tvl1_flow(cur_gray: np.ndarray, prev_gray: np.ndarray) -> np.ndarray:
    """Backward flow (2, h, w) like lk_flow, by TV-L1 (slower, more accurate)."""
    from skimage.registration import optical_flow_tvl1

    return optical_flow_tvl1(cur_gray, prev_gray).astype(np.float32)


class _Grid:
    """Pixel coordinate grids of one frame size, cached (they are the same every frame)."""

    def __init__(self, height: int, width: int):
        self.shape = (height, width)
        self.rows, self.cols = np.mgrid[0:height, 0:width].astype(np.float32)


def warp(images: np.ndarray, flow: np.ndarray, grid: _Grid | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear backward warp: out[y, x] = images[y + flow[0], x + flow[1]].

    `images` (H, W, C) float32 (several images may be stacked along C, they share the
    gathers); returns (warped (H, W, C) float32, valid (H, W) bool: the source lies
    inside the frame, within half a pixel).
    """
    H, W, C = images.shape
    grid = grid or _Grid(H, W)
    y = grid.rows + flow[0]
    x = grid.cols + flow[1]
    valid = (y >= -0.5) & (y <= H - 0.5) & (x >= -0.5) & (x <= W - 0.5)
    np.clip(y, 0, H - 1, out=y)
    np.clip(x, 0, W - 1, out=x)
    y0 = np.floor(y)
    x0 = np.floor(x)
    wy = (y - y0)[..., None]
    wx = (x - x0)[..., None]
    y0 = y0.astype(np.intp)
    x0 = x0.astype(np.intp)
    y1 = np.minimum(y0 + 1, H - 1)
    x1 = np.minimum(x0 + 1, W - 1)
    flat = images.reshape(H * W, C)
    top = flat[y0 * W + x0] * (1 - wx) + flat[y0 * W + x1] * wx
    bottom = flat[y1 * W + x0] * (1 - wx) + flat[y1 * W + x1] * wx
    out = top * (1 - wy) + bottom * wy
    return out.astype(np.float32, copy=False), valid


def _box3(plane: np.ndarray) -> np.ndarray:
    """3x3 box mean with edge replication."""
    p = np.pad(plane, 1, mode="edge")
    rows = p[:-2] + p[1:-1] + p[2:]
    return (rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) * np.float32(1.0 / 9.0)


# ----------------------------------------------------------------------------- stabiliser


@dataclass(frozen=True)
class StabilityConfig:
    """Options of TemporalStabilizer; `weight` 0 turns stabilisation off."""

    weight: float = DEFAULT_WEIGHT
    flow_size: int = DEFAULT_FLOW_SIZE
    tolerance: tuple[float, float] = DEFAULT_TOLERANCE

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.weight) < 1.0:
            raise ConfigError(f"temporal weight must be in [0, 1), got {self.weight}")
        if int(self.flow_size) < 32:
            raise ConfigError(f"flow size must be at least 32 px, got {self.flow_size}")
        lo, hi = self.tolerance
        if not 0.0 <= lo < hi:
            raise ConfigError(f"consistency tolerance must satisfy 0 <= low < high, got {self.tolerance}")


class TemporalStabilizer:
    """Flow-guided blending of consecutive stylised frames (see the module docstring).

    Call with each content frame (uint8 or float (H, W, 3)) and its fresh stylisation
    (float32 (H, W, 3) in [0, 1]), in order; returns the output frame, float32 in [0, 1].
    Holds only the previous frame's content, grey copy and output (bounded memory).
    `reset()` starts a new shot (no blending with what came before).
    """

    def __init__(self, config: StabilityConfig | None = None):
        self.config = config or StabilityConfig()
        self.reset()

    def reset(self) -> None:
        self._prev_small = None  # grey content at flow size
        self._prev_content = None  # float32 (H, W, 3)
        self._prev_out = None  # float32 (H, W, 3)
        self._grid = None
        self.last_mask_mean = None  # fraction of the frame blended (diagnostics)

    @property
    def enabled(self) -> bool:
        return self.config.weight > 0

    def __call__(self, content: np.ndarray, stylized: np.ndarray) -> np.ndarray:
        stylized = np.asarray(stylized, dtype=np.float32)
        if not self.enabled:
            return stylized
        content_f = to_float32(content)
        H, W = stylized.shape[:2]
        if content_f.shape[:2] != (H, W):
            raise ValueError(f"content {content_f.shape} and stylised {stylized.shape} frames differ in size")
        small = _resize_plane(to_gray(content_f), reduced_size(H, W, self.config.flow_size))
        out = stylized
        if self._prev_out is not None and self._prev_out.shape == stylized.shape:
            if self._grid is None or self._grid.shape != (H, W):
                self._grid = _Grid(H, W)
            flow = upsample_flow(lk_flow(small, self._prev_small), (H, W))
            warped, valid = warp(np.concatenate([self._prev_out, self._prev_content], axis=2), flow, self._grid)
            err = _box3(np.abs(warped[..., 3:] - content_f).mean(axis=2))
            lo, hi = self.config.tolerance
            mask = np.clip((np.float32(hi) - err) * np.float32(1.0 / (hi - lo)), 0.0, 1.0)
            mask *= valid
            self.last_mask_mean = float(mask.mean())
            blend = (np.float32(self.config.weight) * mask)[..., None]
            out = stylized + blend * (warped[..., :3] - stylized)
        self._prev_small = small
        self._prev_content = content_f
        self._prev_out = out
        return out


# ----------------------------------------------------------------------------- flicker figure


def content_flow(prev: np.ndarray, cur: np.ndarray, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The content's own backward flow cur -> prev at full size, and its reliability mask.

    Flow by TV-L1 at longer side `size` (None: full size), upsampled; the mask
    keeps pixels whose source is inside the previous frame and that pass a
    forward-backward consistency check (Sundaram et al. 2010): |b + f(x + b)|^2 <=
    0.01 (|b|^2 + |f(x + b)|^2) + 0.5 px^2.
    """
    H, W = np.asarray(cur).shape[:2]
    hw = reduced_size(H, W, size) if size else (H, W)
    g_prev = _resize_plane(to_gray(prev), hw)
    g_cur = _resize_plane(to_gray(cur), hw)
    back = upsample_flow(tvl1_flow(g_cur, g_prev), (H, W))
    fwd = upsample_flow(tvl1_flow(g_prev, g_cur), (H, W))
    fwd_at, valid = warp(np.moveaxis(fwd, 0, -1), back)  # f(x + b(x))
    fwd_at = np.moveaxis(fwd_at, -1, 0)
    diff = ((back + fwd_at) ** 2).sum(axis=0)
    mag = (back ** 2).sum(axis=0) + (fwd_at ** 2).sum(axis=0)
    mask = valid & (diff <= 0.01 * mag + 0.5)
    return back, mask


def content_flows(content_frames, size: int | None = None) -> list:
    """[(flow, mask)] of each consecutive pair of `content_frames` (see content_flow)."""
    frames = list(content_frames)
    return [content_flow(frames[t - 1], frames[t], size) for t in range(1, len(frames))]


def warping_error(content_frames, output_frames, size: int | None = None, flows: list | None = None) -> float:
    """The flicker figure of `output_frames` against the flow of `content_frames` (equal-length
    sequences); pass `flows` from content_flows to score several outputs of one clip.

    The mean over consecutive pairs of the mean absolute RGB difference |out_t - warp(out_{t-1})|
    x 255 over the pixels the content's mask keeps (pairs with none are skipped); NaN without any.
    """
    content_frames, output_frames = list(content_frames), list(output_frames)
    if len(content_frames) != len(output_frames):
        raise ValueError("content and output sequences differ in length")
    flows = flows if flows is not None else content_flows(content_frames, size)
    errors = []
    for t in range(1, len(content_frames)):
        flow, mask = flows[t - 1]
        warped, valid = warp(to_float32(output_frames[t - 1]), flow)
        m = mask & valid
        if m.any():
            errors.append(float(np.abs(to_float32(output_frames[t]) - warped).mean(axis=2)[m].mean() * 255.0))
    return float(np.mean(errors)) if errors else float("nan")
