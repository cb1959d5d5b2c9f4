"""The parts of the CUDA paths that are plain logic, checked on any host: which measurement a
device name selects, what a CUDA measurement says without CUDA, what `tox -e gpu` passes on."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from defectbench.errors import ConfigError, UnknownNameError
from defectbench.measure import memory
from defectbench.measure.memory import MemoryMeasurement
from defectbench.runtime import precision

TOX_INI = Path(__file__).resolve().parent.parent / "tox.ini"


@pytest.mark.parametrize("device", ["cuda", "gpu", "cuda:0", " CUDA "])
def test_every_name_of_cuda_measures_cuda_memory(monkeypatch, device):
    # compared as a string, 'gpu' and 'cuda:0' went to the CPU's RSS high-water mark, which
    # says nothing of what a CUDA call allocates, and was labelled cpu_rss_high_water
    calls = []

    def fake_cuda_peak(fn):
        fn()
        return MemoryMeasurement("cuda_peak_allocated", 1.0, 0.5)

    monkeypatch.setattr(memory, "measure_cuda_peak", fake_cuda_peak)
    monkeypatch.setattr(memory, "measure_cpu_peak", lambda fn: pytest.fail("measured on CPU"))
    measured = memory.measure_peak(lambda: calls.append(1), device)
    assert measured.kind == "cuda_peak_allocated" and calls == [1]


def test_an_unknown_device_is_refused_not_measured_on_cpu(monkeypatch):
    monkeypatch.setattr(memory, "measure_cpu_peak", lambda fn: pytest.fail("measured on CPU"))
    with pytest.raises(UnknownNameError, match="unknown device 'tpu'; valid choices: cpu, cuda"):
        memory.measure_peak(lambda: None, "tpu")


@pytest.mark.parametrize(
    "measure",
    [lambda: memory.measure_cuda_peak(lambda: None), memory.cuda_allocated_mb],
    ids=["measure_cuda_peak", "cuda_allocated_mb"],
)
def test_cuda_memory_without_cuda_names_the_fix(monkeypatch, measure):
    # torch's own error here ("Found no NVIDIA driver", "Torch not compiled with CUDA
    # enabled") named neither what needed CUDA nor where to run it
    monkeypatch.setattr(precision, "cuda_available", lambda: False)
    needs = r"CUDA memory measurement needs a CUDA device.*tox -e gpu"
    with pytest.raises(ConfigError, match=needs):
        measure()


def _tox_env(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(TOX_INI)
    return parser[f"testenv:{name}"]


def _names(value: str) -> set[str]:
    return {n.strip() for line in value.splitlines() for n in line.split(",") if n.strip()}


@pytest.mark.parametrize("env", ["bench", "gpu"])
def test_tox_benchmark_environments_find_the_zoo_the_shell_finds(env):
    # the default zoo is $XDG_CACHE_HOME/defectbench/zoo (zoo.store.default_zoo_root); tox
    # passes neither variable on by default, so `tox -e gpu` looked in ~/.cache and built,
    # training every variant, a second zoo beside the one `pytest benchmarks` had used
    section = _tox_env(env)
    assert "pytest benchmarks" in section["commands"]
    assert {"DEFECTBENCH_*", "XDG_CACHE_HOME"} <= _names(section["passenv"])
