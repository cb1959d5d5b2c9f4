"""The suite's tests take their cases, fixtures and options from the defectbench plugin (loaded
by the root conftest.py): without it every test would error with "fixture not found"."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    manager = config.pluginmanager
    if not (manager.has_plugin("defectbench") or manager.has_plugin("defectbench.plugin")):
        raise pytest.UsageError(
            "the benchmark suite needs the defectbench plugin, which is not loaded: the "
            "repository's root conftest.py loads it unless -p no:defectbench turns it off or "
            "--noconftest / --confcutdir keep that conftest out; drop those options to run "
            "benchmarks/ (-p no:defectbench is for running the unit tests without the plugin)"
        )
