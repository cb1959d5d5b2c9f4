"""Clopper-Pearson against statsmodels and scipy, plus interval properties."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest
from statsmodels.stats.proportion import proportion_confint

from defectbench.errors import ConfigError
from defectbench.metrics.intervals import Proportion, clopper_pearson

CONFIDENCES = [0.8, 0.9, 0.95, 0.99]


@st.composite
def counts(draw, max_n=400):
    n = draw(st.integers(1, max_n))
    return draw(st.integers(0, n)), n


@pytest.mark.parametrize(
    "k,n", [(0, 1), (1, 1), (0, 10), (10, 10), (3, 10), (180, 205), (1, 2624)], ids=str
)
@pytest.mark.parametrize("confidence", CONFIDENCES, ids=lambda c: f"conf{c}")
def test_two_sided_matches_statsmodels_and_scipy(k, n, confidence):
    got = clopper_pearson(k, n, confidence)
    sm_lo, sm_hi = proportion_confint(k, n, alpha=1 - confidence, method="beta")
    sp = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    assert got.lower == pytest.approx(sm_lo, abs=1e-12)
    assert got.upper == pytest.approx(sm_hi, abs=1e-12)
    assert got.lower == pytest.approx(sp.low, abs=1e-9)
    assert got.upper == pytest.approx(sp.high, abs=1e-9)
    assert got.estimate == k / n
    assert (got.successes, got.trials, got.confidence, got.side) == (k, n, confidence, "two-sided")


@settings(max_examples=60, deadline=None)
@given(kn=counts(), confidence=st.sampled_from(CONFIDENCES))
def test_one_sided_bounds_match_scipy(kn, confidence):
    k, n = kn
    upper = clopper_pearson(k, n, confidence, side="upper")
    lower = clopper_pearson(k, n, confidence, side="lower")
    sp_upper = binomtest(k, n, alternative="less").proportion_ci(confidence, method="exact")
    sp_lower = binomtest(k, n, alternative="greater").proportion_ci(confidence, method="exact")
    assert upper.lower == 0.0
    assert upper.upper == pytest.approx(sp_upper.high, abs=1e-9)
    assert lower.upper == 1.0
    assert lower.lower == pytest.approx(sp_lower.low, abs=1e-9)
    # A one-sided bound at c is the matching end of the two-sided interval at 1 - 2(1 - c).
    sm_lo, sm_hi = proportion_confint(k, n, alpha=2 * (1 - confidence), method="beta")
    assert upper.upper == pytest.approx(sm_hi, abs=1e-12)
    assert lower.lower == pytest.approx(sm_lo, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    kn=counts(),
    confidence=st.floats(0.51, 0.999),
    side=st.sampled_from(["two-sided", "upper", "lower"]),
)
def test_bounds_contain_the_estimate(kn, confidence, side):
    k, n = kn
    p = clopper_pearson(k, n, confidence, side)
    assert 0.0 <= p.lower <= p.estimate <= p.upper <= 1.0
    # strictly, away from the edges: the interval is clamped around the estimate against
    # round-off, so the weak inequality alone would hold even with the tails swapped
    if 0 < k < n:
        assert p.lower < p.estimate if side != "upper" else p.lower == 0.0
        assert p.upper > p.estimate if side != "lower" else p.upper == 1.0


@settings(max_examples=60, deadline=None)
@given(kn=counts(), c1=st.floats(0.5, 0.99), c2=st.floats(0.5, 0.99))
def test_interval_widens_with_confidence(kn, c1, c2):
    lo_c, hi_c = sorted((c1, c2))
    narrow, wide = clopper_pearson(*kn, lo_c), clopper_pearson(*kn, hi_c)
    assert wide.lower <= narrow.lower + 1e-15
    assert wide.upper >= narrow.upper - 1e-15


def test_two_sided_is_strictly_inside_unit_interval_away_from_the_edges():
    p = clopper_pearson(5, 10, 0.95)
    assert 0.0 < p.lower < 0.5 < p.upper < 1.0
    # The classic textbook value for 5/10 at 95%.
    assert (round(p.lower, 4), round(p.upper, 4)) == (0.1871, 0.8129)


def test_one_sided_upper_is_tighter_than_two_sided():
    assert clopper_pearson(20, 205, 0.95, "upper").upper < clopper_pearson(20, 205, 0.95).upper


def test_zero_trials_raises_with_advice():
    with pytest.raises(ConfigError, match=r"at least one trial, got k=0, n=0.*empty group"):
        clopper_pearson(0, 0)


@pytest.mark.parametrize(
    "args,match",
    [
        ((11, 10), r"0 <= k <= n, got k=11, n=10"),
        ((-1, 10), r"0 <= k <= n"),
        ((0.5, 10), r"integer counts.*not rates"),
        # True is 1 to operator.index: a flag passed as a count is a caller's bug
        ((True, 2), r"integer counts, got k=True"),
        ((3, 10, 95), r"confidence must be in \(0, 1\).*not 95"),
        ((3, 10, 0.0), r"confidence must be in \(0, 1\)"),
        ((3, 10, 0.95, "both"), r"side must be one of 'two-sided', 'upper', 'lower', got 'both'"),
        # a one-sided bound at 0.5 or less has no margin over the estimate, refused as in
        # drop_interval rather than returned as a "bound"
        ((5, 10, 0.3, "upper"), r"one-sided bound at confidence 0.3 .*above 0.5"),
        ((5, 10, 0.5, "lower"), r"one-sided bound at confidence 0.5 .*above 0.5"),
    ],
    ids=["k>n", "k<0", "float-k", "bool-k", "percent-confidence", "zero-confidence", "bad-side",
         "upper-at-0.3", "lower-at-0.5"],
)
def test_bad_arguments_raise_config_error(args, match):
    with pytest.raises(ConfigError, match=match):
        clopper_pearson(*args)


def test_a_nan_confidence_is_not_told_to_drop_a_percentage():
    # "(write 0.95, not 95)" answers a percentage; a NaN confidence got it too
    with pytest.raises(ConfigError) as info:
        clopper_pearson(3, 10, float("nan"))
    assert "got nan" in str(info.value) and "not 95" not in str(info.value)


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        clopper_pearson(1, 0)


def test_proportion_round_trips_through_json():
    p = clopper_pearson(7, 40, 0.9, "upper")
    assert Proportion.from_dict(json.loads(json.dumps(p.to_dict()))) == p


@pytest.mark.parametrize("side", ["two-sided", "upper", "lower"])
def test_a_confidence_of_one_is_refused(side):
    # at 1.0 every interval is [0, 1]: a bound that can never fail a budget
    with pytest.raises(ConfigError, match=r"confidence must be in \(0, 1\)"):
        clopper_pearson(3, 10, 1.0, side)
