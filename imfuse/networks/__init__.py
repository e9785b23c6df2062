"""Style networks: transformer, style predictor, combined model, describe.

See docs/ARCHITECTURE.md; REFERENCE-ARCH.md gives the layout these follow.
"""

from imfuse.networks.config import VARIANTS, VariantConfig, variant_config
from imfuse.networks.model import (
    StyleTransferModel,
    build_model,
    compute_precision,
    load_model,
    preprocess_style,
    save_model,
    with_precision,
)

StyleModel = StyleTransferModel  # name used in docs/ARCHITECTURE.md

__all__ = [
    "VARIANTS",
    "StyleModel",
    "StyleTransferModel",
    "VariantConfig",
    "build_model",
    "compute_precision",
    "load_model",
    "preprocess_style",
    "save_model",
    "variant_config",
    "with_precision",
]
