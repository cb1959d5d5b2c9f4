"""Root conftest: loads the defectbench pytest plugin for the benchmark suite and the tests."""

pytest_plugins = ["defectbench.plugin"]
