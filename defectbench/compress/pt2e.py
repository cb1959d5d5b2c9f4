"""INT8 in PyTorch with torchao PT2E and ``X86InductorQuantizer``: static, dynamic and QAT.

Static INT8 is explicit steps::

    prepared = prepare_pt2e_int8(model, example, Pt2eInt8Config())
    calibrate_pt2e(prepared, calibration_batches)
    quantized = convert_pt2e_int8(prepared)
    predictor = int8_predictor(quantized)          # torch.compile with freezing

QAT replaces calibration with the caller's training loop::

    prepared = prepare_qat_pt2e_int8(model, example, Pt2eInt8Config())
    set_qat_mode(prepared, train=True)             # then train `prepared` as any module
    quantized = convert_pt2e_int8(prepared)

A PT2E model runs reference (slow) kernels until it is compiled; ``int8_predictor`` compiles
it with inductor ``freezing`` so the int8 oneDNN kernels really run (FACTS.md).

Process-wide side effect: importing torchao's x86 inductor quantizer sets
``torch._inductor.config.pre_grad_custom_pass`` and registers int8 fusion patterns in
inductor. This module imports it only inside its functions, puts the previous pre-grad pass
back right after the import, and enables that pass and ``freezing`` only around the calls of
``int8_predictor`` (``TorchPredictor(inductor_config=...)``), so float models compiled in the
same process keep their usual settings. The registered patterns only match quantize /
dequantize nodes and leave float graphs alone.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from defectbench.compress._io import (
    as_tensor,
    check_nchw,
    check_not_blank,
    check_same_shape,
    eval_mode,
    take_samples,
)
from defectbench.errors import ConfigError
from defectbench.runtime.predictor import TorchPredictor, is_quantized_module

_MAX_BATCH_KEY = "defectbench_max_batch"
_INPUT_SHAPE_KEY = "defectbench_input_shape"  # (C, H, W) the graph was exported at


@dataclass(frozen=True)
class Pt2eInt8Config:
    """Static INT8 (also the QAT target): uint8 activations, per-channel int8 weights.

    ``max_batch`` bounds the exported dynamic batch dimension; ``reduce_range`` uses 7-bit
    activations for CPUs without VNNI. ``drop_unused_float_weights``: ``convert_pt2e`` leaves
    the float weights it replaced with int8 copies as attributes no node reads; they are
    deleted, so the converted model holds (and its size counts) only what its graph uses.
    """

    max_batch: int = 64
    reduce_range: bool = False
    drop_unused_float_weights: bool = True

    def __post_init__(self) -> None:
        _check_max_batch(self.max_batch)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        # added after zoos were built: left out at the value that made those (False), so a
        # variant built the new way gets a new key
        if not data["drop_unused_float_weights"]:
            del data["drop_unused_float_weights"]
        return data


@dataclass(frozen=True)
class Pt2eDynamicInt8Config:
    """Dynamic INT8 for linear-heavy models (ViT): int8 weights, activations quantized per call."""

    max_batch: int = 64
    reduce_range: bool = False

    def __post_init__(self) -> None:
        _check_max_batch(self.max_batch)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_max_batch(max_batch: int) -> None:
    # the batch dimension is traced with two samples, so the range must include 2
    if not isinstance(max_batch, int) or max_batch < 2:
        raise ConfigError(f"max_batch must be an int >= 2, got {max_batch!r}")


@dataclass(frozen=True)
class Pt2eReport:
    method: str  # "pt2e_static_int8" | "pt2e_dynamic_int8" | "pt2e_qat_int8"
    num_calibration_samples: int
    quantized_ops: dict[str, int]
    config: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- steps


def prepare_pt2e_int8(
    model: nn.Module, example: np.ndarray, config: Pt2eInt8Config | None = None
) -> torch.fx.GraphModule:
    """Export ``model`` (eval mode, dynamic batch) and insert observers for calibration."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    config = config or Pt2eInt8Config()
    with eval_mode(model):
        exported = _export(model, example, config.max_batch)
    quantizer = _quantizer(is_qat=False, is_dynamic=False, reduce_range=config.reduce_range)
    return _tag(prepare_pt2e(exported, quantizer), config.max_batch, example.shape[1:])


def calibrate_pt2e(
    prepared: torch.fx.GraphModule,
    batches: Iterable[np.ndarray],
    num_samples: int | None = None,
) -> int:
    """Run calibration batches through a prepared model; returns how many samples it saw."""
    taken = take_samples(batches, num_samples, "calibration batch")
    count = sum(len(b) for b in taken)
    if count == 0 or (num_samples is not None and count < num_samples):
        raise ConfigError(
            f"calibration batches gave {count} samples, expected {num_samples or 'at least 1'}; "
            "pass more batches or lower num_samples"
        )
    check_not_blank(taken, "calibration")
    _observe(prepared, taken, "calibration batch")
    return count


def _observe(prepared: torch.fx.GraphModule, batches: list[np.ndarray], what: str) -> None:
    step = _max_batch(prepared)
    shape = prepared.meta.get(_INPUT_SHAPE_KEY)
    for batch in batches:
        if shape is not None:
            # the exported graph guards H and W (and C) at the example's: its own error is an
            # AssertionError "Guard failed: x.size()[2] == 32"
            check_same_shape(batch, shape, f"a {what}", "the graph exported from the example")
    with torch.no_grad():
        for batch in batches:
            for start in range(0, len(batch), step):
                prepared(as_tensor(batch[start : start + step], prepared))


def convert_pt2e_int8(
    prepared: torch.fx.GraphModule, *, drop_unused_float_weights: bool = True
) -> torch.fx.GraphModule:
    """Turn a calibrated (or QAT-trained) model into a quantized graph in eval mode."""
    from torchao.quantization.pt2e import (
        allow_exported_model_train_eval,
        move_exported_model_to_eval,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    max_batch = _max_batch(prepared)
    input_shape = prepared.meta.get(_INPUT_SHAPE_KEY)
    quantized = convert_pt2e(prepared)
    if drop_unused_float_weights:
        drop_unused_tensors(quantized)
    move_exported_model_to_eval(quantized)
    # lets .eval() / .train() work on the exported graph (TorchPredictor calls .eval())
    allow_exported_model_train_eval(quantized)
    return _tag(quantized, max_batch, input_shape)


def drop_unused_tensors(graph_module: torch.fx.GraphModule) -> int:
    """Delete the parameters and buffers that no node of the graph reads; returns their bytes.

    After ``convert_pt2e`` the float weights that were replaced by folded int8 copies stay
    attached to the module (about the fp32 model's size again) though no ``get_attr`` reads
    them: held in memory at serving time and counted by ``state_dict()``.
    """
    nodes = list(graph_module.graph.nodes)
    read = {str(n.target) for n in nodes if n.op == "get_attr"}
    called = {str(n.target) for n in nodes if n.op == "call_module"}

    def used(name: str) -> bool:
        return name in read or any(name.startswith(f"{prefix}.") for prefix in read | called)

    freed: dict[int, int] = {}  # by storage: a tied alias is one tensor, counted once
    for name, tensor in list(graph_module.state_dict(keep_vars=True).items()):
        if used(name):
            continue
        owner, _, attr = name.rpartition(".")
        delattr(graph_module.get_submodule(owner) if owner else graph_module, attr)
        freed[tensor.untyped_storage().data_ptr()] = tensor.numel() * tensor.element_size()
    return sum(freed.values())


def qparams_fingerprint(graph_module: torch.fx.GraphModule) -> str:
    """sha256 of what calibration decided: every quantize/dequantize node's arguments (float
    scales written exactly, as hex) in graph order, and the tensors the graph reads (int8
    weights, per-channel scales), by name. Two conversions with equal fingerprints compute
    the same function."""
    import hashlib

    digest = hashlib.sha256()

    def feed(value: Any) -> None:
        if isinstance(value, float):
            digest.update(value.hex().encode())
        elif isinstance(value, (tuple, list)):
            for item in value:
                feed(item)
        else:
            digest.update(repr(value).encode())

    for node in graph_module.graph.nodes:
        if node.op == "call_function" and "quantize" in str(node.target):
            digest.update(str(node.target).encode())
            feed([a for a in node.args if not isinstance(a, torch.fx.Node)])
    for name, tensor in sorted(graph_module.state_dict().items()):
        digest.update(name.encode())
        flat = tensor.detach().cpu().reshape(-1).contiguous()
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def graph_state_bytes(graph_module: torch.fx.GraphModule) -> int:
    """Bytes of the tensors the module holds, as ``torch.save(state_dict())`` writes them."""
    import io

    buffer = io.BytesIO()
    torch.save(graph_module.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def quantize_pt2e_dynamic_int8(
    model: nn.Module, example: np.ndarray, config: Pt2eDynamicInt8Config | None = None
) -> torch.fx.GraphModule:
    """Prepare and convert in one go: dynamic INT8 needs no calibration data.

    ``example`` runs once so the weight observers record the weight ranges.
    """
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    config = config or Pt2eDynamicInt8Config()
    with eval_mode(model):
        exported = _export(model, example, config.max_batch)
    quantizer = _quantizer(is_qat=False, is_dynamic=True, reduce_range=config.reduce_range)
    prepared = _tag(prepare_pt2e(exported, quantizer), config.max_batch, example.shape[1:])
    # only the weight observers record anything here, so a blank example is no problem
    _observe(prepared, [check_nchw(example, "example")], "example")
    return convert_pt2e_int8(prepared)


def prepare_qat_pt2e_int8(
    model: nn.Module, example: np.ndarray, config: Pt2eInt8Config | None = None
) -> torch.fx.GraphModule:
    """Export ``model`` in train mode and insert fake-quantize modules for QAT.

    The result is in train mode; train it with the caller's loop (its ``parameters()`` are the
    weights to optimise), call ``set_qat_mode(prepared, train=False)`` to evaluate, then
    ``convert_pt2e_int8``.
    """
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    config = config or Pt2eInt8Config()
    flags = [(module, module.training) for module in model.modules()]
    model.train()
    try:
        exported = _export(model, example, config.max_batch)
    finally:
        for module, training in flags:
            module.training = training
    quantizer = _quantizer(is_qat=True, is_dynamic=False, reduce_range=config.reduce_range)
    prepared = _tag(prepare_qat_pt2e(exported, quantizer), config.max_batch, example.shape[1:])
    set_qat_mode(prepared, train=True)
    return prepared


def set_qat_mode(
    prepared: torch.fx.GraphModule, train: bool, *, observers_follow: bool = True
) -> None:
    """Switch a QAT-prepared graph between training and evaluation behaviour.

    Exported graphs do not follow ``.train()`` / ``.eval()``: batch norm and dropout are
    rewritten in the graph instead. The fake-quantize modules' observers know no mode at all
    (a fused moving-average observer updates its range on every call), so with
    ``observers_follow`` they are switched too: on in training, frozen in evaluation, so that
    scoring ``dev`` between epochs does not move the ranges the INT8 model is made with.
    """
    from torchao.quantization.pt2e import (
        disable_observer,
        enable_observer,
        move_exported_model_to_eval,
        move_exported_model_to_train,
    )

    (move_exported_model_to_train if train else move_exported_model_to_eval)(prepared)
    if observers_follow:
        prepared.apply(enable_observer if train else disable_observer)


def allow_qat_train_eval(
    prepared: torch.fx.GraphModule, *, observers_follow: bool = True
) -> torch.fx.GraphModule:
    """Make ``.train()`` / ``.eval()`` on a QAT graph do what ``set_qat_mode`` does, so a
    training loop written for ordinary modules (``fit``) drives it correctly."""

    def train(self, mode: bool = True):
        set_qat_mode(self, mode, observers_follow=observers_follow)
        return self

    prepared.train = types.MethodType(train, prepared)
    prepared.eval = types.MethodType(lambda self: self.train(False), prepared)
    return prepared


def quantized_op_counts(model: nn.Module) -> dict[str, int]:
    """How often each quantize / dequantize / int8 op appears in a graph, by op name."""
    counts: dict[str, int] = {}
    for module in model.modules():
        graph = getattr(module, "graph", None)
        if not isinstance(graph, torch.fx.Graph):
            continue
        for node in graph.nodes:
            target = str(node.target)
            if node.op == "call_function" and target.startswith(
                ("quantized_decomposed.", "onednn.", "torchao.")
            ):
                counts[target] = counts.get(target, 0) + 1
    return dict(sorted(counts.items()))


def pt2e_report(
    quantized: torch.fx.GraphModule,
    method: str,
    config: Pt2eInt8Config | Pt2eDynamicInt8Config,
    num_calibration_samples: int = 0,
) -> Pt2eReport:
    methods = ("pt2e_dynamic_int8", "pt2e_qat_int8", "pt2e_static_int8")
    if method not in methods:
        raise ConfigError(f"unknown PT2E method {method!r}; valid choices: {', '.join(methods)}")
    return Pt2eReport(
        method=method,
        num_calibration_samples=num_calibration_samples,
        quantized_ops=quantized_op_counts(quantized),
        config=config.to_dict(),
    )


def int8_predictor(
    quantized: torch.fx.GraphModule,
    *,
    compile: bool = True,
    name: str | None = None,
) -> TorchPredictor:
    """A CPU predictor for a converted PT2E model, compiled with inductor freezing.

    ``compile=False`` runs the reference kernels (correct, slow): useful to check numbers, not
    to time. Compilation happens on the first call and again for a new batch size.
    """
    if not is_quantized_module(quantized):
        raise ConfigError(
            "int8_predictor needs a converted PT2E model; run prepare_pt2e_int8, "
            "calibrate_pt2e and convert_pt2e_int8 first"
        )
    return TorchPredictor(
        quantized,
        device="cpu",
        precision="int8",
        channels_last=True,
        compile=compile,
        inductor_config=_int8_inductor_config() if compile else None,
        max_batch=_max_batch(quantized),
        name=name or "pt2e_int8",
    )


# --------------------------------------------------------------------------- internals


def _export(model: nn.Module, example: np.ndarray, max_batch: int) -> torch.fx.GraphModule:
    example = check_nchw(example, "example")[:max_batch]
    if len(example) == 1:
        # export specialises a size-1 dimension to a constant; trace with two samples instead
        example = np.concatenate([example, example])
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    program = torch.export.export(model, (as_tensor(example, model),), dynamic_shapes=({0: batch},))
    return program.module()


def _quantizer(is_qat: bool, is_dynamic: bool, reduce_range: bool) -> Any:
    xiq = _import_x86_quantizer()
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(
        xiq.get_default_x86_inductor_quantization_config(
            is_qat=is_qat, is_dynamic=is_dynamic, reduce_range=reduce_range
        )
    )
    return quantizer


def _import_x86_quantizer() -> Any:
    """Import torchao's x86 quantizer without keeping its process-wide pre-grad pass."""
    import torch._inductor.config as inductor_config

    before = inductor_config.pre_grad_custom_pass
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq

    inductor_config.pre_grad_custom_pass = before
    return xiq


def _int8_inductor_config() -> dict[str, Any]:
    _import_x86_quantizer()
    from torchao.quantization.pt2e.inductor_passes.x86 import quant_lift_up

    # freezing constant-folds the int8 weights so inductor can swap in oneDNN int8 kernels
    return {"freezing": True, "pre_grad_custom_pass": quant_lift_up}


def _tag(
    graph: torch.fx.GraphModule, max_batch: int, input_shape: tuple[int, ...] | None
) -> torch.fx.GraphModule:
    graph.meta[_MAX_BATCH_KEY] = max_batch
    if input_shape is not None:
        graph.meta[_INPUT_SHAPE_KEY] = tuple(int(d) for d in input_shape)
    return graph


def _max_batch(graph: nn.Module) -> int:
    meta = getattr(graph, "meta", {})
    if _MAX_BATCH_KEY not in meta:
        raise ConfigError(
            "this module was not made by defectbench.compress.pt2e (no max_batch recorded); "
            "start from prepare_pt2e_int8 / prepare_qat_pt2e_int8"
        )
    return int(meta[_MAX_BATCH_KEY])
