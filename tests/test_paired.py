"""Paired recall comparison: McNemar against statsmodels, Tango's drop interval against a
scipy-optimised score statistic and exact coverage, properties."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar
from scipy.stats import binom, multinomial, norm
from statsmodels.stats.contingency_tables import mcnemar

from defectbench.errors import ConfigError, DataError
from defectbench.metrics import (
    RecallComparison,
    clopper_pearson,
    compare_recall,
    compare_recall_by_group,
    drop_interval,
    mcnemar_exact_p,
)


@st.composite
def paired_predictions(draw, max_n=80):
    n = draw(st.integers(1, max_n))
    y = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    y[draw(st.integers(0, n - 1))] = 1  # at least one defective item
    ref = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    # Mostly agreeing variants, as compressed models are, plus fully independent ones.
    flip = draw(st.lists(st.booleans() | st.just(False), min_size=n, max_size=n))
    var = [r ^ f for r, f in zip(ref, flip, strict=True)]
    ids = [f"cell{i:03d}" for i in draw(st.permutations(list(range(n))))]
    return ids, y, ref, var


def _table(y, ref, var):
    """2x2 table of reference (rows) vs variant (cols) correctness on the defective items."""
    y, ref, var = map(np.asarray, (y, ref, var))
    d = y == 1
    r, v = ref[d] == 1, var[d] == 1
    return [[int((r & v).sum()), int((r & ~v).sum())], [int((~r & v).sum()), int((~r & ~v).sum())]]


@settings(max_examples=100, deadline=None)
@given(data=paired_predictions(), confidence=st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_comparison_matches_independent_computation(data, confidence):
    ids, y, ref, var = data
    cmp = compare_recall(ids, y, ref, var, confidence)
    table = _table(y, ref, var)
    b, c = table[0][1], table[1][0]
    assert (cmp.new_misses, cmp.new_catches) == (b, c)
    assert cmp.mcnemar_p == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-9, abs=1e-12)
    y_arr, r_arr, v_arr = map(np.asarray, (y, ref, var))
    ref_recall = r_arr[y_arr == 1].mean()
    var_recall = v_arr[y_arr == 1].mean()
    assert cmp.reference_recall == pytest.approx(ref_recall)
    assert cmp.variant_recall == pytest.approx(var_recall)
    assert cmp.drop == pytest.approx(ref_recall - var_recall)
    # Properties: the interval holds the drop, the one-sided bound is inside the two-sided one,
    # the ids are the new misses, sorted.
    assert cmp.drop_lower <= cmp.drop <= cmp.drop_upper <= cmp.drop_upper_two_sided
    assert -1.0 <= cmp.drop_lower and cmp.drop_upper_two_sided <= 1.0
    assert len(cmp.new_miss_ids) == cmp.new_misses
    assert len(cmp.new_catch_ids) == cmp.new_catches
    assert list(cmp.new_miss_ids) == sorted(cmp.new_miss_ids)
    expected_misses = sorted(
        i for i, t, r, v in zip(ids, y, ref, var, strict=True) if t == 1 and r == 1 and v == 0
    )
    assert list(cmp.new_miss_ids) == expected_misses


def _score_by_optimizer(delta, b, c, n):
    """Tango's statistic with the restricted MLE found by scipy's optimizer instead of his
    closed form: maximise the trinomial likelihood of (b, c, rest) over the new-catch
    probability p21, with the new-miss probability p21 + delta."""
    lo, hi = max(0.0, -delta), (1 - delta) / 2

    def neg_loglik(p21):
        cells = ((b, p21 + delta), (c, p21), (n - b - c, 1 - 2 * p21 - delta))
        return -sum(k * np.log(p) for k, p in cells if k)

    p21 = minimize_scalar(neg_loglik, bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-13}).x
    return (b - c - n * delta) / np.sqrt(n * (2 * p21 + delta * (1 - delta)))


@settings(max_examples=60, deadline=None)
@given(
    bc=st.tuples(st.integers(0, 40), st.integers(0, 40)),
    extra=st.integers(0, 200),
    confidence=st.floats(0.5, 0.99, exclude_min=True),
)
def test_drop_interval_inverts_tangos_score_test(bc, extra, confidence):
    b, c = bc
    n = max(b + c + extra, 1)
    lo, hi = drop_interval(b, c, n, confidence)
    assert -1 <= lo <= (b - c) / n <= hi <= 1
    z = norm.ppf((1 + confidence) / 2)
    # at each finite end the score statistic (recomputed with scipy's optimizer) is at -+z
    if hi < 1:
        assert _score_by_optimizer(hi, b, c, n) == pytest.approx(-z, abs=1e-4)
    if lo > -1:
        assert _score_by_optimizer(lo, b, c, n) == pytest.approx(z, abs=1e-4)
    # one-sided bounds use the whole alpha on their side, so they are tighter
    upper = drop_interval(b, c, n, confidence, "upper")
    lower = drop_interval(b, c, n, confidence, "lower")
    assert upper[0] == -1.0 and lower[1] == 1.0
    assert (b - c) / n <= upper[1] <= hi and lo <= lower[0] <= (b - c) / n
    # swapping misses and catches mirrors the interval
    mirrored = drop_interval(c, b, n, confidence)
    assert mirrored == pytest.approx((-hi, -lo), abs=1e-9)


def _exact_coverage(bound, n, p_miss, p_catch):
    """P(bound(b, c, n) >= p_miss - p_catch) under the trinomial, summed exactly over every
    (b, c) with non-negligible probability."""
    b, c = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    ok = b + c <= n
    pmf = np.zeros(b.shape)
    pmf[ok] = multinomial.pmf(np.stack([b[ok], c[ok], n - b[ok] - c[ok]], axis=1), n,
                              [p_miss, p_catch, 1 - p_miss - p_catch])
    total = covered = 0.0
    for i, j in zip(*np.nonzero(pmf > 1e-10), strict=True):
        total += pmf[i, j]
        if bound(int(i), int(j), n) >= p_miss - p_catch - 1e-12:
            covered += pmf[i, j]
    return covered / total


def _conditional_upper(b, c, n):
    """The bound this module used until 2026-11-23: Clopper-Pearson on b of the m = b + c
    discordant pairs, mapped by m / n."""
    m = b + c
    return 0.0 if m == 0 else (2 * clopper_pearson(b, m, 0.95, "upper").upper - 1) * m / n


@pytest.mark.parametrize(
    ("p_miss", "p_catch"),
    [(0.02, 0.0), (0.05, 0.0), (0.06, 0.01), (0.10, 0.08), (0.03, 0.03)],
)
def test_upper_bound_covers_the_true_drop_at_the_suites_sample_size(p_miss, p_catch):
    # 204 defective cells, the val fixture; drops and churn like the committed runs'
    n = 204
    tango = _exact_coverage(lambda b, c, n: drop_interval(b, c, n, 0.95, "upper")[1],
                            n, p_miss, p_catch)
    assert tango >= 0.94
    if p_catch == 0:
        # the conditional bound never exceeds the observed drop when nothing is newly caught;
        # docs/analysis.md quotes these two coverages (39% and 44%)
        expected = {0.02: 0.387, 0.05: 0.443}[p_miss]
        conditional = _exact_coverage(_conditional_upper, n, p_miss, p_catch)
        assert conditional == pytest.approx(expected, abs=5e-4)


def _tango_upper(b, c, n):
    return drop_interval(b, c, n, 0.95, "upper")[1]


def _worst_coverage_without_new_catches(n, max_drop=0.3):
    """The infimum over true drops up to `max_drop` of the one-sided 95% bound's coverage when
    nothing is newly caught. The misses b are Binomial(n, drop) and the bound U_b grows with b,
    so coverage is P(b >= k) for drops in (U_{k-1}, U_k]: a sawtooth whose low points lie just
    above each U_k, where it is P(b > k) = binom.sf(k, n, U_k)."""
    bounds = [_tango_upper(k, 0, n) for k in range(n)]
    return min((binom.sf(k, n, u), u) for k, u in enumerate(bounds) if u <= max_drop)


@pytest.mark.parametrize(("n", "expected"), [(204, 0.932), (112, 0.931), (92, 0.9305),
                                             (20, 0.921)])
def test_worst_coverage_is_what_the_docstring_says(n, expected):
    # the module docstring and README: 93.2% at val's 204 defective cells, 93.1% in its
    # cell-type groups (112 poly, 92 mono), 92.1% in a group of 20; each lowest just above the
    # bound with no discordant pair, z**2 / (n + z**2)
    worst, at = _worst_coverage_without_new_catches(n)
    assert worst == pytest.approx(expected, abs=5e-4)
    assert at == pytest.approx(_tango_upper(0, 0, n))
    # the trinomial sum agrees a hair above that drop (where the infimum is approached)
    assert _exact_coverage(_tango_upper, n, at + 1e-9, 0.0) == pytest.approx(worst, abs=1e-6)


def test_no_discordant_pair_still_leaves_a_bound():
    # n agreeing items exclude drops above about z**2 / (n + z**2), not every drop
    z = norm.ppf(0.95)
    assert drop_interval(0, 0, 204, 0.95, "upper")[1] == pytest.approx(z**2 / (204 + z**2))


def test_drop_interval_refuses_impossible_counts():
    with pytest.raises(DataError, match="n_defective=0"):
        drop_interval(0, 0, 0, 0.95)
    with pytest.raises(DataError, match="new_misses=5, new_catches=6, n_defective=10"):
        drop_interval(5, 6, 10, 0.95)
    with pytest.raises(ConfigError, match="side must be one of"):
        drop_interval(1, 0, 10, 0.95, "both")
    with pytest.raises(ConfigError, match="use a confidence above 0.5"):
        drop_interval(1, 0, 10, 0.5, "upper")
    # rates are not counts (0.5 new misses gave an interval before)
    with pytest.raises(ConfigError, match=r"integer counts, got new_misses=0.5.*not rates"):
        drop_interval(0.5, 0, 10, 0.95)
    with pytest.raises(ConfigError, match=r"integer counts, got new_misses=True"):
        drop_interval(True, False, 3, 0.95)
    assert drop_interval(np.int64(3), np.int64(1), np.int64(10), 0.95) == drop_interval(3, 1, 10,
                                                                                          0.95)


def test_group_comparison_checks_its_confidence_even_without_defects():
    with pytest.raises(ConfigError, match=r"confidence must be in \(0, 1\)"):
        compare_recall_by_group(["a", "b"], [0, 0], [0, 0], [0, 0], {"cell_type": ["m", "p"]},
                                confidence=95)


def test_hand_checked_comparison():
    # 10 defective cells: reference catches 8, variant 6; 3 new misses, 1 new catch.
    ids = [f"c{i}" for i in range(12)]
    y = [1] * 10 + [0, 0]
    ref = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0]
    var = [1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0]
    cmp = compare_recall(ids, y, ref, var, 0.95)
    assert (cmp.reference_recall, cmp.variant_recall) == (0.8, 0.6)
    assert cmp.drop == pytest.approx(0.2)
    assert cmp.new_miss_ids == ("c5", "c6", "c7")
    assert cmp.new_catch_ids == ("c8",)
    assert cmp.mcnemar_p == pytest.approx(0.625)  # 2 * P(Binom(4, .5) <= 1) = 2 * 5/16
    assert cmp.drop_upper == drop_interval(3, 1, 10, 0.95, "upper")[1]
    assert cmp.drop_interval == drop_interval(3, 1, 10, 0.95)
    assert cmp.drop_upper_bound(0.8) < cmp.drop_upper


def test_identical_predictions_have_zero_drop_and_p_one():
    y = [1, 1, 0, 1]
    cmp = compare_recall(["a", "b", "c", "d"], y, [1, 0, 1, 1], [1, 0, 1, 1])
    assert cmp.drop == 0.0 and cmp.drop_lower < 0.0 < cmp.drop_upper
    assert cmp.mcnemar_p == 1.0 == mcnemar([[2, 0], [0, 1]], exact=True).pvalue


def test_good_items_do_not_affect_the_comparison():
    ids = ["a", "b", "c", "d"]
    base = compare_recall(ids, [1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0])
    noisy = compare_recall(ids, [1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 1])
    assert base == noisy


def test_comparison_round_trips_through_json():
    cmp = compare_recall(["a", "b", "c"], [1, 1, 1], [1, 1, 0], [0, 1, 1], 0.9)
    again = RecallComparison.from_dict(json.loads(json.dumps(cmp.to_dict())))
    assert again == cmp


def test_comparison_by_group_splits_and_skips_groups_without_defects():
    ids = list("abcdef")
    y = [1, 1, 0, 1, 1, 0]
    ref = [1, 1, 0, 1, 1, 0]
    var = [0, 1, 0, 1, 1, 0]
    groups = {"cell_type": ["mono", "mono", "mono", "poly", "poly", "none"]}
    out = compare_recall_by_group(ids, y, ref, var, groups)
    assert sorted(out["cell_type"]) == ["mono", "poly"]
    assert out["cell_type"]["mono"].new_miss_ids == ("a",)
    assert out["cell_type"]["poly"].drop == 0.0


def test_mcnemar_exact_p_is_two_sided():
    assert mcnemar_exact_p(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact_p(5, 0) == mcnemar_exact_p(0, 5)


@pytest.mark.parametrize("bad", [(-1, 3), (1.5, 2), (2.0, 1.0), (True, 1)])
def test_mcnemar_exact_p_takes_counts_only(bad):
    with pytest.raises(ConfigError, match=r"mcnemar_exact_p needs counts \(integers >= 0\)"):
        mcnemar_exact_p(*bad)


@pytest.mark.parametrize("b, c, n", [(3, 1, 10), (20, 9, 204), (0, 0, 204), (4, 0, 204),
                                     (0, 999_999_999, 10**9), (12, 0, 12)])
def test_the_lower_end_mirrors_the_upper_end_even_next_to_minus_one(b, c, n):
    # Tango's statistic is antisymmetric in (misses, catches); next to -1 the lower end was
    # searched on its own and lost precision (at n = 1e9 the search failed outright)
    lower, upper = drop_interval(b, c, n, 0.95)
    mirrored_lower, mirrored_upper = drop_interval(c, b, n, 0.95)
    assert lower == -mirrored_upper and upper == -mirrored_lower
    assert lower <= (b - c) / n <= upper


@pytest.mark.parametrize(
    "args,match",
    [
        ((["a", "b"], [0, 0], [1, 0], [1, 0]), r"none is defective.*needs defective items"),
        ((["a", "a"], [1, 1], [1, 0], [1, 0]), r"unique ids"),
        ((["a", "b"], [1, 1], [1, 0], [1]), r"same length.*'var_pred': 1"),
        ((["a", "b"], [1, 1], [1, 0.5], [1, 0]), r"ref_pred must hold only 0/1.*\[0.5\]"),
    ],
    ids=["no-defects", "duplicate-ids", "length", "non-binary"],
)
def test_compare_recall_rejects_bad_input(args, match):
    with pytest.raises(DataError, match=match):
        compare_recall(*args)


def test_drop_interval_refuses_negative_counts():
    with pytest.raises(DataError, match="new_misses=-1, new_catches=0, n_defective=10"):
        drop_interval(-1, 0, 10, 0.95)
    with pytest.raises(DataError, match="new_misses=2, new_catches=-1, n_defective=10"):
        drop_interval(2, -1, 10, 0.95)


def test_json_keeps_reference_and_variant_apart_and_the_one_sided_bound():
    # reference catches 3 of 4, the variant 1: a swap on the way back would read as a gain
    cmp = compare_recall(list("abcd"), [1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0], 0.9)
    data = json.loads(json.dumps(cmp.to_dict()))
    again = RecallComparison.from_dict(data)
    assert again == cmp and again.drop == 0.5
    # what budgets read from the JSON is the one-sided bound, not the two-sided end
    assert data["drop_upper"] == drop_interval(2, 0, 4, 0.9, "upper")[1] > 0.5
    assert data["drop_upper"] < data["drop_interval"][1]
    assert cmp.drop_upper_bound(0.8) == drop_interval(2, 0, 4, 0.8, "upper")[1]


def test_group_comparison_uses_its_confidence_and_lists_groups_without_defects():
    ids = list("abcdef")
    y = [1, 1, 1, 1, 0, 0]
    ref = [1, 1, 1, 1, 0, 0]
    var = [0, 1, 1, 0, 0, 0]
    groups = {"cell_type": ["m", "m", "p", "p", "m", "p"], "line": ["x", "x", "x", "x", "y", "y"]}
    out = compare_recall_by_group(ids, y, ref, var, groups, confidence=0.8)
    mono = out["cell_type"]["m"]
    assert mono.confidence == 0.8
    assert mono.drop_upper == compare_recall(["a", "b", "e"], [1, 1, 0], [1, 1, 0], [0, 1, 0],
                                             0.8).drop_upper
    assert sorted(out["line"]) == ["x"]
    # a group whose values hold no defective item is there, empty, not missing (budgets
    # would otherwise report the group's results as not passed at all)
    none = compare_recall_by_group(ids, [0] * 6, ref, var, {"cell_type": groups["cell_type"]})
    assert none == {"cell_type": {}}
