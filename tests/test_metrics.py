"""Confusion metrics against scikit-learn, binary_report, operating points, multi-label recall."""

import json
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)

from defectbench.errors import ConfigError, DataError
from defectbench.metrics import (
    BinaryCounts,
    OperatingPoint,
    binary_counts,
    binary_report,
    choose_operating_point,
    clopper_pearson,
    per_class_recall,
    recall_at,
    threshold_for_recall,
    worst_class_recall,
)

labels_and_preds = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
    )
)
# Few distinct values on purpose: ties between scores are where thresholds go wrong.
labels_and_scores = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5, 0.7, 0.9, 1.0]), min_size=n, max_size=n)
        | st.lists(st.floats(-5, 5, allow_nan=False), min_size=n, max_size=n),
    )
)


# ---------------------------------------------------------------- confusion vs scikit-learn


@settings(max_examples=80, deadline=None)
@given(data=labels_and_preds)
def test_confusion_metrics_match_sklearn(data):
    y, p = data
    c = binary_counts(y, p)
    assert c.confusion_matrix() == confusion_matrix(y, p, labels=[0, 1]).tolist()
    assert c.recall == pytest.approx(recall_score(y, p, zero_division=0))
    assert c.precision == pytest.approx(precision_score(y, p, zero_division=0))
    assert c.f1 == pytest.approx(f1_score(y, p, zero_division=0))
    assert c.accuracy == pytest.approx(accuracy_score(y, p))
    assert c.specificity == pytest.approx(recall_score(y, p, pos_label=0, zero_division=0))
    assert c.fnr == pytest.approx(1 - c.recall if c.n_defective else 0.0)
    assert (c.n_defective, c.n_good, c.n) == (sum(y), len(y) - sum(y), len(y))


@pytest.mark.parametrize(
    "y,p",
    [([0, 0, 0], [0, 0, 0]), ([0, 0, 0], [1, 0, 1]), ([1, 1], [0, 0]), ([1, 1], [1, 1])],
    ids=["no-defects-no-flags", "no-defects-flags", "all-missed", "all-caught"],
)
def test_zero_division_conventions_match_sklearn_zero_division_0(y, p):
    c = binary_counts(y, p)
    for ours, theirs in [
        (c.recall, recall_score(y, p, zero_division=0)),
        (c.precision, precision_score(y, p, zero_division=0)),
        (c.f1, f1_score(y, p, zero_division=0)),
        (c.specificity, recall_score(y, p, pos_label=0, zero_division=0)),
    ]:
        assert ours == theirs


def test_counts_on_a_hand_checked_example():
    c = binary_counts([1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 1, 0, 0])
    assert c == BinaryCounts(tp=3, fn=1, fp=1, tn=2)
    assert (c.recall, c.fnr, c.precision) == (0.75, 0.25, 0.75)
    assert c.specificity == pytest.approx(2 / 3)


@settings(max_examples=40, deadline=None)
@given(kn=st.integers(1, 200).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_fnr_upper_bound_is_one_minus_recall_lower_bound(kn):
    tp, n = kn
    c = BinaryCounts(tp=tp, fn=n - tp, fp=3, tn=7)
    assert c.fnr_upper_bound(0.95) == pytest.approx(1 - c.recall_lower_bound(0.95), abs=1e-12)
    assert c.fnr_upper_bound(0.95) == clopper_pearson(n - tp, n, 0.95, "upper").upper
    assert c.recall_interval(0.9) == clopper_pearson(tp, n, 0.9)


def test_specificity_bounds_match_statsmodels_clopper_pearson():
    from statsmodels.stats.proportion import proportion_confint

    c = BinaryCounts(tp=170, fn=34, fp=118, tn=332)  # 450 good cells, specificity 0.738
    lower, upper = proportion_confint(332, 450, alpha=0.05, method="beta")
    interval = c.specificity_interval(0.95)
    assert (interval.lower, interval.upper) == pytest.approx((lower, upper), abs=1e-12)
    one_sided, _ = proportion_confint(332, 450, alpha=0.10, method="beta")
    assert c.specificity_lower_bound(0.95) == pytest.approx(one_sided, abs=1e-12)
    assert c.specificity_lower_bound(0.95) < c.specificity


def test_specificity_interval_without_good_items_raises():
    with pytest.raises(DataError, match=r"no good items.*evaluate on a set"):
        BinaryCounts(tp=3, fn=1, fp=0, tn=0).specificity_interval()


def test_intervals_without_defective_items_raise():
    with pytest.raises(DataError, match=r"no defective items.*evaluate on a set"):
        BinaryCounts(tp=0, fn=0, fp=2, tn=5).recall_interval()
    with pytest.raises(DataError, match=r"no defective items"):
        BinaryCounts(tp=0, fn=0, fp=2, tn=5).fnr_upper_bound()


@pytest.mark.parametrize(
    "y,p,match",
    [
        ([0, 1, 2], [0, 1, 1], r"y_true must hold only 0/1 \(1 = defective\), found \[2\]"),
        ([0, 1], [0, 1, 1], r"same length.*'y_true': 2, 'y_pred': 3"),
        ([[0, 1]], [[0, 1]], r"y_true must be 1-D, got shape \(1, 2\)"),
    ],
    ids=["label-2", "length-mismatch", "2d"],
)
def test_binary_counts_rejects_bad_input(y, p, match):
    with pytest.raises(DataError, match=match):
        binary_counts(y, p)


def test_binary_counts_rejects_negative_counts():
    with pytest.raises(DataError, match=r"BinaryCounts.fn must be a non-negative integer, got -1"):
        BinaryCounts(tp=1, fn=-1, fp=0, tn=0)


# ---------------------------------------------------------------- binary_report


def _report_fixture():
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.4, 0.7, 0.6, 0.1, 0.55, 0.2, 0.95, 0.3, 0.2, 0.5])
    cell = np.array(["mono"] * 8 + ["poly"] * 4)
    return y, s, cell


def test_binary_report_contents_and_groups():
    y, s, cell = _report_fixture()
    r = binary_report(y, s, 0.5, groups={"cell_type": cell}, confidence=0.9)
    pred = (s >= 0.5).astype(int)
    assert r["counts"] == binary_counts(y, pred).to_dict()
    assert r["confusion_matrix"] == confusion_matrix(y, pred, labels=[0, 1]).tolist()
    assert r["recall"] == recall_score(y, pred) == 5 / 7
    assert r["precision"] == pytest.approx(precision_score(y, pred))
    assert r["threshold"] == 0.5 and r["confidence"] == 0.9
    assert r["recall_interval"] == clopper_pearson(5, 7, 0.9).to_dict()
    assert r["fnr_upper_bound"]["upper"] == clopper_pearson(2, 7, 0.9, "upper").upper
    groups = r["groups"]["cell_type"]
    assert sorted(groups) == ["mono", "poly"]
    assert groups["mono"]["n_defective"] == 5 and groups["mono"]["recall"] == 4 / 5
    assert groups["poly"]["n_defective"] == 2 and groups["poly"]["recall"] == 1 / 2
    assert groups["poly"]["recall_interval"] == clopper_pearson(1, 2, 0.9).to_dict()
    json.dumps(r)  # JSON-ready, numpy types included


def test_binary_report_group_without_defects_has_no_interval():
    r = binary_report([1, 0, 0], [0.9, 0.1, 0.8], 0.5, groups={"g": ["a", "b", "b"]})
    assert r["groups"]["g"]["b"]["n_defective"] == 0
    assert r["groups"]["g"]["b"]["recall_interval"] is None
    assert r["groups"]["g"]["a"]["recall"] == 1.0


def test_binary_report_decision_rule_is_greater_or_equal():
    r = binary_report([1, 0], [0.5, 0.4999], 0.5)
    assert r["counts"] == {"tp": 1, "fn": 0, "fp": 0, "tn": 1}


def test_binary_report_refuses_nan_scores():
    with pytest.raises(DataError, match=r"1 NaN values \(first at index 1\).*must not be counted"):
        binary_report([1, 1, 0], [0.9, float("nan"), 0.1], 0.5)


@pytest.mark.parametrize("bad", [math.inf, -math.inf])
def test_infinite_scores_are_refused_not_chosen_as_a_threshold(bad):
    # -inf chosen as the threshold would flag every image; inf none of them
    with pytest.raises(DataError, match=r"1 infinite values \(first at index 0\)"):
        threshold_for_recall([1, 1, 0], [bad, 0.2, 0.1], 1.0)
    with pytest.raises(DataError, match=r"1 infinite values \(first at index 2\)"):
        binary_report([1, 1, 0], [0.9, 0.8, bad], 0.5)


def test_binary_report_refuses_misshapen_groups():
    with pytest.raises(DataError, match=r"group 'cell_type' has shape \(2,\), expected \(3,\)"):
        binary_report([1, 1, 0], [0.9, 0.2, 0.1], 0.5, groups={"cell_type": ["a", "b"]})


# ---------------------------------------------------------------- operating point


@settings(max_examples=80, deadline=None)
@given(data=labels_and_scores, t1=st.floats(-6, 6), t2=st.floats(-6, 6))
def test_recall_is_non_increasing_in_the_threshold(data, t1, t2):
    y, s = data
    lo, hi = sorted((t1, t2))
    assert recall_at(y, s, hi) <= recall_at(y, s, lo)


@settings(max_examples=150, deadline=None)
@given(data=labels_and_scores, target=st.floats(0.01, 1.0) | st.sampled_from([0.9, 0.95, 1.0]))
def test_threshold_for_recall_hits_target_and_is_maximal(data, target):
    y, s = data
    assume(sum(y) > 0)
    t = threshold_for_recall(y, s, target)
    assert recall_at(y, s, t) >= target
    higher = sorted({v for v in s if v > t})
    if higher:  # the next distinct score up must miss the target
        assert recall_at(y, s, higher[0]) < target
    # The threshold is one of the defective items' scores.
    assert t in {v for v, label in zip(s, y, strict=True) if label == 1}


def test_threshold_for_recall_float_rounding_case():
    # 0.95 * 20 is 19.000000000000004 in floating point; the answer must still be the 19th score.
    y = [1] * 20
    s = [i / 20 for i in range(20, 0, -1)]
    t = threshold_for_recall(y, s, 0.95)
    assert t == s[18]
    assert recall_at(y, s, t) == 0.95


@pytest.mark.parametrize(
    "target,n,k",
    [
        # 0.28 * 25 is 7.000000000000001: ceil alone asks for 8 catches where 7 reach 0.28
        (0.28, 25, 7),
        (0.07, 100, 7),
        # one ulp above 1/3: 3 * target rounds to 1.0, but 1 catch of 3 misses the target
        (math.nextafter(1 / 3, 1), 3, 2),
        (math.nextafter(3 / 7, 1), 7, 4),
    ],
    ids=["0.28-of-25", "0.07-of-100", "ulp-above-1/3", "ulp-above-3/7"],
)
def test_threshold_for_recall_where_target_times_n_rounds_the_wrong_way(target, n, k):
    # the case above does not round (0.95 * 20 == 19.0); these do, each way
    y = [1] * n
    s = [(n - i) / n for i in range(n)]  # distinct, descending: the k-th highest is s[k - 1]
    t = threshold_for_recall(y, s, target)
    assert t == s[k - 1]
    assert recall_at(y, s, t) >= target
    assert recall_at(y, s, s[k - 2]) < target  # the next score up misses it: maximal


def test_threshold_for_recall_maximises_specificity_on_an_example():
    y = [1, 1, 1, 1, 0, 0, 0]
    s = [0.9, 0.8, 0.6, 0.3, 0.7, 0.5, 0.1]
    assert threshold_for_recall(y, s, 0.75) == 0.6  # 3 of 4 caught, only the 0.7 good cell flagged
    assert threshold_for_recall(y, s, 1.0) == 0.3


def test_threshold_for_recall_needs_defective_items():
    with pytest.raises(DataError, match=r"none is defective; choose the threshold on a split"):
        threshold_for_recall([0, 0], [0.1, 0.2], 0.9)


@pytest.mark.parametrize(
    "target", [0.0, 1.5, 95, True], ids=["zero", "above-one", "percent", "bool"]
)
def test_threshold_for_recall_rejects_bad_targets(target):
    with pytest.raises(ConfigError, match=r"target_recall must be in \(0, 1\]"):
        threshold_for_recall([1, 0], [0.5, 0.1], target)


def test_operating_point_round_trip_and_predict():
    op = choose_operating_point("recall95", [1, 1, 0, 1], [0.9, 0.4, 0.3, 0.8], 0.95, "val")
    assert op == OperatingPoint("recall95", 0.4, 0.95, "val")
    assert OperatingPoint.from_dict(json.loads(json.dumps(op.to_dict()))) == op
    assert op.predict([0.4, 0.39]).tolist() == [True, False]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"name": ""}, r"name must be a non-empty string"),
        ({"threshold": math.nan}, r"'p': threshold must be a finite number, got nan"),
        ({"threshold": math.inf}, r"'p': threshold must be a finite number, got inf"),
        ({"threshold": -math.inf}, r"'p': threshold must be a finite number, got -inf"),
        ({"target_recall": 1.2}, r"'p': target_recall must be in \(0, 1\]"),
        ({"chosen_on": ""}, r"chosen_on must name the split"),
    ],
    ids=["name", "nan-threshold", "inf-threshold", "minus-inf-threshold", "target", "chosen_on"],
)
def test_operating_point_validates(kwargs, match):
    base = {"name": "p", "threshold": 0.5, "target_recall": None, "chosen_on": "val"}
    with pytest.raises(ConfigError, match=match):
        OperatingPoint(**{**base, **kwargs})


# ---------------------------------------------------------------- multi-label


def test_per_class_recall_and_worst_class():
    y = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 0], [1, 1, 0]])
    p = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 1], [0, 1, 0]])
    r = per_class_recall(y, p, ["crack", "finger", "dark"], confidence=0.9)
    assert [c.recall for c in r.classes] == [
        pytest.approx(recall_score(y[:, j], p[:, j])) for j in range(3)
    ]
    assert r["crack"].interval == clopper_pearson(2, 3, 0.9)
    assert r.worst.name == "dark" and r.worst_class_recall == 0.0
    assert worst_class_recall(y, p, ["crack", "finger", "dark"]).name == "dark"
    json.dumps(r.to_dict())


def test_worst_class_skips_classes_without_positives_and_says_so():
    y = np.array([[1, 0], [1, 0]])
    p = np.array([[1, 0], [0, 0]])
    r = per_class_recall(y, p, ["crack", "finger"])
    assert r.unjudged == ("finger",)
    assert r["finger"].interval is None
    assert r.worst.name == "crack"
    assert r.to_dict()["unjudged"] == ["finger"]


def test_worst_class_tie_breaks_on_the_lower_bound():
    # Both 2/4 and 1/2 are recall 0.5; the class with fewer positives has the lower bound
    # and is listed second, so class order alone would pick the other one.
    y = np.array([[1, 1], [1, 1], [1, 0], [1, 0]])
    p = np.array([[1, 1], [1, 0], [0, 0], [0, 0]])
    assert per_class_recall(y, p, ["many", "few"]).worst.name == "few"


def test_multilabel_input_errors():
    with pytest.raises(DataError, match=r"must be an \(N, C\) 0/1 array, got shape \(3,\)"):
        per_class_recall([1, 0, 1], [1, 0, 1], ["a"])
    with pytest.raises(DataError, match=r"1 class names for 2 label columns"):
        per_class_recall([[1, 0]], [[1, 0]], ["a"])
    with pytest.raises(DataError, match=r"worst-class recall needs positives"):
        _ = per_class_recall([[0, 0]], [[1, 0]], ["a", "b"]).worst


def test_a_class_name_given_twice_is_refused():
    # r["crack"] would read the first such column only, and the worst class (here the second
    # column, recall 0) would be reported under a name that also means a perfect class
    y = np.array([[1, 1], [1, 1]])
    p = np.array([[1, 0], [1, 0]])
    with pytest.raises(DataError, match=r"class names must be unique, got \['crack'\] more than"):
        per_class_recall(y, p, ["crack", "crack"])
    assert per_class_recall(y, p, ["crack", "finger"]).worst.name == "finger"


def test_a_nan_threshold_is_refused_not_read_as_flag_nothing():
    # NaN compares false with every score: recall 0, and NaN written into the JSON
    from defectbench.metrics.confusion import predict

    with pytest.raises(DataError, match="threshold must be a finite number, got nan"):
        binary_report([1, 1, 0], [0.9, 0.8, 0.1], float("nan"))
    assert predict([0.1, 0.9], np.float32(0.5)).tolist() == [False, True]


@pytest.mark.parametrize("threshold", [math.inf, -math.inf], ids=["inf", "minus-inf"])
def test_an_infinite_threshold_is_refused_not_read_as_flag_none_or_all(threshold):
    # scores are finite (as_scores), so +inf flags nothing and -inf every item: -inf would
    # pass every recall budget at recall 1
    from defectbench.metrics.confusion import predict

    with pytest.raises(DataError, match="threshold must be a finite number, got -?inf"):
        predict([0.1, 0.9], threshold)
    with pytest.raises(DataError, match="threshold must be a finite number"):
        binary_report([1, 1, 0], [0.9, 0.8, 0.1], threshold)
    with pytest.raises(DataError, match="threshold must be a finite number"):
        recall_at([1, 1, 0], [0.9, 0.8, 0.1], threshold)


def test_recall_at_refuses_a_nan_threshold_and_takes_numpy_targets():
    with pytest.raises(DataError, match="threshold must be a finite number, got nan"):
        recall_at([1, 1, 0], [0.9, 0.8, 0.1], float("nan"))  # read as recall 0.0 before
    assert recall_at([1, 1, 0], [0.9, 0.8, 0.1], np.float32(0.85)) == 0.5
    # a target or threshold read from an array is a number like any other
    assert threshold_for_recall([1, 1, 0], [0.9, 0.8, 0.1], np.float32(0.5)) == pytest.approx(0.9)
    point = OperatingPoint("p", np.float32(0.25), np.float32(0.9), "dev")
    assert point.threshold == 0.25 and type(point.target_recall) is float
    json.dumps(point.to_dict())  # what manifests and results hold


def test_binary_report_refuses_a_confidence_its_fnr_bound_cannot_use():
    with pytest.raises(ConfigError, match=r"also sets its one-sided FNR upper bound.*above 0.5"):
        binary_report([1, 0], [0.9, 0.1], 0.5, confidence=0.5)


def test_a_numpy_confidence_is_a_number():
    from defectbench.metrics.intervals import check_confidence

    assert check_confidence(np.float64(0.95)) == 0.95
    assert abs(check_confidence(np.float32(0.95)) - 0.95) < 1e-7


# ---------------------------------------------------------------- gaps found by mutation testing


def test_binary_counts_refuse_bools_and_round_trip_without_swapping_fn_and_fp():
    # True would be read as a count of 1 (a mask's value passed where its sum belongs)
    with pytest.raises(DataError,
                       match=r"BinaryCounts.tp must be a non-negative integer, got True"):
        BinaryCounts(tp=True, fn=0, fp=0, tn=0)
    # budgets rebuild the counts from the JSON: a miss (fn) must not come back as a false alarm
    counts = BinaryCounts(tp=5, fn=1, fp=3, tn=7)
    again = BinaryCounts.from_dict(json.loads(json.dumps(counts.to_dict())))
    assert again == counts and again.fnr == pytest.approx(1 / 6)


def test_binary_report_refuses_an_empty_set():
    # an empty split would otherwise report n = 0 with every rate 0 and no interval
    with pytest.raises(DataError, match="binary_report got no items"):
        binary_report([], [], 0.5)


def test_recall_without_defective_items_is_zero_as_in_sklearn():
    # zero_division=0 throughout: an unjudged class or split must not read as recall 1
    assert recall_at([0, 0], [0.9, 0.1], 0.5) == 0.0 == recall_score([0, 0], [1, 0],
                                                                     zero_division=0)
    r = per_class_recall([[1, 0], [0, 0]], [[1, 1], [0, 1]], ["crack", "finger"])
    assert r["finger"].recall == 0.0 == recall_score([0, 0], [1, 1], zero_division=0)


def test_threshold_choice_and_recall_refuse_mismatched_lengths():
    # without the check numpy's boolean indexing raised a bare IndexError
    with pytest.raises(DataError, match=r"same length.*'y_true': 3, 'scores': 2"):
        threshold_for_recall([1, 1, 0], [0.9, 0.8], 0.9)
    with pytest.raises(DataError, match=r"same length.*'y_true': 3, 'scores': 2"):
        recall_at([1, 1, 0], [0.9, 0.8], 0.5)


def test_multilabel_refuses_mismatched_rows_and_labels_other_than_0_1():
    # one row of predictions would broadcast over every item instead of raising
    with pytest.raises(DataError, match=r"y_true has shape \(2, 2\) but y_pred has shape \(1, 2\)"):
        per_class_recall([[1, 0], [1, 1]], [[1, 1]], ["crack", "finger"])
    # a 2 would be read as a positive label
    with pytest.raises(DataError, match=r"y_true must hold only 0/1"):
        per_class_recall([[2, 0], [1, 1]], [[1, 1], [1, 1]], ["crack", "finger"])
