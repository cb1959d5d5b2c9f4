"""retain_freed_memory: large freed blocks are reused, not faulted in again; defaults restored."""

import resource

import numpy as np
import pytest

from defectbench.train.allocator import _glibc, retain_freed_memory

pytestmark = pytest.mark.skipif(_glibc() is None, reason="mallopt is glibc's")

BLOCK = 96 * 2**20  # above glibc's largest mmap threshold (32 MiB): mmap'd by default


def _faults_of_second_use() -> int:
    """Minor page faults of filling a large block after one like it was filled and freed."""
    first = np.ones(BLOCK, dtype=np.uint8)
    del first
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    second = np.ones(BLOCK, dtype=np.uint8)
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
