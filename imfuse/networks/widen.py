"""Function-preserving widening of a trained model to a wider variant (Net2WiderNet).

Offline there is one pretrained arbitrary-style network, Magenta's quarter-width mobile
one, and the full variant trained from scratch on two CPU cores never came near it
(bench/quality). Net2WiderNet (Chen et al. 2016, "Net2Net") turns a trained narrow network
into a wider one that computes the same function, so the full variant can start where the
reduced one is and use its extra width to go further.

Every channel of a wider layer is a copy of one narrow channel (channel j copies j mod C).
A copy's pre-activation is identical, so are its instance-norm statistics and its style's
gamma and beta (the style heads' columns are copied too), and a residual sum keeps the
mapping because both branches use it. The next layer's weights from the copies of one
channel are split so that they sum to the narrow weight: with equal splits the copies would
get identical gradients forever, so the split is random (a different share per copy, tap
and output channel; Net2Net's noise, but exact). The output is then the narrow model's up
to float rounding.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from imfuse.errors import ConfigError

# How a widened model's record names its origin (imfuse models widen, import-magenta --variant full).
METHOD = "Net2WiderNet with exact random splits (imfuse.networks.widen)"


def _mapping(narrow: int, wide: int) -> np.ndarray:
    """Which narrow channel each wide channel copies."""
    return np.arange(wide) % narrow


def _split(mapping: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random positive shares along axis -2 (input channels) that sum to 1 over each group of copies."""
    share = rng.uniform(0.5, 1.5, size=shape)
    totals = np.zeros(shape[:-2] + (int(mapping.max()) + 1,) + shape[-1:])
    for group in range(int(mapping.max()) + 1):
        members = mapping == group
        totals[..., group, :] = share[..., members, :].sum(axis=-2)
    return share / totals[..., mapping, :]


def widen_kernel(kernel: np.ndarray, out_map: np.ndarray | None, in_map: np.ndarray | None,
                 rng: np.random.Generator) -> np.ndarray:
    """(kh, kw, in, out) kernel -> the wider one; None keeps that axis (the RGB input or output)."""
    wide = kernel
    if out_map is not None:
        wide = wide[..., out_map]
    if in_map is not None:
        wide = wide[..., in_map, :]
        wide = wide * _split(in_map, wide.shape, rng)
    return wide.astype(kernel.dtype)


def _transformer_maps(narrow, wide) -> dict[str, tuple[np.ndarray | None, np.ndarray | None]]:
    """(output map, input map) of every weighted transformer layer, keyed by layer name."""
    c32, c64, c128 = (_mapping(narrow.channels(c), wide.channels(c)) for c in (32, 64, 128))
    maps = {"contract_0": (c32, None), "contract_1": (c64, c32), "contract_2": (c128, c64)}
    for b in range(narrow.residual_blocks):
        maps[f"residual_{b}_a"] = maps[f"residual_{b}_b"] = (c128, c128)
    maps.update(expand_0=(c64, c128), expand_1=(c32, c64), output_conv=(None, c32))
    if narrow.contract_norm:  # plain instance norms: gamma and beta per channel
        maps.update({f"contract_{i}_norm": (m, None) for i, m in enumerate((c32, c64, c128))})
    return maps


def _norm_maps(narrow, wide) -> list[np.ndarray | None]:
    """The channel map of each conditionally normalised layer, in style-parameter order."""
    maps = []
    for small, big in zip(narrow.norm_depths, wide.norm_depths):
        maps.append(None if small == big else _mapping(small, big))
    return maps


def widening_record(narrow, wide, seed: int, **source) -> dict:
    """What a widened model's record says of its origin (models widen, import-magenta --variant full)."""
    return {**source, "from_alpha": narrow.alpha, "to_alpha": wide.alpha, "seed": seed, "method": METHOD}


def check_widenable(narrow, wide) -> None:
    """Raises ConfigError unless `wide` is `narrow` at a larger or equal width, dense convs."""
    same = dataclasses.replace(wide, name=narrow.name, alpha=narrow.alpha)
    if same != narrow:
        diff = [f.name for f in dataclasses.fields(narrow) if getattr(narrow, f.name) != getattr(same, f.name)]
        raise ConfigError(
            f"cannot widen variant {narrow.name!r} to {wide.name!r}: they differ in {', '.join(diff)}, not only in alpha"
        )
    if narrow.separable or narrow.separable_outer:
        raise ConfigError("widening needs dense convs (a separable conv's depthwise part cannot be split)")
    if any(wide.channels(c) < narrow.channels(c) for c in (32, 64, 128)):
        raise ConfigError(f"variant {wide.name!r} is narrower than {narrow.name!r}")


def widen_model(model, variant, seed: int = 0):
    """A model of the wider `variant` that computes what `model` computes (see the module docstring)."""
    from imfuse.networks.config import variant_config
    from imfuse.networks.model import build_model

    narrow = model.variant
    wide = variant_config(variant)
    check_widenable(narrow, wide)
    rng = np.random.default_rng(seed)
    out = build_model(wide)
    out.predictor.set_weights(model.predictor.get_weights())  # same predictor, same bottleneck
    for i, norm_map in enumerate(_norm_maps(narrow, wide)):
        for kind in ("gamma", "beta"):
            kernel, bias = model.style_heads.get_layer(f"{kind}_{i}").get_weights()
            if norm_map is not None:
                kernel, bias = kernel[:, norm_map], bias[norm_map]
            out.style_heads.get_layer(f"{kind}_{i}").set_weights([kernel, bias])
    maps = _transformer_maps(narrow, wide)
    weighted = {layer.name for layer in model.transformer.layers if layer.weights}
    if weighted != set(maps):
        raise ConfigError(f"widening does not know the transformer layers {sorted(weighted ^ set(maps))}")
    for name, (out_map, in_map) in maps.items():
        weights = model.transformer.get_layer(name).get_weights()
        if name.endswith("_norm"):
            widened = [w[out_map] for w in weights]
        else:
            widened = [widen_kernel(weights[0], out_map, in_map, rng)]
            if len(weights) > 1:  # a bias: each copy keeps its channel's
                widened.append(weights[1] if out_map is None else weights[1][out_map])
        out.transformer.get_layer(name).set_weights(widened)
    out.predictor_init = model.predictor_init
    return out
