"""Latency survey of teacher/student architectures the field names, with UNTRAINED weights.

Latency-only: no quality claims (no ImageNet weights for these install offline). Behind the
`slow` marker: `pytest benchmarks -m slow --benchmark-json survey.json`.
"""

import pytest

from defectbench.plugin import check_timings

pytestmark = [pytest.mark.slow, pytest.mark.perf]


def test_architecture_latency(measure_survey_latency):
    info = measure_survey_latency()
    if info:  # empty under --benchmark-disable
        assert info["latency_only"] and info["quality"] is None
        check_timings(info)
