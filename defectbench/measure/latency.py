"""Latency as a distribution, with its unit and sample count (optimum-benchmark style)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latency in milliseconds over `rounds` timed calls."""

    p50: float
    p90: float
    p99: float
    mean: float
    min: float
    max: float
    rounds: int

    @classmethod
    def from_seconds(cls, samples: Sequence[float]) -> LatencyStats:
        if len(samples) == 0:
            raise ValueError("no latency samples: the benchmark ran zero rounds")
        ms = np.asarray(samples, dtype=np.float64) * 1e3
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(float(p50), float(p90), float(p99), float(ms.mean()), float(ms.min()),
                   float(ms.max()), len(ms))

    def throughput(self, batch: int) -> float:
        """Images per second at the median latency."""
        return batch / (self.p50 / 1e3)

    def to_dict(self) -> dict:
        return asdict(self)


def rounds_for(seconds_per_call: float, budget_seconds: float, lo: int = 5, hi: int = 200) -> int:
    """Enough rounds for stable percentiles within a time budget per case."""
    if seconds_per_call <= 0:
        return hi
    return int(min(hi, max(lo, round(budget_seconds / seconds_per_call, 6) // 1)))
