"""Recipes: what makes each variant, as frozen data that lands in manifests and results JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from defectbench.errors import ConfigError
from defectbench.train.config import DistillConfig, TrainConfig, check_distillable


@dataclass(frozen=True)
class ModelSpec:
    """A timm architecture, whether it starts from pretrained weights, and its input size."""

    arch: str
    img_size: int
    pretrained: bool = True
    timm_kwargs: tuple[tuple[str, Any], ...] = ()
    # a local weights file to start from (else an installed package, else the hub); keyed by
    # its bytes, not its path
    weights: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.timm_kwargs, dict):
            object.__setattr__(self, "timm_kwargs", tuple(sorted(self.timm_kwargs.items())))
        if not 16 <= self.img_size <= 1024:
            raise ConfigError(f"{self.arch}: img_size {self.img_size} outside 16..1024")
        if self.weights is not None and not self.pretrained:
            raise ConfigError(f"{self.arch}: a weights file was given for a model trained from "
                              "scratch (pretrained=False); drop one of them")


@dataclass(frozen=True)
class TrainedRecipe:
    """Fine-tune (or train from scratch) on `train`, select on `dev`; optionally distil."""

    model: ModelSpec
    train: TrainConfig
    distill: DistillConfig | None = None

    def __post_init__(self) -> None:
        check_distillable(self.train, self.distill)  # at profile time, not after the parents
        if self.model.img_size != self.train.img_size:
            raise ConfigError(
                f"{self.model.arch}: model img_size {self.model.img_size} != train img_size "
                f"{self.train.img_size}"
            )

    runtime = "torch"
    # fp16 is a CUDA format; on CPU the AMX units run bf16 (FACTS.md). Every recipe's first CPU
    # precision is the one its build scores dev with, so the one its threshold is chosen for
    # (`threshold_chosen_with` in the suite's results)
    precisions = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "bf16", "fp16")}

    @property
    def parents(self) -> tuple[str, ...]:
        return (self.distill.teacher,) if self.distill else ()

    @property
    def img_size(self) -> int:
        return self.model.img_size

    def to_dict(self) -> dict:
        return {"kind": "trained", **recipe_asdict(self)}


def recipe_asdict(recipe: Any) -> dict:
    def convert(value):
        if isinstance(value, TrainConfig):  # it knows which of its fields to leave out
            return value.to_dict()
        if isinstance(value, ModelSpec) and value.weights is None:
            # named only when given, so the keys of models without one stay what they were
            return {f.name: convert(getattr(value, f.name))
                    for f in dataclasses.fields(value) if f.name != "weights"}
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple):
            return [convert(v) for v in value]
        return value

    return convert(recipe)
