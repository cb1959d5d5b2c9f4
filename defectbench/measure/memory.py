"""Peak memory of one inference call, saying exactly what was measured."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class MemoryMeasurement:
    """`kind` says what `peak_mb` is: on CPU (`cpu_rss_high_water`) the process RSS
    high-water mark (VmHWM) during one call; on CUDA, `cuda_peak_allocated` (what
    `measure_cuda_peak` returns, used as is by the latency survey) is the torch caching
    allocator's peak during the call, everything the process holds included, and
    `cuda_artifact_peak_allocated` (the suite's, see `Suite.memory`) is what the allocator
    holds for this artifact's weights plus the most one call allocates above that.
    `delta_mb` is what the call added to what was resident / allocated just before it.
    A process-wide RSS includes everything the session has loaded, and on CPU `delta_mb` is
    only a lower bound (pages earlier cases freed stay in the process and are reused, so it
    is often 0): compare artifacts by the isolated child's figures (`--memory-isolated`),
    not by `peak_mb` or `delta_mb`. None: not
    measured (ONNX Runtime and TensorRT allocate CUDA memory outside torch's allocator)."""

    kind: str
    peak_mb: float | None
    delta_mb: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def _status_kb(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in {_STATUS}")


def current_rss_mb() -> float:
    """Resident set size now (VmRSS), in MiB."""
    return _status_kb("VmRSS") / 1024


def try_reset_rss_high_water() -> bool:
    """Reset the process's RSS high-water mark (VmHWM restarts from the current RSS); False
    where it cannot be (it needs Linux >= 4.0 and a writable /proc/self/clear_refs)."""
    try:
        _CLEAR_REFS.write_text("5")
        _status_kb("VmHWM")
        return True
    except (OSError, RuntimeError):
        return False


def measure_cpu_peak(fn: Callable[[], object]) -> MemoryMeasurement:
    """Reset the RSS high-water mark, run `fn` once, read the new high-water mark.

    Where the mark cannot be reset (a sandbox such as gVisor, a read-only /proc), the case
    still runs and the measurement says so: kind `cpu_rss_high_water_not_reset`, the peak
    being the process's since it started, and no `delta_mb`."""
    try:
        _CLEAR_REFS.write_text("5")  # "5" resets VmHWM to the current RSS (proc(5))
    except OSError:
        fn()
        return MemoryMeasurement("cpu_rss_high_water_not_reset", _status_kb("VmHWM") / 1024, None)
    before = _status_kb("VmRSS")
    fn()
    peak = _status_kb("VmHWM")
    return MemoryMeasurement("cpu_rss_high_water", peak / 1024, max(0, peak - before) / 1024)


def measure_cuda_peak(fn: Callable[[], object]) -> MemoryMeasurement:
    import torch

    from defectbench.runtime.precision import require_cuda

    require_cuda("CUDA memory measurement")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return MemoryMeasurement("cuda_peak_allocated", peak / 2**20, (peak - before) / 2**20)


def cuda_allocated_mb() -> float:
    """What torch's CUDA caching allocator holds now, in MiB. The first call initializes
    torch's CUDA (context and runtime libraries, hundreds of MiB of RSS): call it before
    reading an RSS baseline, not after, or that RSS delta includes the initialization."""
    import torch

    from defectbench.runtime.precision import require_cuda

    require_cuda("CUDA memory measurement")
    torch.cuda.synchronize()
    return torch.cuda.memory_allocated() / 2**20


def measure_peak(fn: Callable[[], object], device: str) -> MemoryMeasurement:
    """The peak of one call of `fn` on `device` (any name `resolve_device` takes): a device
    string compared as is sent 'gpu' and 'cuda:0' to the CPU measurement, whose RSS says
    nothing of what a CUDA call allocates, and an unknown device there too."""
    from defectbench.runtime.precision import resolve_device

    return measure_cuda_peak(fn) if resolve_device(device) == "cuda" else measure_cpu_peak(fn)
