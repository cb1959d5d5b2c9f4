"""Choosing the score threshold at which a classifier is judged.

The decision rule everywhere is ``score >= threshold`` means defective.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from defectbench.errors import ConfigError, DataError
from defectbench.metrics.confusion import as_binary, as_scores, check_same_length, predict


@dataclass(frozen=True)
class OperatingPoint:
    """A named threshold and how it was chosen.

    ``target_recall`` is the recall it was tuned for (``None`` for a fixed threshold such as
    0.5); ``chosen_on`` names the split it was tuned on (e.g. ``"dev"``), never the split it
    is judged on.
    """

    name: str
    threshold: float
    target_recall: float | None
    chosen_on: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"OperatingPoint name must be a non-empty string, got {self.name!r}")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, numbers.Real):
            raise ConfigError(
                f"OperatingPoint {self.name!r}: threshold must be a number, got {self.threshold!r}"
            )
        if not math.isfinite(self.threshold):
            # NaN flags nothing; +-inf flags nothing or everything: no threshold
            # threshold_for_recall can choose, so a broken or hand-edited one
            raise ConfigError(
                f"OperatingPoint {self.name!r}: threshold must be a finite number, got "
                f"{self.threshold!r}; choose it on dev with choose_operating_point"
            )
        object.__setattr__(self, "threshold", float(self.threshold))
        if self.target_recall is not None:  # stored as a float: a numpy one is not JSON
            object.__setattr__(self, "target_recall", _check_target(
                self.target_recall, f"OperatingPoint {self.name!r}: target_recall"))
        if not isinstance(self.chosen_on, str) or not self.chosen_on:
            raise ConfigError(
                f"OperatingPoint {self.name!r}: chosen_on must name the split the threshold was "
                f"chosen on (e.g. 'dev'), got {self.chosen_on!r}"
            )

    def predict(self, scores: Any) -> np.ndarray:
        """Bool predictions, True = defective."""
        return as_scores(scores) >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OperatingPoint:
        return cls(**data)


def _check_target(target: float, what: str) -> float:
    # numbers.Real: a numpy float (a target read from an array) is as good as a Python one
    if isinstance(target, bool) or not isinstance(target, numbers.Real) or not 0 < target <= 1:
        raise ConfigError(f"{what} must be in (0, 1], e.g. 0.95, got {target!r}")
    return float(target)


def recall_at(y_true: Any, scores: Any, threshold: float) -> float:
    """Recall of ``scores >= threshold`` on the defective items."""
    t = as_binary(y_true, "y_true")
    flagged = predict(scores, threshold)  # refuses a NaN threshold, which flags nothing
    check_same_length(y_true=t, scores=flagged)
    n_defective = int(t.sum())
    return int(flagged[t].sum()) / n_defective if n_defective else 0.0


def threshold_for_recall(y_true: Any, scores: Any, target_recall: float) -> float:
    """The highest threshold whose recall on this set is at least ``target_recall``.

    Of all thresholds that reach the target the highest flags the fewest items, so it
    maximises specificity at that recall. It is always one of the defective items' scores:
    with ``k`` the smallest count for which ``k / n_defective >= target_recall``, it is the
    ``k``-th highest defective score. DataError if there are no defective items.
    """
    target = _check_target(target_recall, "target_recall")
    t = as_binary(y_true, "y_true")
    s = as_scores(scores)
    check_same_length(y_true=t, scores=s)
    defect_scores = np.sort(s[t])[::-1]
    n = defect_scores.size
    if n == 0:
        raise DataError(
            f"threshold_for_recall got {t.size} items and none is defective; choose the "
            "threshold on a split that contains defective items"
        )
    # Same float arithmetic as recall (tp / n) so the returned threshold provably hits the
    # target; ceil(target * n) alone can be off by one from rounding (0.95 * 20 > 19).
    k = min(max(math.ceil(target * n), 1), n)
    while k > 1 and (k - 1) / n >= target:
        k -= 1
    while k < n and k / n < target:
        k += 1
    return float(defect_scores[k - 1])


def choose_operating_point(
    name: str, y_true: Any, scores: Any, target_recall: float, chosen_on: str
) -> OperatingPoint:
    """An :class:`OperatingPoint` at :func:`threshold_for_recall` on the given split."""
    threshold = threshold_for_recall(y_true, scores, target_recall)
    return OperatingPoint(name, threshold, float(target_recall), chosen_on)
