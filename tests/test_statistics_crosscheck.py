"""Every interval, p-value and bound the gates use, against independent computations.

Grids include the edges the suite can meet: n = 1, thousands of items, no or every item
caught, no discordant pair, every pair discordant, confidences from 0.5 to 0.999. Where no
library has the statistic (Tango's bound) it is recomputed here from its definition: the score
statistic with the restricted maximum-likelihood estimate found by numerically maximising the
trinomial likelihood (not Tango's closed-form quadratic), and the bound found by scanning.
"""

import json
import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.stats import binom, norm
from sklearn.metrics import confusion_matrix, recall_score
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from defectbench.budgets import Budget, Evidence, judge
from defectbench.metrics import (
    BinaryCounts,
    OperatingPoint,
    binary_report,
    choose_operating_point,
    clopper_pearson,
    compare_recall,
    drop_interval,
    mcnemar_exact_p,
    predict,
    recall_at,
    threshold_for_recall,
)

CONFIDENCES = [0.5, 0.9, 0.95, 0.99, 0.999]
ONE_SIDED_CONFIDENCES = [c for c in CONFIDENCES if c > 0.5]  # 0.5 is refused one-sided


def _counts_grid():
    for n in (1, 2, 5, 20, 92, 204, 654, 2624):
        for k in sorted({0, 1, n // 2, n - 1, n} & set(range(n + 1))):
            yield k, n


@pytest.mark.parametrize("confidence", CONFIDENCES)
def test_clopper_pearson_matches_statsmodels_on_the_edge_grid(confidence):
    for k, n in _counts_grid():
        two = clopper_pearson(k, n, confidence)
        lo, hi = proportion_confint(k, n, alpha=1 - confidence, method="beta")
        assert (two.lower, two.upper) == pytest.approx((lo, hi), abs=1e-10), (k, n)
        if confidence == 0.5:
            continue
        # one-sided at c is the matching end of statsmodels' two-sided interval at 2c - 1
        lo1, hi1 = proportion_confint(k, n, alpha=2 * (1 - confidence), method="beta")
        upper = clopper_pearson(k, n, confidence, "upper").upper
        lower = clopper_pearson(k, n, confidence, "lower").lower
        assert (lower, upper) == pytest.approx((lo1, hi1), abs=1e-10), (k, n)
        # and by definition: the upper bound is the p at which seeing <= k has probability
        # 1 - c (the lower one, >= k), except at the edges where it is 1 or 0
        if k < n:
            assert binom.cdf(k, n, upper) == pytest.approx(1 - confidence, rel=1e-6)
        else:
            assert upper == 1.0
        if k > 0:
            assert binom.sf(k - 1, n, lower) == pytest.approx(1 - confidence, rel=1e-6)
        else:
            assert lower == 0.0


def test_exact_mcnemar_is_the_binomial_test_on_the_discordant_pairs():
    pairs = [(b, c) for b in range(13) for c in range(13)]
    pairs += [(0, 2624), (2624, 0), (1312, 1312), (1000, 1100), (40, 0), (0, 40)]
    for b, c in pairs:
        m = b + c
        # two-sided exact binomial at 1/2: twice the smaller tail, capped at 1
        brute = 1.0 if m == 0 else min(1.0, 2 * binom.cdf(min(b, c), m, 0.5))
        got = mcnemar_exact_p(b, c)
        assert got == pytest.approx(brute, rel=1e-9, abs=1e-300), (b, c)
        if m:
            table = [[0, b], [c, 0]]
            assert got == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-9), (b, c)


def _restricted_p21(b, c, n, delta):
    """The new-catch probability maximising the trinomial likelihood under drop == delta,
    found numerically: p12 = p21 + delta, and the concordant rest gets 1 - 2 p21 - delta."""
    low, high = max(0.0, -delta), (1 - delta) / 2

    def negative_log_likelihood(p21):
        total = 0.0
        for count, p in ((b, p21 + delta), (c, p21), (n - b - c, 1 - 2 * p21 - delta)):
            if count:
                if p <= 0:
                    return math.inf
                total -= count * math.log(p)
        return total

    found = minimize_scalar(
        negative_log_likelihood, bounds=(low, high), method="bounded", options={"xatol": 1e-13}
    ).x
    return min((low, high, found), key=negative_log_likelihood)


def _score(b, c, n, delta):
    variance = n * (2 * _restricted_p21(b, c, n, delta) + delta * (1 - delta))
    excess = b - c - n * delta
    if variance <= 0:
        return 0.0 if excess == 0 else math.copysign(math.inf, excess)
    return excess / math.sqrt(variance)


def _brute_upper_bound(b, c, n, confidence):
    """The largest drop the one-sided score test at ``confidence`` does not reject: scanned
    on a grid over (-1, 1) (so a set with holes would show), then refined by bisection."""
    z = norm.ppf(confidence)
    grid = np.linspace(-1, 1, 401)[1:-1]
    accepted = [d for d in grid if _score(b, c, n, d) >= -z]
    inside, outside = max(accepted), max(accepted) + (grid[1] - grid[0])
    for _ in range(45):
        middle = (inside + outside) / 2
        if _score(b, c, n, middle) >= -z:
            inside = middle
        else:
            outside = middle
    return inside


@pytest.mark.parametrize(
    "b, c, n",
    [
        (0, 0, 1),
        (0, 1, 1),
        (0, 0, 20),
        (3, 0, 20),
        (0, 3, 20),
        (10, 10, 20),
        (20, 0, 204),
        (4, 0, 204),
        (23, 17, 205),
        (0, 204, 204),
        (1, 0, 2624),
        (100, 50, 2624),
    ],
)
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.999])
def test_tangos_bound_solves_the_score_equation_found_numerically(b, c, n, confidence):
    got = drop_interval(b, c, n, confidence, "upper")[1]
    assert got == pytest.approx(_brute_upper_bound(b, c, n, confidence), abs=1e-6)


def test_the_whole_paired_range_where_no_pair_is_concordant():
    # every defective item discordant, all one way: the drop is +-1 and its bound the edge
    low, high = drop_interval(5, 0, 5, 0.95)
    assert 0 < low < 1 and high == 1.0
    assert drop_interval(0, 5, 5, 0.95) == (-1.0, pytest.approx(-low))
    assert drop_interval(5, 0, 5, 0.95, "upper")[1] == 1.0
    assert mcnemar_exact_p(5, 0) == pytest.approx(2 * 0.5**5)


@pytest.mark.parametrize("n", [1, 2, 7, 20])
def test_bounds_never_tighten_with_confidence_or_with_more_misses(n):
    levels = [0.51, 0.8, 0.9, 0.95, 0.99, 0.999]
    upper = {
        (b, c, level): drop_interval(b, c, n, level, "upper")[1]
        for b in range(n + 1)
        for c in range(n + 1 - b)
        for level in levels
    }
    for (b, c, level), bound in upper.items():
        assert bound >= (b - c) / n - 1e-12
        nxt = levels.index(level) + 1
        if nxt < len(levels):
            assert upper[b, c, levels[nxt]] >= bound - 1e-12
        if b + c < n:  # an agreeing item becomes a new miss
            assert upper[b + 1, c, level] >= bound - 1e-12
        if c:  # a new catch becomes a new miss, or an agreeing item
            assert upper[b + 1, c - 1, level] >= bound - 1e-12
            assert upper[b, c - 1, level] >= bound - 1e-12
    for k in range(n):  # one more missed defective item: the FNR bound never falls
        for level in levels:
            assert (
                clopper_pearson(k + 1, n, level, "upper").upper
                >= clopper_pearson(k, n, level, "upper").upper
            )


def test_more_misses_never_turn_a_failing_verdict_into_a_pass():
    budgets = [
        Budget("drop", "recall_drop", "max_drop", 0.03, "point"),
        Budget("drop-bound", "recall_drop", "max_drop", 0.08, "upper_bound"),
        Budget("fnr", "fnr", "ceiling", 0.2, "upper_bound"),
        Budget("recall", "recall", "floor", 0.8, "lower_bound", confidence=0.99),
    ]
    n = 60
    ids = [f"c{i}" for i in range(n)]
    reference = [1] * 54 + [0] * 6
    before = None
    for misses in range(0, 30):
        variant = [0] * misses + [1] * (n - misses)
        evidence = Evidence(
            counts=BinaryCounts(tp=n - misses, fn=misses, fp=5, tn=50),
            comparison=compare_recall(ids, [1] * n, reference, variant),
        )
        now = {b.name: judge(b, "v", evidence).passed for b in budgets}
        if before is not None:
            assert [name for name in now if now[name] and not before[name]] == [], misses
        before = now
    assert before == dict.fromkeys(before, False)  # the sweep reached failure for each


def test_a_score_exactly_at_the_threshold_is_defective_in_every_path():
    # float32 scores as the runtimes return them; the threshold chosen on dev is one of them
    # and goes through a manifest's JSON before val is judged
    y = np.array([1, 1, 1, 1, 0, 0], dtype=np.int8)
    scores = np.array([0.9, 0.7, 0.3, 0.3, 0.3, 0.1], dtype=np.float32)
    point = choose_operating_point("p", y, scores, 0.75, "dev")
    point = OperatingPoint.from_dict(json.loads(json.dumps(point.to_dict())))
    tie = np.float32(0.3)
    assert point.threshold == float(tie)  # the third-highest defective score
    flagged = [True, True, True, True, True, False]
    assert point.predict(scores).tolist() == flagged
    assert predict(scores, point.threshold).tolist() == flagged
    assert recall_at(y, scores, point.threshold) == 1.0  # both tied defective items
    report = binary_report(y, scores, point.threshold)
    assert report["counts"] == {"tp": 4, "fn": 0, "fp": 1, "tn": 1}
    assert report["confusion_matrix"] == confusion_matrix(y, flagged, labels=[0, 1]).tolist()
    assert report["recall"] == recall_score(y, flagged)
    # the next float32 below the tie is good: ">=" and not ">"
    below = np.nextafter(tie, np.float32(0))
    assert predict(np.array([below, tie]), point.threshold).tolist() == [False, True]


def test_threshold_for_recall_is_the_highest_threshold_meeting_the_target():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 30))
        y = rng.integers(0, 2, n)
        y[0] = 1
        scores = np.round(rng.random(n), int(rng.integers(1, 3))).astype(np.float32)  # ties
        target = float(rng.choice([0.05, 0.5, 0.9, 0.95, 1.0]))
        candidates = np.unique(scores).astype(np.float64)
        meeting = [t for t in candidates if (scores[y == 1] >= t).mean() >= target]
        assert threshold_for_recall(y, scores, target) == max(meeting)
