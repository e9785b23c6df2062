"""The Gatys optimisation as a studio job: imfuse.gatys with a progress callback.

The loss network is built once per process (it is the slow part of starting a run) and
shared by every job; jobs run one at a time (imfuse.studio.jobs), so sharing is safe.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

from imfuse.studio.inputs import StylizeRequest

_LOSSNET = None
_LOSSNET_LOCK = threading.Lock()


@dataclass(frozen=True)
class GatysOptions:
    """The studio's knobs of OptimizeConfig (the rest keep the library's defaults)."""

    steps: int = 100
    size: int = 256  # longer side of the working (and output) resolution, px


def loss_network():
    """The default loss network (vgg16-hed, offline), built on first use."""
    global _LOSSNET
    with _LOSSNET_LOCK:
        if _LOSSNET is None:
            from imfuse.lossnet import build_loss_network
            from imfuse.precision import dtype_policy_for

            _LOSSNET = build_loss_network(dtype_policy=dtype_policy_for("auto"))
        return _LOSSNET


def run_gatys(request: StylizeRequest, options: GatysOptions, on_step: Callable[[int, int], None]) -> np.ndarray:
    """uint8 result at the working size; on_step(done, total) after every step (may raise to cancel)."""
    from imfuse.images import to_uint8
    from imfuse.gatys import OptimizeConfig, run_optimization

    config = OptimizeConfig(steps=options.steps, size=options.size, preserve_color=request.preserve_color)
    config.validate()
    result = run_optimization(
        request.content_float, request.styles, config, loss_network(), request.mask, progress=False,
        on_step=lambda done, total, _losses: on_step(done, total),
    )
    return to_uint8(result.image)
