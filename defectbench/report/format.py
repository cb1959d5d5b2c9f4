"""How the report prints numbers, shared by the table and the findings."""

from __future__ import annotations

import math

DASH = "-"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """"1 artifact", "2 artifacts": a count with its noun in the right number."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def fixed(value: float | None, digits: int = 3, signed: bool = False) -> str:
    """Recall, drops, FNR, specificity: fixed decimals, so columns line up."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def significant(value: float | None) -> str:
    """Speeds and sizes: three significant figures are more than their run-to-run noise."""
    if value is None:
        return DASH
    if abs(value) < 100:  # ".1f" would print 1.18 and 1.21 ms alike, and 0.1 for GPU latencies
        # "#": 6.00 stays 6.00 beside 8.71, not a bare 6 that reads as less precise
        return f"{value:#.3g}".rstrip(".")
    return f"{value:,.0f}"
