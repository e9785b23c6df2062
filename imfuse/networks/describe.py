"""Parameter and FLOP counts per variant (`imfuse models describe`).

FLOPs are counted by tf.profiler on concrete functions with fixed shapes (batch 1),
so they follow the real graph rather than a hand-kept formula.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tensorflow as tf

from imfuse.networks.config import FROZEN_TRUNKS, VariantConfig
from imfuse.networks.model import StyleTransferModel, build_model

FLOPS_METHOD = "tf.profiler float_operation on concrete functions (1 multiply-add = 2 FLOPs, batch 1)"


@dataclass
class ModelSummary:
    variant: VariantConfig
    predictor_params: int
    heads_params: int
    transformer_params: int
    style_params: int
    frozen_params: int = 0  # pretrained, neither trained nor saved (vgg16_hed trunk)
    # size (content px, square) -> GFLOPs; the predictor always sees style_size px.
    transformer_gflops: dict[int, float] = field(default_factory=dict)
    predictor_gflops: float = 0.0

    @property
    def total_params(self) -> int:
        return self.predictor_params + self.heads_params + self.transformer_params


def count_flops(fn, *specs: tf.TensorSpec) -> int:
    """Float operations of `fn` traced at the given (fully defined) input specs."""
    concrete = tf.function(tf.autograph.experimental.do_not_convert(fn)).get_concrete_function(*specs)
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # the v1 profiler logs deprecation notices on every call
    try:
        return int(tf.compat.v1.profiler.profile(graph=concrete.graph, options=options).total_float_ops)
    finally:
        logger.setLevel(level)


def summarize(model: StyleTransferModel, sizes: list[int]) -> ModelSummary:
    cfg = model.variant
    summary = ModelSummary(
        variant=cfg,
        predictor_params=model.predictor.count_params(),
        frozen_params=sum(int(v.shape.num_elements()) for v in model.frozen_variables),
        heads_params=model.style_heads.count_params(),
        transformer_params=model.transformer.count_params(),
        style_params=cfg.style_param_count,
    )
    style = tf.TensorSpec([1, cfg.style_size, cfg.style_size, 3], tf.float32)
    summary.predictor_gflops = (
        count_flops(lambda s: model.style_heads(model.embed_preprocessed(s)), style) / 1e9
    )
    params = tf.TensorSpec([1, cfg.style_param_count], tf.float32)
    for size in sizes:
        content = tf.TensorSpec([1, size, size, 3], tf.float32)
        summary.transformer_gflops[size] = count_flops(lambda c, p: model.transformer([c, p]), content, params) / 1e9
    return summary


def describe_variants(variants: list[str], sizes: list[int]) -> list[ModelSummary]:
    return [summarize(build_model(name, predictor_weights="none"), sizes) for name in variants]


def _trunk_label(predictor: str) -> str:
    trunk, package = FROZEN_TRUNKS.get(predictor, ("trunk", None))
    return f"{trunk} ({package})" if package else trunk


def format_summaries(summaries: list[ModelSummary]) -> str:
    """Two plain-text tables: parameters, then GFLOPs per content size."""
    lines = ["Parameters"]
    head = f"{'variant':<9}{'predictor':>13}{'style heads':>13}{'transformer':>13}{'total':>13}{'style params':>14}"
    lines += [head, "-" * len(head)]
    for s in summaries:
        lines.append(
            f"{s.variant.name:<9}{s.predictor_params:>13,}{s.heads_params:>13,}{s.transformer_params:>13,}"
            f"{s.total_params:>13,}{s.style_params:>14,}"
        )
    lines += ["", "Architecture"]
    for s in summaries:
        v = s.variant
        reads = (f" (VGG blocks 1-{v.predictor_layers}, style pooled 1/{v.predictor_pool})"
                 if v.predictor == "vgg16_hed" else "")
        lines.append(
            f"{v.name:<9}predictor={v.predictor}{reads} alpha={v.alpha} residual_blocks={v.residual_blocks} "
            f"separable={v.separable} outer_kernel={v.outer_kernel} separable_outer={v.separable_outer} "
            f"contract_norm={v.contract_norm} "
            f"bottleneck={v.bottleneck} style_size={v.style_size}"
        )
    lines += ["", f"GFLOPs per image ({FLOPS_METHOD}; style at its style_size)"]
    head = f"{'variant':<9}{'content px':>11}{'predictor':>11}{'transformer':>13}{'total':>10}"
    lines += [head, "-" * len(head)]
    for s in summaries:
        for size, gflops in s.transformer_gflops.items():
            lines.append(
                f"{s.variant.name:<9}{size:>11}{s.predictor_gflops:>11.2f}{gflops:>13.2f}"
                f"{s.predictor_gflops + gflops:>10.2f}"
            )
    frozen = [s for s in summaries if s.frozen_params]
    if frozen:
        lines += ["", "Frozen pretrained weights (used, never trained, not saved in model files)"]
        lines += [f"{s.variant.name:<9}{s.frozen_params:>13,}  {_trunk_label(s.variant.predictor)} of the "
                  f"{s.variant.predictor} predictor"
                  for s in frozen]
    return "\n".join(lines)


def format_base_models() -> str:
    """What each shipped base model is and how it was made (its committed record)."""
    from imfuse.base_model import BASE_DIR, FLOAT16, INT8, base_model_record, shipped_variants

    lines = ["Shipped base models (imfuse/base_models; `--model base`, `--init-from base`)"]
    if not shipped_variants():
        return "\n".join(lines + ["  none"])
    for variant in shipped_variants():
        record = base_model_record(variant)
        size = (BASE_DIR / f"{variant}.npz").stat().st_size / 1e6
        storage = "int8 kernels" if record.get("weights_storage") == INT8 else FLOAT16
        lines.append(f"{variant:<9}{size:.1f} MB ({storage})  {record.get('summary', 'no record')}")
        phase1 = record.get("configs", {}).get("phase1", {})
        source = phase1.get("source")
        if source:  # phase 1 imported pretrained weights instead of training
            lines.append(f"  phase1 imported: {source['package']} ({source['license']}); sha256 "
                         + ", ".join(f"{name} {digest[:12]}" for name, digest in source["files"].items()))
        widened = phase1.get("widened")
        if widened:  # phase 1 is a narrower model (the import or a shipped base) widened exactly
            lines.append(f"  phase1 widened: {widened.get('from', 'the import')}, alpha {widened['from_alpha']} -> "
                         f"{widened['to_alpha']}, {widened['method']}, seed {widened['seed']}")
        for key in ("renamed", "commands", "dataset_hash", "steps", "trained_on", "metrics"):
            if key in record:
                value = record[key]
                if isinstance(value, list):
                    lines += [f"  {key}:"] + [f"    {v}" for v in value]
                elif isinstance(value, dict):
                    lines += [f"  {key}:"] + [f"    {k}: {v}" for k, v in value.items()]
                else:
                    lines.append(f"  {key}: {value}")
    return "\n".join(lines)
