"""Quality gates: each (variant, precision, device) scored on the fixed `val` fixture.

The budgets come from `fixtures/budgets.toml`; a failure names variant, metric, value, bound
and budget. Results (with the ids of newly missed defects) go into the benchmark JSON.
"""

import pytest

pytestmark = pytest.mark.quality


def test_recall_budgets(quality):
    failed = [v for v in quality["verdicts"] if not v["passed"]]
    assert quality["verdicts"], "no budget applies to this variant; check fixtures/budgets.toml"
    if failed:
        # the verdicts alone: an assertion's introspection would append the dicts' repr, and
        # the short summary line would show that instead of the first verdict
        pytest.fail("\n".join(v["message"] for v in failed), pytrace=False)
