"""pareto_front: lengths checked both ways, missing values (None, NaN) never on the frontier."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from defectbench.report import pareto_front


def test_costs_shorter_than_scores_are_refused_too():
    # a length check one way only would pair the first scores with the costs and drop the rest
    with pytest.raises(ValueError, match="differ in length: 1 != 2"):
        pareto_front([1.0], [0.5, 0.9])


def test_a_missing_cost_or_score_is_left_off_and_dominates_nothing():
    # None (a row never measured) is neither on the frontier nor compared with the others
    assert pareto_front([None, 2.0, 1.0], [0.99, 0.5, None]) == [1]
    assert pareto_front([2.0, None], [0.5, 0.4]) == [0]
    assert pareto_front([2.0, 1.0], [0.5, None]) == [0]
    nan = math.nan
    assert pareto_front([nan, 3.0, nan], [nan, 0.2, 0.9]) == [1]


_value = st.one_of(st.integers(1, 6).map(float), st.just(math.nan), st.none())


@given(st.lists(st.tuples(_value, _value), max_size=12))
def test_the_front_is_the_non_dominated_measured_points_in_cost_order(points):
    costs = [c for c, _ in points]
    scores = [s for _, s in points]
    measured = [i for i, (c, s) in enumerate(points)
                if c is not None and s is not None and not math.isnan(c) and not math.isnan(s)]

    def dominates(j, i):
        return (costs[j] <= costs[i] and scores[j] >= scores[i]
                and (costs[j], scores[j]) != (costs[i], scores[i]))

    expected = [i for i in measured if not any(dominates(j, i) for j in measured)]
    # cheapest first; identical points (ties) both stay, in input order
    expected.sort(key=lambda i: (costs[i], i))
    assert pareto_front(costs, scores) == expected
