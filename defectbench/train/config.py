"""Training recipes: frozen, validated, JSON round-trippable."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from numbers import Integral

from defectbench.errors import ConfigError


def _require_int(name: str, value: object, minimum: int, why: str = "") -> None:
    # a float or a bool passed here (a hand-written JSON recipe) would pass a comparison and
    # fail much later inside range() or torch, or key a variant by the wrong type
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}{why} and a whole number, got {value!r}")


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation that suits EL images of square cells.

    Flips and 90-degree turns keep a cell a cell (bus bars simply turn); rotations stay small
    because real cells are cropped square; contrast and brightness vary with EL exposure.
    `rot90` is drawn as a transpose (a mirror in the diagonal), which with the two flips gives
    all eight quarter-turn and mirror views of a square; alone it gives two views, not four
    turns (kept as built: changing it would change the weights every existing key promises).
    """

    flips: bool = True
    rot90: bool = True
    max_rotation_deg: float = 3.0
    contrast: float = 0.2
    brightness: float = 0.1

    def __post_init__(self) -> None:
        for name in ("flips", "rot90"):
            # a string such as "false" from a hand-edited recipe would switch it on
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"augment {name} must be true or false, got "
                                  f"{getattr(self, name)!r}")
        if not 0 <= self.max_rotation_deg <= 30:
            raise ConfigError(f"max_rotation_deg {self.max_rotation_deg} outside 0..30")
        if not 0 <= self.contrast < 1 or not 0 <= self.brightness < 1:
            raise ConfigError("contrast and brightness jitter must be in [0, 1)")


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation from a frozen teacher whose logits are computed once and cached.

    `soft`: alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(labels) (Hinton et al.;
    `F.kl_div(log p_student, log p_teacher)`). `hard`: DeiT-style, 0.5 * CE(labels) + 0.5 *
    CE(teacher argmax).

    The teacher's logits are those of the un-augmented training images (offline
    distillation: one teacher pass per build, not one per step), while the student sees each
    image augmented (flips, small rotations, exposure), so the target describes the image, not
    the view: for views that change what the teacher would say, the student is taught the
    un-augmented answer. Class weights (`TrainConfig.class_balance`) apply to the
    cross-entropy terms only; the KL term is unweighted, so a soft-KD student takes over its
    teacher's class prior (a teacher trained without class weights pulls its scores at a fixed
    0.5 threshold below those of a class-weighted no-KD student; its ranking and the
    dev-chosen recall threshold are not affected that way).
    """

    teacher: str
    mode: str = "soft"
    temperature: float = 4.0
    alpha: float = 0.7

    def __post_init__(self) -> None:
        if self.mode not in ("soft", "hard"):
            raise ConfigError(f"distillation mode {self.mode!r} is not one of 'soft', 'hard'")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            # nan passed `<= 0`; inf divides every logit to 0 and times T^2 gives a nan loss
            raise ConfigError(
                f"distillation temperature must be > 0 and finite, got {self.temperature}"
            )
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"distillation alpha must be in [0, 1], got {self.alpha}")
        if self.mode == "soft" and self.alpha == 0:
            # the loss is then the plain cross-entropy: a distilled variant that is the
            # undistilled one under another name and key
            raise ConfigError(
                "distillation alpha=0 gives the teacher no weight, which trains the model "
                "without distillation; use an alpha in (0, 1], or fit without distill="
            )
        if self.mode == "hard" and (self.temperature, self.alpha) != (4.0, 0.7):
            # the DeiT loss has no temperature and a fixed 0.5 / 0.5 mix: settings it would
            # ignore must not key a variant that is the same model
            raise ConfigError(
                f"hard-label distillation (0.5 * CE(labels) + 0.5 * CE(teacher's argmax)) uses "
                f"no temperature or alpha, got temperature={self.temperature}, "
                f"alpha={self.alpha}; leave them at their defaults, or use mode='soft'"
            )


TARGETS = ("labels", "annotator_probability")
MIXED_PRECISIONS = (None, "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """One supervised run: optimiser, schedule, budget, data subset and augmentation.

    `targets`: `labels` trains on the binary labels; `annotator_probability` on the annotated
    defect probability (ELPV: 0, 1/3, 2/3, 1) as a soft target, so a model learns that a cell
    the experts marked 1/3 or 2/3 is ambiguous instead of being told it is certainly one class,
    and 0.5 on its output is the rule that makes the binary labels.

    `ema_decay`: evaluate, select and keep an exponential moving average of the weights (and
    batch-norm statistics) instead of the raw ones, averaging over about 1 / (1 - decay)
    optimiser steps; it smooths the last epochs' step-to-step noise, which matters when `dev`
    picks one epoch of a short schedule. None trains without it.

    `mixed_precision`: "bf16" runs the forward pass under CPU autocast in bfloat16 (weights,
    optimiser state, the loss and the dev scoring stay float32). Whether that is faster
    depends on the model and the CPU: on the 2-core development VM (AVX512-BF16, no AMX) it
    made the ViT's steps 1.18x faster and the EfficientNets' slower (0.82-0.87x;
    docs/results/bf16-training-speed.txt), so no built-in profile uses it. None trains in
    float32.
    """

    epochs: int
    img_size: int
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.02
    seed: int = 0
    class_balance: str = "weighted_loss"
    label_smoothing: float = 0.0
    targets: str = "labels"
    # added after zoos were built: left out of to_dict() (and so of zoo keys) while unset,
    # so upgrading does not invalidate every cached variant that does not use it
    ema_decay: float | None = field(default=None, metadata={"omit_when_default": True})
    mixed_precision: str | None = field(default=None, metadata={"omit_when_default": True})
    # the profile's subset sizes, copied here so they key the variant; the subset itself is cut
    # by the zoo build (`profile_subset`), not by `fit`
    max_train_images: int | None = None
    max_dev_images: int | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        _require_int("epochs", self.epochs, 1)
        _require_int("img_size", self.img_size, 1)
        _require_int("batch_size", self.batch_size, 2, " (batch norm)")
        _require_int("seed", self.seed, 0)
        for name in ("max_train_images", "max_dev_images"):
            if getattr(self, name) is not None:
                # 0 did not mean "no images": the stratified cut still kept two of each
                # class, so the recipe would record a subset size it did not train on
                _require_int(name, getattr(self, name), 1, " or None (the whole split)")
        if not 0 < self.lr < 1:
            raise ConfigError(f"lr {self.lr} outside (0, 1)")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            # AdamW refuses it only when the optimiser is built, after the data is loaded
            raise ConfigError(f"weight_decay must be finite and >= 0, got {self.weight_decay}")
        if not 0 <= self.label_smoothing < 1:  # torch refuses it only at the first step
            raise ConfigError(f"label_smoothing {self.label_smoothing} outside [0, 1)")
        if self.class_balance not in ("weighted_loss", "none"):
            raise ConfigError(
                f"class_balance {self.class_balance!r} is not one of 'weighted_loss', 'none'"
            )
        if self.targets not in TARGETS:
            raise ConfigError(f"targets {self.targets!r} is not one of {', '.join(TARGETS)}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError(
                f"ema_decay {self.ema_decay} outside (0, 1); 0.99 averages over about 100 "
                "steps, None turns the average off"
            )
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ConfigError(
                f"mixed_precision {self.mixed_precision!r} is not one of "
                f"{', '.join(map(repr, MIXED_PRECISIONS))}"
            )
        if isinstance(self.augment, dict):  # from_dict round trip
            object.__setattr__(self, "augment", AugmentConfig(**self.augment))
        if not isinstance(self.augment, AugmentConfig):
            raise ConfigError(
                f"augment must be an AugmentConfig (or its dict), got {self.augment!r}; to "
                "train without augmentation give AugmentConfig(flips=False, rot90=False, "
                "max_rotation_deg=0, contrast=0, brightness=0)"
            )

    def to_dict(self) -> dict:
        out = asdict(self)
        for f in fields(self):
            if f.metadata.get("omit_when_default") and out[f.name] == f.default:
                del out[f.name]
        return out


def check_distillable(config: TrainConfig, distill: DistillConfig | None) -> None:
    """Refuse settings that distillation would ignore without a word."""
    if distill is not None and config.label_smoothing > 0:
        # distillation_loss has no smoothing term
        raise ConfigError(
            f"label_smoothing={config.label_smoothing} does nothing when distilling (the "
            "teacher's softened outputs already spread the targets); set it to 0 or train "
            "without distillation"
        )
    if distill is not None and distill.mode == "soft" and distill.alpha == 1:
        # alpha=1 leaves only the KL term: class weights and annotated targets enter the
        # cross-entropy alone, so they would key a variant whose weights they do not change
        ignored = [f"{name}={value!r}" for name, value, plain in (
            ("class_balance", config.class_balance, "none"),
            ("targets", config.targets, "labels")) if value != plain]
        if ignored:
            raise ConfigError(
                f"distillation alpha=1 leaves no cross-entropy term, so {', '.join(ignored)} "
                "would do nothing; set class_balance='none' and targets='labels', or an "
                "alpha below 1"
            )

