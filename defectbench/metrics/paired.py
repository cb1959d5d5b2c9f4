"""Paired comparison of defect recall between a reference (the FP32 teacher) and a variant.

Both models see the same defective items, so the comparison uses the pairs: of the ``n``
defective items, ``b`` (new misses) were caught by the reference and missed by the variant,
``c`` (new catches) the other way round, and the rest agree. The recall drop is
``(b - c) / n``; items both models get right or wrong carry no information about the
difference.

Test: exact McNemar, i.e. two-sided binomial test of ``b`` out of ``m = b + c`` at 1/2.

Interval on the drop: conditional on the ``m`` discordant pairs, ``b ~ Binomial(m, pi)`` and
``drop = (2 b - m) / n``, so a Clopper-Pearson interval ``(pi_L, pi_U)`` on ``pi`` maps to
``((2 pi_L - 1) m / n, (2 pi_U - 1) m / n)``. We use it because it is exact (coverage at least
the nominal level for every ``m``, no normal approximation), it uses the pairing (unpaired
intervals on two recalls of ~200 items are ~+-4 points each and cannot resolve a 1-point
drop), and it stays sensible when a variant agrees with the reference on almost everything:
few discordant pairs give a narrow interval near 0 instead of a Wald interval that collapses
or leaves [-1, 1]. Its limit: it is conditional on ``m``. With ``m == 0`` the interval is
``[0, 0]``; it says the variant matches the reference, not that the reference's own recall
is well known. The absolute FNR ceiling budget covers that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import binomtest

from defectbench.errors import DataError
from defectbench.metrics.confusion import as_binary, check_same_length, group_masks
from defectbench.metrics.intervals import check_confidence, clopper_pearson


def drop_interval(
    new_misses: int, new_catches: int, n_defective: int, confidence: float, side: str = "two-sided"
) -> tuple[float, float]:
    """Exact conditional interval on the recall drop (see the module docstring)."""
    m = new_misses + new_catches
    if n_defective <= 0:
        raise DataError("a recall drop needs at least one defective item, got n_defective=0")
    if m == 0:  # no discordant pair: conditionally the drop is exactly 0
        check_confidence(confidence)
        return 0.0, 0.0
    pi = clopper_pearson(new_misses, m, confidence, side)
    return (2 * pi.lower - 1) * m / n_defective, (2 * pi.upper - 1) * m / n_defective


def mcnemar_exact_p(new_misses: int, new_catches: int) -> float:
    """Exact two-sided McNemar p-value; 1.0 when there are no discordant pairs."""
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
    def discordant(self) -> int:
        return self.new_misses + self.new_catches

    @property
    def drop_interval(self) -> tuple[float, float]:
        """Two-sided exact conditional interval at ``confidence``."""
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
