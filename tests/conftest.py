"""Fixtures shared by several test modules (the suite's plugin is loaded by the root conftest)."""

import pytest


@pytest.fixture
def no_teacher_env(monkeypatch):
    """No DEFECTBENCH_TEACHER* variable set: the default teacher, whatever the shell has."""
    from defectbench.zoo.profiles import TEACHER_ENV

    for env in TEACHER_ENV.values():
        # recorded as it was (set or not) and restored after the test, also when the code
        # under test sets it (the CLI exports its options for the processes it starts)
        monkeypatch.setenv(env, "")
        monkeypatch.delenv(env)
    return monkeypatch
