"""retain_freed_memory: large freed blocks are reused, not faulted in again; defaults restored."""

import ctypes
import os
import platform
import resource

import numpy as np
import pytest

from defectbench.train import allocator as allocator_module
from defectbench.train.allocator import M_MMAP_THRESHOLD, _glibc, retain_freed_memory

# decided from the platform, not from _glibc(): a _glibc() that failed to find glibc on Linux
# would otherwise skip every test here instead of failing one
pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's"
)

BLOCK = 96 * 2**20  # above glibc's largest mmap threshold (32 MiB): mmap'd by default


def _faults_of_second_use(size: int = BLOCK, count: int = 1) -> int:
    """Minor page faults of filling ``count`` blocks of ``size`` bytes after blocks like them
    were filled and freed."""
    first = [np.ones(size, dtype=np.uint8) for _ in range(count)]
    del first
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    second = [np.ones(size, dtype=np.uint8) for _ in range(count)]
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    del second
    return faults


# at least one fault per page, whether the kernel backs the block with 4-KiB or 2-MiB pages
FAULTS_OF_A_FRESH_BLOCK = BLOCK // 2**21


def test_freed_blocks_are_reused_inside_and_returned_after():
    # by default the freed block went back to the kernel: its pages fault in again
    assert _faults_of_second_use() >= FAULTS_OF_A_FRESH_BLOCK
    with retain_freed_memory() as applied:
        assert applied
        assert _faults_of_second_use() < FAULTS_OF_A_FRESH_BLOCK // 10
    # defaults restored on exit: large blocks are mmap'd and returned again
    assert _faults_of_second_use() >= FAULTS_OF_A_FRESH_BLOCK


def test_defaults_are_restored_when_the_block_raises():
    with pytest.raises(KeyboardInterrupt), retain_freed_memory():
        raise KeyboardInterrupt
    assert _faults_of_second_use() >= FAULTS_OF_A_FRESH_BLOCK


def test_a_nested_block_leaves_the_outer_one_in_effect():
    # the inner block's exit restored glibc's defaults under the outer block
    with retain_freed_memory() as outer:
        with retain_freed_memory() as inner:
            assert outer and inner
        assert _faults_of_second_use() < FAULTS_OF_A_FRESH_BLOCK // 10
    assert _faults_of_second_use() >= FAULTS_OF_A_FRESH_BLOCK


def test_a_recipe_builds_the_same_weights_with_freed_memory_retained_or_not(
    monkeypatch, tmp_path
):
    import contextlib

    import defectbench.zoo.build as build
    from defectbench.zoo.profiles import TEACHER, get_profile
    from defectbench.zoo.store import ZooStore

    entered = []

    @contextlib.contextmanager
    def recorded():
        with retain_freed_memory() as applied:
            entered.append(applied)
            yield applied

    artifacts = []
    for zoo, allocator in (("retained", recorded), ("default", contextlib.nullcontext)):
        monkeypatch.setattr(build, "retain_freed_memory", allocator)
        build.build_zoo(get_profile("smoke"), tmp_path / zoo, [TEACHER], log=lambda _: None)
        artifacts.append(ZooStore(tmp_path / zoo, "smoke").verify(TEACHER)["artifacts"])
    assert entered == [True]
    assert artifacts[0] == artifacts[1]


MIB = 2**20


def test_after_the_block_the_settled_limits_hold_not_glibcs_start_values():
    # any mallopt call ends glibc's dynamic threshold for good: left at its start value
    # (128 KiB), every activation above it went to a fresh mmap and the suite timed torch
    # 1.3-2.3x slower. Checked in a new interpreter: whether freed heap can be trimmed
    # depends on what lies above it, and earlier tests leave this process's heap fragmented
    import subprocess
    import sys
    from pathlib import Path

    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            "import test_allocator; test_allocator._check_settled_limits()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def _check_settled_limits() -> None:
    _glibc().mallopt(M_MMAP_THRESHOLD, 128 * 2**10)  # glibc's start value
    with retain_freed_memory():
        pass
    # a 24 MiB block is below the settled mmap threshold (32 MiB) and the trim threshold
    # (64 MiB): it stays on the heap and is reused without faulting in again
    assert _faults_of_second_use(24 * MIB) < 24 * MIB // 2**21
    # freed heap above 64 MiB goes back to the kernel again (trimming was off in the block)
    assert _faults_of_second_use(16 * MIB, count=6) >= 96 * MIB // 2**21


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _mmapped_blocks() -> int:
    libc = _glibc()
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("mallinfo2 is glibc 2.33's")
    libc.mallinfo2.restype = _Mallinfo2
    return libc.mallinfo2().hblks


def test_large_blocks_are_mmapped_again_after_the_block():
    with retain_freed_memory():
        before = _mmapped_blocks()
        block = np.ones(BLOCK, dtype=np.uint8)
        assert _mmapped_blocks() == before  # M_MMAP_MAX 0: from the heap
        del block
    before = _mmapped_blocks()
    block = np.ones(BLOCK, dtype=np.uint8)
    # glibc's default count of mmaps restored: a block above 32 MiB is its own mapping
    assert _mmapped_blocks() == before + 1
    del block


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_the_heap_freed_inside_the_block_is_returned_on_exit():
    with retain_freed_memory():
        block = np.ones(BLOCK, dtype=np.uint8)
        del block  # kept: trimming is off
        kept = _resident_bytes()
    assert _resident_bytes() < kept - BLOCK // 2


class _RefusingLibc:
    """A libc whose mallopt refuses every setting (returns 0), recording the calls."""

    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 0

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 0


def test_a_refused_or_missing_mallopt_is_reported_not_claimed(monkeypatch):
    libc = _RefusingLibc()
    monkeypatch.setattr(allocator_module, "_glibc", lambda: libc)
    with retain_freed_memory() as outer:
        with retain_freed_memory() as inner:
            assert (outer, inner) == (False, False)
        # the inner block changed nothing; only the outer one restores, once
        assert [c for c in libc.calls if c[0] == "malloc_trim"] == []
    assert libc.calls[-1] == ("malloc_trim", 0)
    # elsewhere than glibc (musl, macOS) nothing is done and the block says so
    monkeypatch.setattr(allocator_module, "_glibc", lambda: None)
    with retain_freed_memory() as applied, retain_freed_memory() as nested:
        assert (applied, nested) == (False, False)
    assert allocator_module._active == []
