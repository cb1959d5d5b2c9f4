"""Export a classifier to one self-contained ONNX file, checked against torch before it is kept."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from defectbench.compress._io import as_tensor, check_nchw, check_same_shape, eval_mode
from defectbench.errors import ArtifactError, ConfigError, DataError
from defectbench.io import atomic_path, sha256_file
from defectbench.runtime.predictor import defect_probability

MIN_OPSET = 17  # LayerNormalization is a native op from 17 on


@dataclass(frozen=True)
class OnnxExportConfig:
    """How to export and how closely the ONNX file must match torch.

    Parity passes when every logit satisfies ``|onnx - torch| <= atol + rtol * |torch|`` and
    the decision ``softmax[:, 1] >= threshold`` is the same for every checked image.
    """

    opset: int = 18
    dynamic_batch: bool = True
    input_name: str = "input"
    output_name: str = "logits"
    atol: float = 1e-4
    rtol: float = 1e-3
    threshold: float = 0.5

    def __post_init__(self) -> None:
        import onnx

        newest = onnx.defs.onnx_opset_version()
        if not MIN_OPSET <= self.opset <= newest:
            raise ConfigError(
                f"opset {self.opset} not supported; use {MIN_OPSET}..{newest} (default 18)"
            )
        if self.atol < 0 or self.rtol < 0:
            raise ConfigError(f"atol and rtol must be >= 0, got atol={self.atol} rtol={self.rtol}")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold must be in (0, 1), got {self.threshold}")
        if not self.input_name or not self.output_name or self.input_name == self.output_name:
            raise ConfigError(
                f"input_name {self.input_name!r} and output_name {self.output_name!r} must be "
                "non-empty and different"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ParityCheck:
    """How an ONNX file's logits compare with the torch module's on the same images."""

    num_samples: int
    max_abs_diff: float
    atol: float
    rtol: float
    within_tolerance: bool
    threshold: float
    decision_flips: int

    @property
    def passed(self) -> bool:
        return self.within_tolerance and self.decision_flips == 0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "passed": self.passed}


@dataclass(frozen=True)
class ExportReport:
    path: str
    file_bytes: int
    sha256: str
    input_shape: tuple[int, int, int]
    exporter: str
    torch_version: str
    parity: ParityCheck
    config: OnnxExportConfig

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "file_bytes": self.file_bytes,
            "sha256": self.sha256,
            "input_shape": list(self.input_shape),
            "exporter": self.exporter,
            "torch_version": self.torch_version,
            "parity": self.parity.to_dict(),
            "config": self.config.to_dict(),
        }


def export_onnx(
    model: nn.Module,
    example: np.ndarray,
    path: str | Path,
    config: OnnxExportConfig | None = None,
    check_batches: Sequence[np.ndarray] | None = None,
) -> ExportReport:
    """Export ``model`` (eval mode) to ``path`` and verify the file against torch.

    Uses the dynamo exporter with a dynamic batch dimension and writes one file with the
    weights inside (``external_data=False``). Parity is checked on ``check_batches`` (default:
    ``example``); if it fails, ArtifactError is raised and nothing is written to ``path``.
    """
    config = config or OnnxExportConfig()
    example = check_nchw(example, "export example")
    batches = [check_nchw(b, "parity check batch") for b in (check_batches or [example])]
    for batch in batches:
        # the exported graph fixes C, H and W to the example's; ONNX Runtime would only say
        # "invalid dimensions"
        check_same_shape(batch, example.shape[1:], "a parity check batch", "the export example")
    path = Path(path)
    with eval_mode(model), atomic_path(path) as tmp:
        _export(model, example, tmp, config)
        parity = check_onnx_parity(
            model,
            tmp,
            batches,
            atol=config.atol,
            rtol=config.rtol,
            threshold=config.threshold,
        )
        if not parity.passed:
            raise ArtifactError(
                f"ONNX export of {type(model).__name__} to {path} failed its parity check: "
                f"max |logit diff| {parity.max_abs_diff:.3g} (allowed atol {parity.atol:g} + "
                f"rtol {parity.rtol:g} * |logit|, within: {parity.within_tolerance}), "
                f"{parity.decision_flips} of {parity.num_samples} decisions at threshold "
                f"{parity.threshold} differ; the file was not written. Look for ops the "
                "exporter translates differently (custom autograd, data-dependent Python "
                "control flow) or loosen OnnxExportConfig(atol=..., rtol=...) deliberately"
            )
    return ExportReport(
        path=str(path),
        file_bytes=path.stat().st_size,
        sha256=sha256_file(path),
        input_shape=tuple(int(d) for d in example.shape[1:]),
        exporter="torch.onnx.export(dynamo=True)",
        torch_version=torch.__version__,
        parity=parity,
        config=config,
    )


def _export(model: nn.Module, example: np.ndarray, path: Path, config: OnnxExportConfig) -> None:
    if config.dynamic_batch and len(example) == 1:
        # export specialises a size-1 dimension to a constant; trace with two samples instead
        example = np.concatenate([example, example])
    args = (as_tensor(example, model),)
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1)},) if config.dynamic_batch else None
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            model,
            args,
            str(path),
            dynamo=True,
            opset_version=config.opset,
            input_names=[config.input_name],
            output_names=[config.output_name],
            dynamic_shapes=dynamic_shapes,
            external_data=False,
            verbose=False,
        )


def check_onnx_parity(
    model: nn.Module,
    onnx_path: str | Path,
    batches: Sequence[np.ndarray],
    *,
    atol: float,
    rtol: float,
    threshold: float = 0.5,
) -> ParityCheck:
    """Compare ``model`` (torch, fp32) with ``onnx_path`` (ONNX Runtime, CPU) on ``batches``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    batch_dim = session.get_inputs()[0].shape[0]
    fixed_batch = batch_dim if isinstance(batch_dim, int) else None
    max_diff, within, flips, count = 0.0, True, 0, 0
    for batch in batches:
        with torch.inference_mode():
            expected = model(as_tensor(batch, model)).float().cpu().numpy()
        if fixed_batch is not None and len(batch) % fixed_batch:
            raise DataError(
                f"{onnx_path} was exported with a fixed batch of {fixed_batch}, so it cannot "
                f"check a batch of {len(batch)}; pass check batches of a multiple of "
                f"{fixed_batch} or export with OnnxExportConfig(dynamic_batch=True)"
            )
        step = fixed_batch or len(batch)
        actual = np.concatenate(
            [_onnx_logits(session, input_name, batch[i : i + step])
             for i in range(0, len(batch), step)]
        )
        if actual.shape != expected.shape:
            raise ArtifactError(
                f"{onnx_path} returned logits of shape {actual.shape}, torch {expected.shape}"
            )
        diff = np.abs(actual.astype(np.float64) - expected)
        # np.max, not max(): a NaN logit must show as a NaN difference, not vanish
        max_diff = float(np.max([max_diff, diff.max()]))
        within &= bool(np.all(diff <= atol + rtol * np.abs(expected)))
        decided = defect_probability(actual) >= threshold
        flips += int(np.sum(decided != (defect_probability(expected) >= threshold)))
        count += len(batch)
    return ParityCheck(
        num_samples=count,
        max_abs_diff=max_diff,
        atol=atol,
        rtol=rtol,
        within_tolerance=within,
        threshold=threshold,
        decision_flips=flips,
    )


def _onnx_logits(session: Any, input_name: str, batch: np.ndarray) -> np.ndarray:
    return session.run(None, {input_name: batch})[0]
