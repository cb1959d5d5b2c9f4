"""Latency as a distribution, with its unit and sample count (optimum-benchmark style)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
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
        if not (np.isfinite(ms).all() and (ms >= 0).all()):
            # a NaN would make every percentile NaN, and a negative time (a timer that is not
            # monotonic, a mocked clock) a negative throughput
            bad = [float(s) for s in ms / 1e3 if not (math.isfinite(s) and s >= 0)]
            raise ValueError(
                f"latency samples must be finite, non-negative seconds; got {bad[:3]} "
                f"({len(bad)} of {len(ms)}): time with a monotonic clock (time.perf_counter)"
            )
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


def alternating_blocks(
    first: Callable[[], object],
    second: Callable[[], object],
    blocks: int,
    block_seconds: float,
    warmup_calls: int = 2,
    timer: Callable[[], float] = time.perf_counter,
) -> tuple[LatencyStats, LatencyStats]:
    """Time two calls in alternating blocks of about `block_seconds` each, `blocks` per call,
    swapping which goes first every round; each block starts with untimed warm-up calls.

    On a shared machine a burst of foreign load slows whatever runs during it: two cases timed
    one after the other, minutes apart, can see their ratio flip. Alternating blocks spread
    such bursts over both. Blocks, not single calls: two ONNX Runtime sessions called in turn
    on 2 cores slowed each other in a trial here (probably the idle session's threads still
    spinning), and a few warm-up calls at the start of each block absorb that.
    """
    if blocks < 1 or not (math.isfinite(block_seconds) and block_seconds > 0):
        # NaN passed `<= 0`, and a NaN or infinite block never ends: the loop below timed
        # calls until memory ran out
        raise ValueError(f"need blocks >= 1 and block_seconds > 0, got {blocks}, {block_seconds}")
    samples: tuple[list[float], list[float]] = ([], [])
    calls = (first, second)
    for b in range(blocks):
        for which in ((0, 1) if b % 2 == 0 else (1, 0)):
            for _ in range(warmup_calls):
                calls[which]()
            end = timer() + block_seconds
            while True:  # at least one timed call per block
                start = timer()
                calls[which]()
                now = timer()
                samples[which].append(now - start)
                if now >= end:
                    break
    return LatencyStats.from_seconds(samples[0]), LatencyStats.from_seconds(samples[1])
