"""Per-class recall for multi-label defect sets, where the weakest class is what matters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from defectbench.errors import DataError
from defectbench.metrics.intervals import Proportion, check_confidence, clopper_pearson


@dataclass(frozen=True)
class ClassRecall:
    """Recall of one class; ``interval`` is ``None`` when the class has no positive items."""

    name: str
    n_positive: int
    caught: int
    recall: float
    interval: Proportion | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n_positive": self.n_positive,
            "caught": self.caught,
            "recall": self.recall,
            "interval": None if self.interval is None else self.interval.to_dict(),
        }


@dataclass(frozen=True)
class MultilabelRecall:
    """Per-class recall in class order, and the worst class among those with positives."""

    classes: tuple[ClassRecall, ...]
    confidence: float

    @property
    def judged(self) -> tuple[ClassRecall, ...]:
        """Classes with at least one positive item (the others have no recall to judge)."""
        return tuple(c for c in self.classes if c.n_positive > 0)

    @property
    def unjudged(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes if c.n_positive == 0)

    @property
    def worst(self) -> ClassRecall:
        """Lowest recall; ties go to the lower interval bound, then to class order."""
        if not self.judged:
            raise DataError(
                f"no class has a positive item (classes {[c.name for c in self.classes]}); "
                "worst-class recall needs positives"
            )
        return min(self.judged, key=lambda c: (c.recall, c.interval.lower))

    @property
    def worst_class_recall(self) -> float:
        return self.worst.recall

    def __getitem__(self, name: str) -> ClassRecall:
        for c in self.classes:
            if c.name == name:
                return c
        raise KeyError(f"no class {name!r}; classes are {[c.name for c in self.classes]}")

    def to_dict(self) -> dict[str, Any]:
        judged = bool(self.judged)
        return {
            "confidence": self.confidence,
            "classes": [c.to_dict() for c in self.classes],
            "worst_class": self.worst.name if judged else None,
            "worst_class_recall": self.worst.recall if judged else None,
            "unjudged": list(self.unjudged),
        }


def _as_label_matrix(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 2:
        raise DataError(f"{name} must be an (N, C) 0/1 array, got shape {arr.shape}")
    if arr.dtype != bool:
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise DataError(f"{name} must hold only 0/1")
        arr = arr.astype(bool)
    return arr


def per_class_recall(
    y_true: Any, y_pred: Any, class_names: Sequence[str], confidence: float = 0.95
) -> MultilabelRecall:
    """Recall with a two-sided Clopper-Pearson interval for each column of ``(N, C)`` arrays."""
    confidence = check_confidence(confidence)
    t = _as_label_matrix(y_true, "y_true")
    p = _as_label_matrix(y_pred, "y_pred")
    if t.shape != p.shape:
        raise DataError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}")
    if len(class_names) != t.shape[1]:
        raise DataError(f"{len(class_names)} class names for {t.shape[1]} label columns")
    names = [str(name) for name in class_names]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        # result[name] would read the first column of that name only, and worst_class would
        # name a class without saying which column
        raise DataError(
            f"class names must be unique, got {repeated} more than once in {names}; name each "
            "label column once"
        )
    classes = []
    for j, name in enumerate(class_names):
        n_pos = int(t[:, j].sum())
        caught = int((t[:, j] & p[:, j]).sum())
        interval = clopper_pearson(caught, n_pos, confidence) if n_pos else None
        classes.append(
            ClassRecall(str(name), n_pos, caught, caught / n_pos if n_pos else 0.0, interval)
        )
    return MultilabelRecall(tuple(classes), confidence)


def worst_class_recall(
    y_true: Any, y_pred: Any, class_names: Sequence[str], confidence: float = 0.95
) -> ClassRecall:
    """The class with the lowest recall (see :attr:`MultilabelRecall.worst`)."""
    return per_class_recall(y_true, y_pred, class_names, confidence).worst
