"""Keep freed memory in the process while a zoo builds, instead of handing it back each step.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh `mmap`
and returns it to the kernel on `free`. A training step allocates and frees activations of
tens to hundreds of MiB (tf_efficientnet_lite2 at 260 px, batch 32: about 6 GiB in all), so
every step faults the same pages in again, and the kernel zeroes each one. On the 2-core
development VM, 20 steps of the quick teacher in a fresh process took 7.4-7.9 million minor
faults, 20 s of system time and 57-58 s, against 1.4 million, 8 s and 47 s with the memory
kept (docs/results/allocator-page-faults.txt); the first model a `zoo build` trains gained
most (quick-run3: tf_efficientnet_lite0.base 157 s, was 251). The arithmetic is unchanged,
so a recipe builds the same weights either way (tests/test_allocator.py, and the zoo rebuilt
with it in docs/results/quick-run3/).

`retain_freed_memory()` turns glibc's mmap for large blocks off (`M_MMAP_MAX` 0: they come
from the heap, which is reused) and its heap trimming off (`M_TRIM_THRESHOLD` -1). On exit it
returns the free heap to the kernel (`malloc_trim`) and sets the highest limits glibc's
dynamic threshold can rise to (mmap above 32 MiB, trim above 64 MiB): any mallopt call ends
that dynamic adjustment for good, and left at glibc's start values (128 KiB) every larger
activation of an inference call goes to a fresh mmap. A first version did that, and the
suite, whose process passed through `build_zoo` even with nothing to build, measured torch
latencies a median 1.3-2.3x slower (docs/results/quick-run3/suite-after-mallopt/). The
benchmark suite now builds a missing zoo in a process of its own (`defectbench.plugin`), so
nothing it times runs after this function.
Elsewhere than glibc (musl, macOS) it does nothing and says so in its return value.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from collections.abc import Iterator
from contextlib import contextmanager

# mallopt(3) parameters
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
# restored on exit: glibc's default mmap count, and the highest thresholds its dynamic
# adjustment can rise to (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit, and twice that for trimming)
DEFAULT_MMAP_MAX = 65536
SETTLED_MMAP_THRESHOLD = 32 * 2**20
SETTLED_TRIM_THRESHOLD = 2 * SETTLED_MMAP_THRESHOLD


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


# whether the outermost active block applied the setting, one entry per active block: an
# inner block (a build started inside a caller's own block) must not restore the defaults
# under the outer one, which would train the rest of it faulting pages in again
_active: list[bool] = []


@contextmanager
def retain_freed_memory() -> Iterator[bool]:
    """Keep freed blocks for reuse inside the block; yields whether that is in effect.

    Blocks nest: only the outermost one changes and restores the allocator."""
    if _active:
        _active.append(_active[0])
        try:
            yield _active[0]
        finally:
            _active.pop()
        return
    libc = _glibc()
    if libc is None:
        yield False
        return
    # mallopt returns 1 on success; a refusal leaves the allocator as it was
    applied = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, -1))
    _active.append(applied)
    try:
        yield applied
    finally:
        _active.pop()
        libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
        libc.mallopt(M_MMAP_THRESHOLD, SETTLED_MMAP_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, SETTLED_TRIM_THRESHOLD)
        libc.malloc_trim(0)
