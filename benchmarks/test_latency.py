"""Latency, throughput and memory of each (variant, precision, device, batch).

Timings go into pytest-benchmark's JSON; speed targets are judged as ratios within one run
(see docs/results), never as absolute numbers.
"""

import pytest

from defectbench.plugin import check_timings

pytestmark = pytest.mark.perf


def test_inference(measure_latency):
    info = measure_latency()
    if info:  # empty under --benchmark-disable
        check_timings(info)
