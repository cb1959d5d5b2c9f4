"""Work per image (MACs) and the machine's measured matmul peak, for achieved-GFLOP/s figures."""

from __future__ import annotations

import functools
import time

import torch


def count_macs(model: torch.nn.Module, img_size: int) -> int:
    """Multiply-accumulates of one 3 x S x S image (FLOPs / 2, torch's FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, img_size, img_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops() // 2)


@functools.lru_cache(maxsize=8)
def matmul_peak_gflops(dtype_name: str = "float32", device: str = "cpu", n: int = 2048) -> float:
    """Best of a few n x n matmuls in this process, with its current thread setting.

    Used as the denominator of `peak_fraction`; it is measured in the same run as the benchmark
    so it reflects this machine and this thread count, not a datasheet.
    """
    dtype = getattr(torch, dtype_name)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    for _ in range(5):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9
