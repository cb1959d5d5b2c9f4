"""Exact (Clopper-Pearson) confidence intervals on a binomial proportion."""

from __future__ import annotations

import math
import numbers
import operator
from dataclasses import asdict, dataclass
from typing import Any

from scipy.stats import beta

from defectbench.errors import ConfigError

SIDES = ("two-sided", "upper", "lower")


def as_count(value: object) -> int:
    """``operator.index(value)``, but TypeError for a bool: True indexes as 1, and a flag
    passed where a count belongs is a caller's bug, not one event."""
    if isinstance(value, bool):
        raise TypeError(f"a bool is not a count: {value!r}")
    return operator.index(value)


@dataclass(frozen=True)
class Proportion:
    """``successes / trials`` with a confidence interval.

    ``side`` says which ends are informative: ``"upper"`` bounds have ``lower == 0`` and
    ``"lower"`` bounds have ``upper == 1``; ``confidence`` is the coverage of that interval.
    """

    successes: int
    trials: int
    estimate: float
    lower: float
    upper: float
    confidence: float
    side: str = "two-sided"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Proportion:
        return cls(**data)


def check_confidence(confidence: float, what: str = "confidence") -> float:
    """``confidence`` as a float strictly between 0 and 1, or ConfigError."""
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real):
        raise ConfigError(f"{what} must be a number in (0, 1) such as 0.95, got {confidence!r}")
    if not 0.0 < float(confidence) < 1.0:
        # the hint fits a percentage written as a number, not a NaN
        hint = " (write 0.95, not 95)" if float(confidence) > 1.0 else ""
        raise ConfigError(
            f"{what} must be in (0, 1) such as 0.95, got {confidence!r}{hint}"
        )
    return float(confidence)


def clopper_pearson(
    k: int, n: int, confidence: float = 0.95, side: str = "two-sided"
) -> Proportion:
    """Exact Clopper-Pearson interval on ``k`` successes in ``n`` trials.

    ``side="two-sided"`` puts ``(1 - confidence) / 2`` in each tail; ``"upper"`` and ``"lower"``
    give a one-sided bound at ``confidence`` with the other end at 0 or 1. ``n == 0`` raises
    ConfigError: a proportion of nothing has no interval, and returning NaN would let an empty
    group slip through a budget unnoticed.
    """
    confidence = check_confidence(confidence)
    if side not in SIDES:
        raise ConfigError(f"side must be one of {', '.join(map(repr, SIDES))}, got {side!r}")
    try:
        k, n = as_count(k), as_count(n)
    except TypeError:
        raise ConfigError(
            f"clopper_pearson needs integer counts, got k={k!r}, n={n!r}; pass counts, not rates"
        ) from None
    if n <= 0:
        raise ConfigError(
            f"clopper_pearson needs at least one trial, got k={k}, n={n}: there is no interval "
            "on a proportion of nothing; skip or report the empty group instead"
        )
    if not 0 <= k <= n:
        raise ConfigError(f"clopper_pearson needs 0 <= k <= n, got k={k}, n={n}")
    if side != "two-sided" and confidence <= 0.5:  # as drop_interval: no margin to report
        raise ConfigError(
            f"a one-sided bound at confidence {confidence} has no margin over the estimate (at "
            "0.5 it is about the median) or lies on the wrong side of it; use a confidence "
            "above 0.5, such as 0.95"
        )

    alpha = 1.0 - confidence
    tail = alpha / 2 if side == "two-sided" else alpha
    # Beta quantiles are exact inversions of the binomial tails; at k == 0 / k == n the
    # bound is the boundary itself (beta's shape parameter would be 0).
    lower = 0.0
    upper = 1.0
    if side in ("two-sided", "lower") and k > 0:
        lower = float(beta.ppf(tail, k, n - k + 1))
    if side in ("two-sided", "upper") and k < n:
        upper = float(beta.ppf(1.0 - tail, k + 1, n - k))
    estimate = k / n
    # Guard against the last ulp of quantile round-off so the interval always holds the estimate.
    lower, upper = min(lower, estimate), max(upper, estimate)
    if math.isnan(lower) or math.isnan(upper):  # pragma: no cover - scipy contract
        raise ConfigError(f"Clopper-Pearson failed for k={k}, n={n}, confidence={confidence}")
    return Proportion(k, n, estimate, lower, upper, confidence, side)
