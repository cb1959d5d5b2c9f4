"""Runnable artifacts behind one predict interface (torch eager/compiled, ONNX Runtime)."""

from defectbench.runtime.precision import (
    CUDA_SKIP_REASON,
    DEVICES,
    PRECISIONS,
    cuda_available,
    require_cuda,
    resolve_device,
    resolve_precision,
    torch_dtype,
)
from defectbench.runtime.predictor import (
    OrtPredictor,
    Predictor,
    TorchPredictor,
    cast_autocast_weights,
    defect_probability,
    is_quantized_module,
    onnx_precision,
    resolve_providers,
)

__all__ = [
    "CUDA_SKIP_REASON",
    "DEVICES",
    "PRECISIONS",
    "OrtPredictor",
    "Predictor",
    "TorchPredictor",
    "cast_autocast_weights",
    "cuda_available",
    "defect_probability",
    "is_quantized_module",
    "onnx_precision",
    "require_cuda",
    "resolve_device",
    "resolve_precision",
    "resolve_providers",
    "torch_dtype",
]
