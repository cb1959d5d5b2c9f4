"""Work per image (MACs) and the machine's measured matmul peak, for achieved-GFLOP/s figures."""

from __future__ import annotations

import functools
import time

import torch


def count_macs(model: torch.nn.Module, img_size: int) -> int:
    """Multiply-accumulates of one 3 x S x S image (FLOPs / 2, torch's FlopCounterMode).

    Attention runs on SDPA's math backend while counting: FlopCounterMode has no formula for
    the fused CPU kernel (`_scaled_dot_product_flash_attention_for_cpu`), so a ViT's
    attention matmuls counted as nothing (ViT-Tiny at 128 px: 5% of its MACs missing)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, img_size, img_size)
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.inference_mode(), sdpa_kernel(SDPBackend.MATH):
            model(x)
    finally:  # a model that fails here must not go on in eval mode (dropout, batch norm off)
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
    torch_best = _best_seconds(lambda: a @ b)
    peak = 2 * n**3 / torch_best / 1e9
    if dtype == torch.float32:
        # torch's fp32 matmul goes to its BLAS, which can pick a narrower code path than the
        # CPU has (MKL on AMD: AVX2 where ONNX Runtime's kernels use AVX-512): the faster of
        # the two is the peak, or ONNX Runtime rows would read above 100% of it
        peak = max(peak, _ort_matmul_peak_gflops(n, torch.get_num_threads()))
    return peak


def _best_seconds(call, samples: int = 5) -> float:
    best = float("inf")
    for _ in range(samples):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def _ort_matmul_peak_gflops(n: int, threads: int) -> float:
    """An n x n fp32 MatMul in ONNX Runtime (its MLAS kernels) on `threads` threads."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {x: rng.standard_normal((n, n), dtype=np.float32) for x in "ab"}
    session.run(None, feed)  # warm-up: thread pool and packing buffers
    return 2 * n**3 / _best_seconds(lambda: session.run(None, feed)) / 1e9


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
