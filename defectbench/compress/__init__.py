"""Compression transforms: each a frozen config plus the function that applies it.

- ``onnx_export``: fp32 ONNX export with a torch parity check.
- ``ort_quant``: ONNX Runtime static (calibrated QDQ) and dynamic INT8.
- ``pt2e``: torchao PT2E INT8 (static, dynamic, QAT) for the x86 inductor backend.
- ``prune``: Torch-Pruning structured pruning, and pickle-free save / load of the result.

``pt2e`` is not imported here: it pulls in torchao, whose x86 quantizer changes inductor
settings (see its module docstring). Import ``defectbench.compress.pt2e`` explicitly.
"""

from defectbench.compress.onnx_export import (
    ExportReport,
    OnnxExportConfig,
    ParityCheck,
    check_onnx_parity,
    export_onnx,
)
from defectbench.compress.ort_quant import (
    CALIBRATION_METHODS,
    TENSORRT_INT8,
    OrtDynamicInt8Config,
    OrtStaticInt8Config,
    QuantReport,
    quantize_onnx_dynamic,
    quantize_onnx_static,
    tensorrt_compatible,
    transformer_ops_in,
)
from defectbench.compress.prune import (
    IMPORTANCES,
    PruneConfig,
    PruneReport,
    load_pruned,
    load_pruned_metadata,
    prune_model,
    pruned_structure,
    save_pruned,
)

__all__ = [
    "CALIBRATION_METHODS",
    "IMPORTANCES",
    "ExportReport",
    "OnnxExportConfig",
    "OrtDynamicInt8Config",
    "OrtStaticInt8Config",
    "ParityCheck",
    "PruneConfig",
    "PruneReport",
    "QuantReport",
    "TENSORRT_INT8",
    "check_onnx_parity",
    "export_onnx",
    "load_pruned",
    "load_pruned_metadata",
    "prune_model",
    "pruned_structure",
    "quantize_onnx_dynamic",
    "quantize_onnx_static",
    "save_pruned",
    "tensorrt_compatible",
    "transformer_ops_in",
]
