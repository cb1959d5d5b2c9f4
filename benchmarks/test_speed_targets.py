"""Speed targets: latency ratios of two cases benchmarked in this same run, judged on a
re-timing of both in alternating blocks (see `judge_speed_target`).

Targets are reviewed data in fixtures/speed_targets*.toml.

Runs after test_latency.py (pytest orders files by name); a target whose two cases were not
benchmarked in this run (deselected by --variants, --batch-sizes, --benchmark-disable...) is
skipped with the missing case ids.
"""

import pytest

from defectbench.plugin import latency_seconds, not_measured_reason
from defectbench.suite import judge_speed_target

pytestmark = pytest.mark.perf


def test_speed_target(defectbench_suite, speed_target, request):
    seconds = latency_seconds(request.config)
    result = judge_speed_target(defectbench_suite, speed_target, seconds)
    defectbench_suite.speed_results.append(result)
    if not result["measured"]:
        pytest.skip(not_measured_reason(request.config, result["missing"]))
    assert result["passed"], result["message"]
