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


# -------------------------------------------- what `tox -e gpu` installs and what the hints say
# onnxruntime-gpu on PyPI: 1.26.0 and earlier need CUDA 12 (Requires-Dist
# nvidia-cuda-runtime-cu12 under its `cuda` extra), 1.27.0 on CUDA 13; 1.31.1's
# libonnxruntime_providers_tensorrt.so is linked against libnvinfer.so.10 and
# libnvonnxparser.so.10, and `pip install tensorrt` unpinned installs TensorRT 11.
ORT_GPU_CUDA12_LAST, ORT_GPU_CUDA13 = "1.26.0", "1.31.1"


def _tox_ort_gpu_requirement():
    from packaging.requirements import Requirement

    lines = [line for line in _tox_env("gpu")["commands_pre"].splitlines()
             if "onnxruntime-gpu" in line]
    assert len(lines) == 1, lines
    quoted = lines[0].split('"')[1]
    return Requirement(quoted)


def test_tox_gpu_installs_an_onnxruntime_gpu_built_for_torchs_cuda_13():
    # torch 2.14 cu130 loads libcudart.so.13 / libcublas.so.13; ">=1.22" let pip pick a CUDA 12
    # build (on Python 3.10 it picks 1.23.2, the last with a cp310 wheel) whose CUDA provider
    # cannot load there, so every ONNX Runtime CUDA and TensorRT case failed
    from packaging.requirements import Requirement

    from defectbench.runtime.predictor import ORT_GPU_REQUIREMENTS

    requirement = _tox_ort_gpu_requirement()
    assert requirement.name == "onnxruntime-gpu"
    assert not requirement.specifier.contains(ORT_GPU_CUDA12_LAST)
    assert requirement.specifier.contains(ORT_GPU_CUDA13)
    # the hints name what tox installs
    assert requirement == Requirement(ORT_GPU_REQUIREMENTS[0])


def test_gpu_install_hints_pin_what_the_providers_can_load():
    from packaging.requirements import Requirement

    from defectbench.runtime.predictor import ORT_GPU_REQUIREMENTS, missing_providers_reason

    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    pyproject = TOX_INI.parent / "pyproject.toml"
    gpu_extra = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]["gpu"]
    tensorrt = next(Requirement(r) for r in gpu_extra if r.startswith("tensorrt"))
    assert tensorrt == Requirement(ORT_GPU_REQUIREMENTS[1])  # the extra `tox -e gpu` installs
    assert not tensorrt.specifier.contains("11.4.0.106")
    assert tensorrt.specifier.contains("10.16.1.11")
    reason = missing_providers_reason(["TensorrtExecutionProvider"], ["CPUExecutionProvider"])
    for pinned in ORT_GPU_REQUIREMENTS:  # an unpinned `pip install tensorrt` gives TensorRT 11
        assert f'"{pinned}"' in reason


def _loader(present):
    def load(name, *args, **kwargs):
        if name not in present:
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")
        return object()

    return load


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        # a system TensorRT 11 with its dev package: the unversioned name loads TensorRT 11
        pytest.param({"libnvinfer.so", "libnvinfer.so.11", "libnvonnxparser.so",
                      "libnvonnxparser.so.11"}, "libnvinfer.so.10", id="tensorrt-11"),
        # the provider also needs the ONNX parser: libnvinfer alone does not start it
        pytest.param({"libnvinfer.so.10"}, "libnvonnxparser.so.10", id="no-onnx-parser"),
    ],
)
def test_tensorrt_check_needs_the_libraries_the_provider_is_linked_against(
    monkeypatch, present, missing
):
    import ctypes

    from defectbench.runtime.predictor import tensorrt_library_reason

    monkeypatch.setattr(ctypes, "CDLL", _loader(present))
    reason = tensorrt_library_reason()
    assert reason is not None and f"TensorRT's library ({missing}) does not load" in reason
    assert '"tensorrt>=10,<11"' in reason
    monkeypatch.setattr(ctypes, "CDLL", _loader({"libnvinfer.so.10", "libnvonnxparser.so.10"}))
    assert tensorrt_library_reason() is None
