"""Latency-only survey of the architectures the field names as teachers and students.

No ImageNet weights for these install offline (the project machines' environment notes), so
they run with untrained weights: latency, throughput and memory do not depend on weight values,
accuracy does. Every result is
marked `latency_only` and carries no quality numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from defectbench.errors import ConfigError

# (timm name, native input size)
SURVEY_ARCHS: tuple[tuple[str, int], ...] = (
    ("convnext_base", 224),
    ("convnext_tiny", 224),
    ("efficientnet_b0", 224),
    ("efficientnet_b7", 600),
    ("mobilevit_s", 256),
    # the default teacher's architecture at its native resolution, untrained: not a speedup
    # baseline (latency-only rows get none), but the trained teacher's latency to compare with
    ("tf_efficientnet_lite2", 260),
    ("vit_base_patch16_224", 224),
    ("vit_small_patch16_224", 224),
    ("vit_tiny_patch16_224", 224),
)
SURVEY_PRECISIONS = {"cpu": ("bf16", "fp32", "int8"), "cuda": ("bf16", "fp16", "fp32")}


@dataclass(frozen=True, order=True)
class SurveyCase:
    arch: str
    precision: str
    device: str
    batch: int

    @property
    def id(self) -> str:
        return f"{self.arch}-{self.precision}-{self.device}-b{self.batch}"

    @property
    def img_size(self) -> int:
        return dict(SURVEY_ARCHS)[self.arch]


def survey_cases(devices: tuple[str, ...], precisions: tuple[str, ...],
                 batches: tuple[int, ...]) -> list[SurveyCase]:
    return sorted(
        SurveyCase(arch, p, d, b)
        for arch, _ in SURVEY_ARCHS
        for d in devices
        for p in SURVEY_PRECISIONS.get(d, ())
        if p in precisions
        for b in batches
    )


def survey_model(arch: str):
    """An untrained timm model with a 2-class head (latency does not depend on weight values)."""
    import timm

    return timm.create_model(arch, pretrained=False, num_classes=2)


def survey_predictor(case: SurveyCase, workdir):
    """fp32/bf16/fp16: torch eager; int8 (CPU): ONNX Runtime static QDQ calibrated on noise."""
    from defectbench.runtime.predictor import OrtPredictor, TorchPredictor

    model = survey_model(case.arch)
    if case.precision != "int8":
        return TorchPredictor(model, device=case.device, precision=case.precision, name=case.arch)
    if case.device != "cpu":
        raise ConfigError("survey int8 runs on CPU through ONNX Runtime; on CUDA use TensorRT")
    from pathlib import Path

    from defectbench.compress.onnx_export import OnnxExportConfig, _export
    from defectbench.compress.ort_quant import OrtStaticInt8Config, quantize_onnx_static

    rng = np.random.default_rng(0)
    calib = rng.standard_normal((8, 3, case.img_size, case.img_size)).astype(np.float32)
    fp32 = Path(workdir) / f"{case.arch}.onnx"
    int8 = Path(workdir) / f"{case.arch}.int8.onnx"
    if not int8.is_file():
        # no parity check: with random weights the logits sit near 0 and the 0.5 decision is
        # arbitrary, and only the latency of this file is ever reported
        _export(model.eval(), calib[:2], fp32, OnnxExportConfig())
        quantize_onnx_static(fp32, int8, [calib], OrtStaticInt8Config(num_calibration=8))
    import torch

    # the thread count the suite reports (--threads sets torch's); ONNX Runtime's own default
    # is every physical core
    return OrtPredictor(int8, providers=("cpu",), name=f"{case.arch}.int8_ort",
                        intra_op_threads=torch.get_num_threads())
