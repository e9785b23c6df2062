"""Fitting a style as a studio job: imfuse.style_fit on the studio's own model, remembered by
the backend so every later fast stylisation with that style uses the fitted embedding."""

from __future__ import annotations

from typing import Callable

import numpy as np

from imfuse.studio.backends import LocalBackend, style_key
from imfuse.studio.inputs import FieldError, StylizeRequest


def check_fittable(backend, request: StylizeRequest) -> None:
    """Fitting needs the model in this process and exactly one style."""
    if not isinstance(backend, LocalBackend):
        raise FieldError("method", "fitting a style needs the studio's own model; this studio calls a server (--target)")
    if len(request.styles) != 1:
        raise FieldError("style", f"fitting takes one style at a time, got {len(request.styles)}")


def run_fit(backend: LocalBackend, request: StylizeRequest, steps: int,
            on_step: Callable[[int, int], None]) -> np.ndarray:
    """Fit the request's style (unless fitted already), then stylise its content with it: uint8."""
    from imfuse.studio.gatys import loss_network
    from imfuse.style_fit import StyleFitConfig, default_fit_photos, fit_style_embedding

    style = request.styles[0][0]
    key = style_key(style)
    if key not in backend.fitted:
        config = StyleFitConfig(steps=steps)
        result = fit_style_embedding(
            backend.model(), style, default_fit_photos(config.size), config, loss_network(), progress=False,
            on_step=lambda done, total, _losses: on_step(done, total),
        )
        backend.fitted[key] = result.embedding
    on_step(steps, steps)
    return backend.stylize(request).image
