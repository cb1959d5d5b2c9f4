"""Pareto frontier of the speed / recall trade-off: maximise recall, minimise a cost."""

from __future__ import annotations

import math
from collections.abc import Sequence


def pareto_front(costs: Sequence[float], scores: Sequence[float]) -> list[int]:
    """Indices of the points no other point dominates, cheapest first.

    Point ``j`` dominates ``i`` when it costs no more, scores no less, and is strictly better in
    one of the two. Identical points do not dominate each other, so both stay on the frontier.
    Points with a NaN or None cost or score are never on it.
    """
    if len(costs) != len(scores):
        raise ValueError(f"costs and scores differ in length: {len(costs)} != {len(scores)}")
    valid = [
        i for i in range(len(costs))
        if costs[i] is not None and scores[i] is not None
        and not math.isnan(costs[i]) and not math.isnan(scores[i])
    ]

    def dominated(i: int) -> bool:
        return any(
            costs[j] <= costs[i] and scores[j] >= scores[i]
            and (costs[j] < costs[i] or scores[j] > scores[i])
            for j in valid
        )

    # Quadratic, but a report has tens of points and this reads as the definition.
    front = [i for i in valid if not dominated(i)]
    return sorted(front, key=lambda i: (costs[i], -scores[i], i))
