"""Binary confusion counts and the defect-class metrics derived from them.

Class 1 is *defective* and is the positive class throughout: recall is the share of defective
items flagged, FNR the share missed. Items are flagged when ``score >= threshold``.

Zero division follows scikit-learn's ``zero_division=0``: a rate whose denominator is zero
is 0.0 (recall with no defective items, precision with nothing flagged, ...). Intervals are
different: they raise or are reported as ``None`` rather than invent a value.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from defectbench.errors import ConfigError, DataError
from defectbench.metrics.intervals import Proportion, check_confidence, clopper_pearson


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


@dataclass(frozen=True)
class BinaryCounts:
    """Confusion counts with defective = positive."""

    tp: int
    fn: int
    fp: int
    tn: int

    def __post_init__(self) -> None:
        for name in ("tp", "fn", "fp", "tn"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise DataError(
                    f"BinaryCounts.{name} must be a non-negative integer, got {value!r}"
                )
            object.__setattr__(self, name, int(value))

    @property
    def n(self) -> int:
        return self.tp + self.fn + self.fp + self.tn

    @property
    def n_defective(self) -> int:
        return self.tp + self.fn

    @property
    def n_good(self) -> int:
        return self.fp + self.tn

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.n_defective)

    @property
    def fnr(self) -> float:
        return _ratio(self.fn, self.n_defective)

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def specificity(self) -> float:
        return _ratio(self.tn, self.n_good)

    @property
    def f1(self) -> float:
        # 2TP / (2TP + FP + FN) equals the harmonic mean and is 0 exactly where sklearn says 0.
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.n)

    def confusion_matrix(self) -> list[list[int]]:
        """``[[tn, fp], [fn, tp]]``: scikit-learn's layout for labels ``[0, 1]``."""
        return [[self.tn, self.fp], [self.fn, self.tp]]

    def recall_interval(self, confidence: float = 0.95, side: str = "two-sided") -> Proportion:
        """Clopper-Pearson interval on recall; DataError if there are no defective items."""
        self._require_defective("a recall interval")
        return clopper_pearson(self.tp, self.n_defective, confidence, side)

    def recall_lower_bound(self, confidence: float = 0.95) -> float:
        """One-sided lower confidence bound on recall."""
        return self.recall_interval(confidence, side="lower").lower

    def fnr_interval(self, confidence: float = 0.95, side: str = "two-sided") -> Proportion:
        """Clopper-Pearson interval on the false-negative rate."""
        self._require_defective("an FNR interval")
        return clopper_pearson(self.fn, self.n_defective, confidence, side)

    def fnr_upper_bound(self, confidence: float = 0.95) -> float:
        """One-sided upper confidence bound on FNR (equals 1 - the recall lower bound)."""
        return self.fnr_interval(confidence, side="upper").upper

    def specificity_interval(
        self, confidence: float = 0.95, side: str = "two-sided"
    ) -> Proportion:
        """Clopper-Pearson interval on specificity (good items passed); DataError if none."""
        if self.n_good == 0:
            raise DataError(
                f"cannot compute a specificity interval: the counts {self.to_dict()} contain no "
                "good items; evaluate on a set that contains good items"
            )
        return clopper_pearson(self.tn, self.n_good, confidence, side)

    def specificity_lower_bound(self, confidence: float = 0.95) -> float:
        """One-sided lower confidence bound on specificity."""
        return self.specificity_interval(confidence, side="lower").lower

    def _require_defective(self, what: str) -> None:
        if self.n_defective == 0:
            raise DataError(
                f"cannot compute {what}: the counts {self.to_dict()} contain no defective "
                "items; evaluate on a set that contains defective items"
            )

    def to_dict(self) -> dict[str, int]:
        return {"tp": self.tp, "fn": self.fn, "fp": self.fp, "tn": self.tn}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BinaryCounts:
        return cls(tp=data["tp"], fn=data["fn"], fp=data["fp"], tn=data["tn"])


def as_binary(values: Any, name: str) -> np.ndarray:
    """A 1-D bool array from 0/1 or bool values, or DataError naming ``name``."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DataError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype != bool:
        if arr.size and not np.isin(arr, (0, 1)).all():
            bad = sorted({v.item() for v in np.unique(arr[~np.isin(arr, (0, 1))])})[:5]
            raise DataError(f"{name} must hold only 0/1 (1 = defective), found {bad}")
        arr = arr.astype(bool)
    return arr


def as_scores(values: Any, name: str = "scores") -> np.ndarray:
    """A 1-D float array of finite scores. NaN is refused because ``nan >= t`` would read as
    'good'; an infinite score (an overflowed FP16 logit) is as broken, and chosen as a
    threshold it would flag every image or none."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise DataError(f"{name} must be 1-D, got shape {arr.shape}")
    for what, bad in (("NaN", np.isnan(arr)), ("infinite", np.isinf(arr))):
        where = np.flatnonzero(bad)
        if where.size:
            raise DataError(
                f"{name} contain {where.size} {what} values (first at index {where[0]}); a "
                "broken model output must not be counted as a prediction, fix the model or its "
                "inputs"
            )
    return arr


def check_same_length(**arrays: np.ndarray) -> int:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"arrays must have the same length, got {lengths}")
    return next(iter(lengths.values()))


def binary_counts(y_true: Any, y_pred: Any) -> BinaryCounts:
    """Confusion counts from 0/1 labels and 0/1 predictions (1 = defective)."""
    t, p = as_binary(y_true, "y_true"), as_binary(y_pred, "y_pred")
    check_same_length(y_true=t, y_pred=p)
    return BinaryCounts(
        tp=int(np.sum(t & p)),
        fn=int(np.sum(t & ~p)),
        fp=int(np.sum(~t & p)),
        tn=int(np.sum(~t & ~p)),
    )


def predict(scores: Any, threshold: float) -> np.ndarray:
    """The decision rule used everywhere: defective when ``score >= threshold``."""
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, numbers.Real)
        or not math.isfinite(threshold)
    ):
        # NaN compares false with everything: nothing flagged, recall 0, and NaN in the JSON;
        # +inf flags nothing and -inf everything, as scores (finite) can never tie them
        raise DataError(f"threshold must be a finite number, got {threshold!r}")
    return as_scores(scores) >= threshold


def _interval_or_none(counts: BinaryCounts, confidence: float, fnr: bool) -> dict | None:
    # A group without defective items has no recall interval; None says so in the JSON.
    if counts.n_defective == 0:
        return None
    if fnr:
        return counts.fnr_interval(confidence, side="upper").to_dict()
    return counts.recall_interval(confidence).to_dict()


def metrics_dict(counts: BinaryCounts, confidence: float = 0.95) -> dict[str, Any]:
    """Counts, every rate, the two-sided recall CI and the one-sided FNR upper bound."""
    return {
        "counts": counts.to_dict(),
        "n": counts.n,
        "n_defective": counts.n_defective,
        "n_good": counts.n_good,
        "recall": counts.recall,
        "fnr": counts.fnr,
        "precision": counts.precision,
        "specificity": counts.specificity,
        "f1": counts.f1,
        "accuracy": counts.accuracy,
        "confidence": confidence,
        "recall_interval": _interval_or_none(counts, confidence, fnr=False),
        "fnr_upper_bound": _interval_or_none(counts, confidence, fnr=True),
        "confusion_matrix": counts.confusion_matrix(),
    }


def binary_report(
    y_true: Any,
    scores: Any,
    threshold: float,
    *,
    groups: Mapping[str, Any] | None = None,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Everything about one operating point as a JSON-ready dict.

    Top level: ``threshold`` plus :func:`metrics_dict`. ``groups[name][value]`` (values as
    strings, sorted) holds ``counts``, ``n``, ``n_defective``, ``recall``, ``fnr`` and the
    two-sided ``recall_interval`` (``None`` where the group value has no defective items).
    """
    confidence = check_confidence(confidence)
    if confidence <= 0.5:
        raise ConfigError(
            f"binary_report's confidence {confidence} also sets its one-sided FNR upper bound, "
            "which has no margin over the estimate at 0.5 or less; use a confidence above 0.5, "
            "such as 0.95"
        )
    t = as_binary(y_true, "y_true")
    pred = predict(scores, threshold)
    n = check_same_length(y_true=t, scores=pred)
    if n == 0:
        raise DataError("binary_report got no items; evaluate on a non-empty set")
    report: dict[str, Any] = {"threshold": float(threshold)}
    report.update(metrics_dict(binary_counts(t, pred), confidence))
    report["groups"] = {}
    for group_name, key, mask in group_masks(groups, n):
        c = binary_counts(t[mask], pred[mask])
        report["groups"].setdefault(group_name, {})[key] = {
            "counts": c.to_dict(),
            "n": c.n,
            "n_defective": c.n_defective,
            "recall": c.recall,
            "fnr": c.fnr,
            "recall_interval": _interval_or_none(c, confidence, fnr=False),
        }
    return report


def group_masks(
    groups: Mapping[str, Any] | None, n: int
) -> Iterator[tuple[str, str, np.ndarray]]:
    """(group name, value as a string, boolean mask) for every value of every group, sorted."""
    for group_name, values in sorted((groups or {}).items()):
        keys = np.asarray(values).astype(str)
        if keys.shape != (n,):
            raise DataError(f"group {group_name!r} has shape {keys.shape}, expected ({n},)")
        for key in sorted(set(keys.tolist())):
            yield group_name, key, keys == key
