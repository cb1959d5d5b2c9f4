"""Paired recall comparison: McNemar against statsmodels, the exact drop interval, properties."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.contingency_tables import mcnemar

from defectbench.errors import DataError
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


@settings(max_examples=60, deadline=None)
@given(
    bc=st.tuples(st.integers(0, 40), st.integers(0, 40)),
    extra=st.integers(0, 200),
    confidence=st.floats(0.5, 0.99),
)
def test_drop_interval_is_the_mapped_clopper_pearson_interval(bc, extra, confidence):
    b, c = bc
    m, n = b + c, b + c + extra
    if n == 0:
        n = 1
    lo, hi = drop_interval(b, c, n, confidence)
    if m == 0:
        assert (lo, hi) == (0.0, 0.0)
        return
    pi = clopper_pearson(b, m, confidence)
    assert lo == pytest.approx((2 * pi.lower - 1) * m / n)
    assert hi == pytest.approx((2 * pi.upper - 1) * m / n)
    assert lo <= (b - c) / n <= hi
    # Conditional on m discordant pairs the drop can never exceed m / n in either direction.
    assert -m / n <= lo and hi <= m / n


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
    pi_upper = clopper_pearson(3, 4, 0.95, "upper").upper
    assert cmp.drop_upper == pytest.approx((2 * pi_upper - 1) * 4 / 10)
    assert cmp.drop_upper_bound(0.8) < cmp.drop_upper


def test_identical_predictions_have_zero_drop_and_p_one():
    y = [1, 1, 0, 1]
    cmp = compare_recall(["a", "b", "c", "d"], y, [1, 0, 1, 1], [1, 0, 1, 1])
    assert cmp.drop == 0.0 and cmp.drop_interval == (0.0, 0.0) and cmp.drop_upper == 0.0
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
