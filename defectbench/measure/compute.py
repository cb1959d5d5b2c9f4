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
def matmul_peak_gflops(
    dtype_name: str = "float32", device: str = "cpu", n: int | None = None
) -> float:
    """Best of a few n x n matmuls in this process, with its current thread setting.

    Used as the denominator of `peak_fraction`; it is measured in the same run as the benchmark
    so it reflects this machine and this thread count, not a datasheet. On CUDA a 2048^2 matmul
    lasts about as long as a launch and a synchronize, so there n defaults to 8192, a warm-up
    call runs first, and each sample times several matmuls between CUDA events; fp32 is timed
    without TF32, as the fp32 rows run.
    """
    dtype = getattr(torch, dtype_name)
    if device == "cuda":
        return _cuda_matmul_peak_gflops(dtype, n or 8192)
    n = n or 2048
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def _cuda_matmul_peak_gflops(
    dtype: torch.dtype, n: int, samples: int = 5, calls: int = 10
) -> float:
    from defectbench.runtime.precision import ieee_fp32_on_cuda

    a = torch.randn(n, n, device="cuda").to(dtype)
    b = torch.randn(n, n, device="cuda").to(dtype)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best_ms = float("inf")
    with ieee_fp32_on_cuda():
        a @ b  # cuBLAS handle and kernel choice: not part of the peak
        torch.cuda.synchronize()
        for _ in range(samples):
            start.record()
            for _ in range(calls):
                a @ b
            end.record()
            end.synchronize()
            best_ms = min(best_ms, start.elapsed_time(end) / calls)
    return 2 * n**3 / (best_ms / 1e3) / 1e9
