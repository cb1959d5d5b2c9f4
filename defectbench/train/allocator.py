"""Keep freed memory in the process while a zoo builds, instead of handing it back each step.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh `mmap`
and returns it to the kernel on `free`. A training step allocates and frees activations of
tens to hundreds of MiB (tf_efficientnet_lite2 at 260 px, batch 32: about 6 GiB in all), so
every step faults the same pages in again, and the kernel zeroes each one: on the 2-core
development VM, 1-2 million minor faults and several seconds of system time per step for
the first steps, and 9.3 million faults over 40 steps (145.8 s) against 1.5 million (96.0 s)
with the memory kept (docs/results/allocator-page-faults.txt). The arithmetic is unchanged,
so a recipe builds the same weights either way (tests/test_allocator.py, and the zoo rebuilt
with it in docs/results/quick-run3/).

`retain_freed_memory()` turns glibc's mmap for large blocks off (`M_MMAP_MAX` 0: they come
from the heap, which is reused) and its heap trimming off (`M_TRIM_THRESHOLD` -1), and on exit
restores glibc's default limits and returns the free heap to the kernel (`malloc_trim`), so
a benchmark session that built its zoo first measures memory with the default allocator
limits. Elsewhere than glibc (musl, macOS) it does nothing and says so in its return value.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from collections.abc import Iterator
from contextlib import contextmanager

# mallopt(3) parameters and glibc's defaults for them
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
DEFAULT_TRIM_THRESHOLD = 128 * 1024
DEFAULT_MMAP_MAX = 65536


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


@contextmanager
def retain_freed_memory() -> Iterator[bool]:
    """Keep freed blocks for reuse inside the block; yields whether that is in effect."""
    libc = _glibc()
    if libc is None:
        yield False
        return
    # mallopt returns 1 on success; a refusal leaves the allocator as it was
    applied = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, -1))
    try:
        yield applied
    finally:
        libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
        libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)
