"""The one place that turns a precision or device string into a canonical name."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from defectbench.errors import ConfigError, UnknownNameError

PRECISIONS: tuple[str, ...] = ("bf16", "fp16", "fp32", "int8")
DEVICES: tuple[str, ...] = ("cpu", "cuda")

# How a test or error tells the reader to get a CUDA device.
CUDA_HINT = "run on a GPU host (`tox -e gpu`)"
CUDA_SKIP_REASON = f"CUDA not available; {CUDA_HINT}"

_PRECISION_ALIASES = {
    "fp32": "fp32",
    "float32": "fp32",
    "float": "fp32",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "fp16": "fp16",
    "float16": "fp16",
    "half": "fp16",
    "int8": "int8",
}
_DEVICE_ALIASES = {"cpu": "cpu", "cuda": "cuda", "cuda:0": "cuda", "gpu": "cuda"}
_FLOAT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(name: str) -> str:
    """Canonical precision name (``fp32``, ``bf16``, ``fp16``, ``int8``) for a user string."""
    key = str(name).strip().lower()
    if key not in _PRECISION_ALIASES:
        raise UnknownNameError(
            f"unknown precision {name!r}; valid choices: {', '.join(PRECISIONS)} "
            f"(aliases: {', '.join(sorted(set(_PRECISION_ALIASES) - set(PRECISIONS)))})"
        )
    return _PRECISION_ALIASES[key]


def resolve_device(name: str) -> str:
    """Canonical device name (``cpu`` or ``cuda``) for a user string; does not check hardware."""
    key = str(name).strip().lower()
    if key not in _DEVICE_ALIASES:
        raise UnknownNameError(
            f"unknown device {name!r}; valid choices: {', '.join(DEVICES)}"
            " (a CUDA index other than 0: set CUDA_VISIBLE_DEVICES instead)"
        )
    return _DEVICE_ALIASES[key]


def cuda_available() -> bool:
    return torch.cuda.is_available()


def require_cuda(what: str) -> None:
    """Raise ConfigError naming ``what`` needs CUDA when no CUDA device is visible."""
    if not cuda_available():
        raise ConfigError(f"{what} needs a CUDA device but CUDA is not available; {CUDA_HINT}")


def torch_dtype(precision: str) -> torch.dtype:
    """The torch floating dtype a float precision computes in (fp32, bf16, fp16)."""
    canonical = resolve_precision(precision)
    if canonical not in _FLOAT_DTYPES:
        raise ConfigError(
            f"precision {canonical!r} has no torch float dtype; expected one of "
            f"{', '.join(sorted(_FLOAT_DTYPES))} (int8 models are built by defectbench.compress)"
        )
    return _FLOAT_DTYPES[canonical]


@contextlib.contextmanager
def cudnn_autotuned() -> Iterator[None]:
    """cuDNN's convolution algorithm search on inside the block, restored after.

    ONNX Runtime's CUDA provider searches for the fastest convolution algorithm per shape by
    default (``cudnn_conv_algo_search`` EXHAUSTIVE); torch does only with
    ``cudnn.benchmark``. Without it the torch-vs-ORT ratios on CUDA would compare tuned against
    untuned convolutions. The search runs on the first call at each shape, which the suite
    never times.
    """
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


@contextlib.contextmanager
def ieee_fp32_on_cuda() -> Iterator[None]:
    """TF32 off for cuDNN convolutions and CUDA matmuls inside the block, restored after.

    torch runs fp32 convolutions on CUDA in TF32 by default (10-bit mantissa), so "fp32" would
    mean TF32 for torch but IEEE fp32 for ONNX Runtime (its provider runs with ``use_tf32: 0``
    here), and the two runtimes' fp32 rows would not be the same arithmetic. The per-operator
    ``fp32_precision`` settings are used where torch has them: torch refuses to read the
    legacy ``allow_tf32`` flags once those settings differ between convolutions and RNNs.
    """
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    if hasattr(cudnn, "conv") and hasattr(matmul, "fp32_precision"):
        saved = (cudnn.conv.fp32_precision, matmul.fp32_precision)
        cudnn.conv.fp32_precision = matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            cudnn.conv.fp32_precision, matmul.fp32_precision = saved
        return
    saved = (cudnn.allow_tf32, matmul.allow_tf32)  # torch before the per-operator settings
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved
