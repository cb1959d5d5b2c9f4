"""The gate statistics the README and `defectbench/metrics/paired.py` quote, as a committed run.

    python docs/results/gate_statistics.py > docs/results/gate-statistics.txt

1. Coverage of the one-sided 95% Tango bound on the recall drop: its worst case over true
   drops up to 0.3 with no new catches (exact binomial), at val's 204 defective cells, its
   cell-type groups (112 poly, 92 mono) and a group of 20; and the exact trinomial coverage
   at the drops and churn of the committed runs.
2. The conditional bound used until 2026-11-23, at the same drops (39% and 44%).
3. How often a variant whose scores are noise passes the repository's recall budgets (the
   reason for the specificity floor), and how often the floor stops it: 1,000 seeded draws
   with the fixture's counts.

The computations are the tests' own (`tests/test_paired.py`, `tests/test_budgets.py`), which
check the quoted values; this script prints what they compute with more draws.
"""

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from test_budgets import (  # noqa: E402
    REPO_BUDGETS,
    VARIANT,
    _uninformative_variant,
    _val_like_the_fixture,
)
from test_paired import (  # noqa: E402
    _conditional_upper,
    _exact_coverage,
    _tango_upper,
    _worst_coverage_without_new_catches,
)

from defectbench.budgets import judge_all, load_budgets  # noqa: E402

NOISE_DRAWS = 1000


def tango_coverage() -> None:
    print("one-sided 95% Tango bound on the recall drop, exact coverage")
    print("worst case over true drops <= 0.3, no new catches:")
    for n, what in ((204, "val"), (112, "val poly"), (92, "val mono"), (20, "a group of 20")):
        worst, at = _worst_coverage_without_new_catches(n)
        print(f"  n={n:3d} ({what}): {worst:.4f} at a true drop just above {at:.4f}")
    print("at the drops and churn of the committed runs (n=204):")
    print("  p_miss  p_catch  Tango   conditional (used until 2026-11-23)")
    for p_miss, p_catch in ((0.02, 0.0), (0.05, 0.0), (0.06, 0.01), (0.10, 0.08), (0.03, 0.03)):
        tango = _exact_coverage(_tango_upper, 204, p_miss, p_catch)
        conditional = _exact_coverage(_conditional_upper, 204, p_miss, p_catch)
        print(f"  {p_miss:.2f}    {p_catch:.2f}     {tango:.4f}  {conditional:.4f}")


def noise_variants() -> None:
    rng = np.random.default_rng(0)
    val_labels, val_types, reference = _val_like_the_fixture(rng)
    budgets = load_budgets(REPO_BUDGETS)
    recall_passed = floor_failed = 0
    for _ in range(NOISE_DRAWS):
        verdicts = judge_all(
            budgets, VARIANT, _uninformative_variant(rng, reference, val_labels, val_types))
        floor = [v for v in verdicts if v.budget == "specificity-above-chance"]
        floor_failed += not floor[0].passed
        recall_passed += all(v.passed for v in verdicts if v.budget != "specificity-above-chance")
    print(f"\nnoise variants ({NOISE_DRAWS} draws, thresholds chosen on dev for 90% recall), "
          f"budgets of {REPO_BUDGETS.relative_to(REPO)}:")
    print(f"  passed every budget except the specificity floor: {recall_passed} "
          f"({recall_passed / NOISE_DRAWS:.1%})")
    print(f"  failed the specificity floor: {floor_failed} ({floor_failed / NOISE_DRAWS:.1%})")


if __name__ == "__main__":
    tango_coverage()
    noise_variants()
