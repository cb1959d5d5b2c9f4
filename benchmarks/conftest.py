"""The suite's tests take their cases, fixtures and options from the defectbench plugin (loaded
by the root conftest.py): without it every test would error with "fixture not found"."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    manager = config.pluginmanager
    if not (manager.has_plugin("defectbench") or manager.has_plugin("defectbench.plugin")):
        raise pytest.UsageError(
            "the benchmark suite needs the defectbench plugin, which is turned off (-p "
            "no:defectbench): drop that option to run benchmarks/; it is for running the unit "
            "tests (pytest tests) without the plugin"
        )
