"""Paired comparison of defect recall between a reference (the FP32 teacher) and a variant.

Both models see the same defective items, so the comparison uses the pairs: of the ``n``
defective items, ``b`` (new misses) were caught by the reference and missed by the variant,
``c`` (new catches) the other way round, and the rest agree. The recall drop is
``(b - c) / n``; items both models get right or wrong carry no information about the
difference.

Test: exact McNemar, i.e. two-sided binomial test of ``b`` out of ``m = b + c`` at 1/2.

Interval on the drop: Tango's score interval (Tango 1998, "Equivalence test and confidence
interval for the difference in proportions for the paired-sample design"), the one Fagerland,
Lydersen and Laake (2014) recommend for paired proportions. A drop ``delta`` is inside it when
the score statistic

    T(delta) = (b - c - n delta) / sqrt(n (2 p21 + delta (1 - delta)))

stays within the normal quantile, ``p21`` being the maximum-likelihood probability of a new
catch under ``drop == delta``. It is unconditional: the number of discordant pairs ``m`` is
itself random, and a variant that only loses catches (``c == 0``, the usual case for a
compressed model) still gets a bound above its observed drop. The conditional alternative (a
Clopper-Pearson interval on ``b`` out of ``m``, mapped by ``m/n``; used here until
2026-11-23) cannot exceed ``m/n``: with ``c == 0`` its "upper bound" is the point estimate
itself, and at 204 defective cells it covers a true drop of 2 or 5 points with no new
catches 39% and 44% of the time instead of 95% (exact trinomial coverage,
``tests/test_paired.py``; ``docs/results/gate-statistics.txt``). Tango's is asymptotic, not
exact: its one-sided 95% coverage (exact trinomial) is at or above 94% at 204 defective
cells for the drops and churn of the committed runs, but coverage is a sawtooth in the true
drop, and its infimum over true drops up to 0.3 with no new catches is 93.2% there, 93.1% in
val's cell-type groups (112 and 92 defective cells) and 92.1% in a group of 20, each just
above the bound that no discordant pair leaves (``z**2/(n + z**2)``, 0.013 at 204 cells): a
per-group drop bound over a small group covers somewhat less than its nominal level
(``tests/test_paired.py``). The exact alternative that guarantees it (a Bonferroni pair of
Clopper-Pearson bounds on ``b/n`` and ``c/n``) is up to half again as wide (0.115 against
0.081 for 23 new misses and 17 new catches of 205).
With no discordant pair the interval is not ``[0, 0]``: it is about ``+- z**2 / n``, what
``n`` agreeing items can exclude.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.stats import binomtest, norm

from defectbench.errors import ConfigError, DataError
from defectbench.metrics.confusion import as_binary, check_same_length, group_masks
from defectbench.metrics.intervals import SIDES, as_count, check_confidence


def drop_interval(
    new_misses: int, new_catches: int, n_defective: int, confidence: float, side: str = "two-sided"
) -> tuple[float, float]:
    """Tango's score interval on the recall drop ``(new_misses - new_catches) / n_defective``.

    ``side="upper"`` gives a one-sided upper bound at ``confidence`` (lower end -1),
    ``"lower"`` a one-sided lower bound (upper end 1). See the module docstring.
    """
    confidence = check_confidence(confidence)
    if side not in SIDES:
        raise ConfigError(f"side must be one of {', '.join(map(repr, SIDES))}, got {side!r}")
    try:
        b, c, n = (as_count(v) for v in (new_misses, new_catches, n_defective))
    except TypeError:
        raise ConfigError(
            f"drop_interval needs integer counts, got new_misses={new_misses!r}, "
            f"new_catches={new_catches!r}, n_defective={n_defective!r}; pass counts, not rates"
        ) from None
    if n <= 0:
        raise DataError("a recall drop needs at least one defective item, got n_defective=0")
    if b < 0 or c < 0 or b + c > n:
        raise DataError(
            f"a recall drop needs 0 <= new_misses + new_catches <= n_defective, got "
            f"new_misses={b}, new_catches={c}, n_defective={n}"
        )
    if side != "two-sided" and confidence <= 0.5:
        raise ConfigError(
            f"a one-sided bound at confidence {confidence} has no margin over the estimate (at "
            "0.5 it is about the median) or lies on the wrong side of it; use a confidence "
            "above 0.5, such as 0.95"
        )
    z = float(norm.ppf(confidence if side != "two-sided" else (1 + confidence) / 2))
    lower, upper = -1.0, 1.0
    if side in ("two-sided", "upper") and b < n:
        upper = _upper_end(b, c, n, z)
    if side in ("two-sided", "lower") and c < n:
        # Tango's statistic is antisymmetric under swapping misses and catches, so the lower
        # end is the mirrored upper one: one root search, as accurate next to -1 as next to 1
        lower = -_upper_end(c, b, n, z)
    return lower, upper


_EPS = 1e-12


def _upper_end(b: int, c: int, n: int, z: float) -> float:
    # T is 0 at the estimate and falls to -inf towards 1
    start = max((b - c) / n, -1 + _EPS)
    return _root(lambda d: _tango_score(d, b, c, n) + z, start, 1 - _EPS)


def _root(f, start: float, end: float) -> float:
    """The root of ``f`` between ``start`` (where it is >= 0) and ``end`` (where it is < 0).
    ``start`` is the estimate moved off +-1 by ``_EPS``; if ``z`` is so close to 0 that f is
    already negative there, the bound is that point."""
    if f(start) <= 0:
        return start
    return brentq(f, min(start, end), max(start, end), xtol=1e-12)


def _tango_score(delta: float, b: int, c: int, n: int) -> float:
    """Tango's score statistic for ``drop == delta``; ``p21`` is the restricted MLE of the
    new-catch probability (the root of his quadratic)."""
    qa = 2 * n
    qb = -b - c + (2 * n - b + c) * delta
    qc = -c * delta * (1 - delta)
    # max(0, ...): both are >= 0 exactly, but round below 0 next to delta = +-1
    p21 = (math.sqrt(max(qb * qb - 4 * qa * qc, 0.0)) - qb) / (2 * qa)
    variance = n * (2 * p21 + delta * (1 - delta))
    excess = b - c - n * delta
    if variance <= 0:  # at delta = 0 with b == c == 0 (T's limit is 0) or at +-1
        return 0.0 if excess == 0 else math.copysign(math.inf, excess)
    return excess / math.sqrt(variance)


def mcnemar_exact_p(new_misses: int, new_catches: int) -> float:
    """Exact two-sided McNemar p-value; 1.0 when there are no discordant pairs."""
    counts = (new_misses, new_catches)
    if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0 for v in counts):
        raise ConfigError(
            f"mcnemar_exact_p needs counts (integers >= 0), got new_misses={new_misses!r}, "
            f"new_catches={new_catches!r}"
        )
    m = new_misses + new_catches
    return 1.0 if m == 0 else float(binomtest(new_misses, m, 0.5).pvalue)


@dataclass(frozen=True)
class RecallComparison:
    """Variant vs reference on the defective items; ``drop > 0`` means the variant is worse."""

    n_defective: int
    reference_caught: int
    variant_caught: int
    new_misses: int
    new_catches: int
    new_miss_ids: tuple[str, ...]
    new_catch_ids: tuple[str, ...]
    mcnemar_p: float
    confidence: float
    drop_lower: float
    drop_upper_two_sided: float
    drop_upper: float

    @property
    def reference_recall(self) -> float:
        return self.reference_caught / self.n_defective

    @property
    def variant_recall(self) -> float:
        return self.variant_caught / self.n_defective

    @property
    def drop(self) -> float:
        # From integer counts so that e.g. 3/100 compares equal to a 0.03 budget.
        return (self.reference_caught - self.variant_caught) / self.n_defective

    @property
    def drop_interval(self) -> tuple[float, float]:
        """Two-sided Tango score interval at ``confidence``."""
        return self.drop_lower, self.drop_upper_two_sided

    def drop_upper_bound(self, confidence: float | None = None) -> float:
        """One-sided upper bound on the drop, at ``confidence`` (default: the stored one)."""
        if confidence is None:
            return self.drop_upper
        return drop_interval(
            self.new_misses, self.new_catches, self.n_defective, confidence, "upper"
        )[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_defective": self.n_defective,
            "reference_recall": self.reference_recall,
            "variant_recall": self.variant_recall,
            "drop": self.drop,
            "new_misses": self.new_misses,
            "new_catches": self.new_catches,
            "new_miss_ids": list(self.new_miss_ids),
            "new_catch_ids": list(self.new_catch_ids),
            "mcnemar_p": self.mcnemar_p,
            "confidence": self.confidence,
            "drop_interval": list(self.drop_interval),
            "drop_upper": self.drop_upper,
            "reference_caught": self.reference_caught,
            "variant_caught": self.variant_caught,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecallComparison:
        """Rebuild from :meth:`to_dict` output (bounds are recomputed from the counts)."""
        return _comparison(
            n_defective=data["n_defective"],
            reference_caught=data["reference_caught"],
            variant_caught=data["variant_caught"],
            new_miss_ids=tuple(data["new_miss_ids"]),
            new_catch_ids=tuple(data["new_catch_ids"]),
            confidence=data["confidence"],
        )


def _comparison(
    n_defective: int,
    reference_caught: int,
    variant_caught: int,
    new_miss_ids: tuple[str, ...],
    new_catch_ids: tuple[str, ...],
    confidence: float,
) -> RecallComparison:
    b, c = len(new_miss_ids), len(new_catch_ids)
    lower, upper2 = drop_interval(b, c, n_defective, confidence, "two-sided")
    return RecallComparison(
        n_defective=n_defective,
        reference_caught=reference_caught,
        variant_caught=variant_caught,
        new_misses=b,
        new_catches=c,
        new_miss_ids=new_miss_ids,
        new_catch_ids=new_catch_ids,
        mcnemar_p=mcnemar_exact_p(b, c),
        confidence=confidence,
        drop_lower=lower,
        drop_upper_two_sided=upper2,
        drop_upper=drop_interval(b, c, n_defective, confidence, "upper")[1],
    )


def compare_recall(
    ids: Sequence[str],
    y_true: Any,
    ref_pred: Any,
    var_pred: Any,
    confidence: float = 0.95,
) -> RecallComparison:
    """Paired recall comparison on the defective items (``y_true == 1``).

    ``ref_pred`` and ``var_pred`` are 0/1 predictions of the reference and the variant at
    their operating points. DataError if there are no defective items or the inputs disagree
    in length.
    """
    confidence = check_confidence(confidence)
    t = as_binary(y_true, "y_true")
    ref = as_binary(ref_pred, "ref_pred")
    var = as_binary(var_pred, "var_pred")
    id_arr = np.asarray([str(i) for i in ids], dtype=object)
    check_same_length(ids=id_arr, y_true=t, ref_pred=ref, var_pred=var)
    if len(set(id_arr.tolist())) != len(id_arr):
        raise DataError("compare_recall needs unique ids; the same item must not be counted twice")
    n_defective = int(t.sum())
    if n_defective == 0:
        raise DataError(
            f"compare_recall got {len(t)} items and none is defective (y_true == 1); a recall "
            "comparison needs defective items"
        )
    ref_d, var_d, ids_d = ref[t], var[t], id_arr[t]
    return _comparison(
        n_defective=n_defective,
        reference_caught=int(ref_d.sum()),
        variant_caught=int(var_d.sum()),
        new_miss_ids=tuple(sorted(ids_d[ref_d & ~var_d].tolist())),
        new_catch_ids=tuple(sorted(ids_d[~ref_d & var_d].tolist())),
        confidence=confidence,
    )


def compare_recall_by_group(
    ids: Sequence[str],
    y_true: Any,
    ref_pred: Any,
    var_pred: Any,
    groups: Mapping[str, Any],
    confidence: float = 0.95,
) -> dict[str, dict[str, RecallComparison]]:
    """:func:`compare_recall` within each value of each group.

    Group values without defective items are left out: they have no recall to compare.
    """
    confidence = check_confidence(confidence)  # checked even when no value has a defect
    t = as_binary(y_true, "y_true")
    ref, var = as_binary(ref_pred, "ref_pred"), as_binary(var_pred, "var_pred")
    id_arr = np.asarray([str(i) for i in ids], dtype=object)
    n = check_same_length(ids=id_arr, y_true=t, ref_pred=ref, var_pred=var)
    out: dict[str, dict[str, RecallComparison]] = {}
    for group_name, key, mask in group_masks(groups, n):
        out.setdefault(group_name, {})
        if t[mask].any():
            out[group_name][key] = compare_recall(
                id_arr[mask], t[mask], ref[mask], var[mask], confidence
            )
    return out
