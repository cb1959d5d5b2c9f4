"""INT8 ONNX models with ONNX Runtime quantization: static (calibrated, QDQ) and dynamic.

Both run ``quant_pre_process`` (shape inference and graph cleanup) first, as ONNX Runtime
recommends. Transformer graphs, recognised by LayerNormalization / Softmax / attention ops,
get only their Conv/Gemm/MatMul quantized unless the config names op types: quantizing
LayerNorm and Softmax is the usual cause of accuracy collapse. In static QDQ they also keep
the outputs of MatMul/Gemm in float: otherwise the attention scores are rounded to 8 bits
right before Softmax (and, measured on vit_tiny at 224 px, batch 1, on the 2-core dev CPU,
the int8 graph ran about a third slower: 31 ms against 23 ms).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defectbench.compress._io import check_not_blank, take_samples
from defectbench.errors import ArtifactError, ConfigError, DataError
from defectbench.io import atomic_path, scratch_dir_beside, sha256_file

CALIBRATION_METHODS: tuple[str, ...] = ("entropy", "minmax", "percentile")
INT8_TYPES: tuple[str, ...] = ("int8", "uint8")
# Any of these in the graph marks it as a transformer (DeiT/ViT export LayerNormalization
# and Softmax; ORT's fused graphs use Attention / MultiHeadAttention).
TRANSFORMER_MARKERS: tuple[str, ...] = (
    "Attention",
    "LayerNormalization",
    "MultiHeadAttention",
    "SkipLayerNormalization",
    "Softmax",
)
TRANSFORMER_SAFE_STATIC: tuple[str, ...] = ("Conv", "Gemm", "MatMul")
TRANSFORMER_FLOAT_OUTPUTS: tuple[str, ...] = ("Gemm", "MatMul")
# Dynamic quantization has integer kernels for Conv and MatMul only (no Gemm); quantize_dynamic
# itself rewrites Gemm into MatMul + Add (quant_pre_process keeps Gemm), so MatMul covers the
# linear layers.
TRANSFORMER_SAFE_DYNAMIC: tuple[str, ...] = ("Conv", "MatMul")
# OrtStaticInt8Config fields added after zoos were built, each with the value that makes what
# those zoos hold (see to_dict): left out of the key at that value, so those artifacts keep
# their keys, and present at any other, so a changed artifact gets a new key
_LATER_FIELDS = {
    "symmetric_activations": False,
    "quantize_bias": True,
    "float_model_output": False,
}
ENTROPY_QUANTIZED_BINS = 128  # ORT's and TensorRT's default quantized-histogram size


def _check_int8_type(field: str, value: str) -> None:
    if value not in INT8_TYPES:
        raise ConfigError(
            f"{field} {value!r} is not supported; valid choices: {', '.join(INT8_TYPES)}"
        )


def _check_op_types(op_types: tuple[str, ...] | None, registry: str) -> None:
    if op_types is None:
        return
    from onnxruntime.quantization import registry as ort_registry

    supported = sorted(getattr(ort_registry, registry))
    if not op_types:
        raise ConfigError("op_types is empty; pass None to let the graph decide")
    unknown = [op for op in op_types if op not in supported]
    if unknown:
        raise ConfigError(
            f"op_types {unknown} cannot be quantized this way; "
            f"valid choices: {', '.join(supported)}"
        )


@dataclass(frozen=True)
class OrtStaticInt8Config:
    """Static INT8 in QDQ format: per-channel int8 weights, uint8 activations (x86 VNNI/AMX).

    ``num_calibration`` samples are taken from the calibration batches (an error if fewer are
    given). ``op_types=None`` and ``float_output_op_types=None`` (op types whose outputs stay
    float) decide from the graph (see module doc). Entropy calibration
    searches the KL-optimal clipping threshold over a histogram of ``entropy_bins`` bins (ORT's
    own default of 128 equals the 128 quantized bins, which leaves one candidate: the min-max
    range); its search is pure Python and costs about (entropy_bins / 2) histogram passes per
    quantized tensor (over a minute for vit_tiny at 2048 bins on two cores). Entropy and
    percentile calibration keep every intermediate activation of every sample in memory: keep
    ``num_calibration`` modest (about 100 at 224 px).

    ``float_model_output`` keeps the output of the op that produces the model's output (the
    classifier's Gemm) in float: quantized, the logits land on a grid of at most 256 levels
    set by the calibration range (saturating outside it), so scores tie and the threshold that
    `dev` picks for a recall target moves in coarse steps, right where the recall gate works.
    The classifier still computes in INT8 (QGemm with a float output). A classifier that is a
    convolution followed by shape-only ops (a 1x1 Conv then Flatten: DLA, DPN, BiT) cannot be
    kept float by op type, since Conv occurs everywhere; that one node is left unquantized
    instead (``QuantReport.float_nodes``) and computes in float.

    ``symmetric_activations`` with ``activation_type='int8'`` gives every activation a zero
    point of 0, and ``quantize_bias=False`` keeps biases in float instead of int32 behind a
    DequantizeLinear: both are what TensorRT needs to build an engine from the QDQ graph
    (explicit quantization, int8 only); see ``TENSORRT_INT8``.
    """

    calibration: str = "minmax"
    per_channel: bool = True
    activation_type: str = "uint8"
    weight_type: str = "int8"
    op_types: tuple[str, ...] | None = None
    num_calibration: int = 128
    percentile: float = 99.999
    entropy_bins: int = 2048
    float_output_op_types: tuple[str, ...] | None = None
    reduce_range: bool = False
    symmetric_activations: bool = False
    quantize_bias: bool = True
    float_model_output: bool = True

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATION_METHODS:
            raise ConfigError(
                f"unknown calibration method {self.calibration!r}; valid choices: "
                f"{', '.join(CALIBRATION_METHODS)}"
            )
        _check_int8_type("activation_type", self.activation_type)
        _check_int8_type("weight_type", self.weight_type)
        if self.symmetric_activations and self.activation_type != "int8":
            raise ConfigError(
                "symmetric_activations needs activation_type 'int8' (a symmetric uint8 range "
                "wastes half its levels); set activation_type='int8'"
            )
        for field in ("op_types", "float_output_op_types"):
            if isinstance(getattr(self, field), list):
                object.__setattr__(self, field, tuple(getattr(self, field)))
        _check_op_types(self.op_types, "QDQRegistry")
        if self.float_output_op_types:
            _check_op_types(self.float_output_op_types, "QDQRegistry")
        if not isinstance(self.num_calibration, int) or self.num_calibration < 1:
            raise ConfigError(
                f"num_calibration must be a positive int, got {self.num_calibration!r}"
            )
        if not 90.0 <= self.percentile <= 100.0:
            raise ConfigError(f"percentile must be in [90, 100], got {self.percentile}")
        if not isinstance(self.entropy_bins, int) or self.entropy_bins < ENTROPY_QUANTIZED_BINS:
            raise ConfigError(
                f"entropy_bins must be an int >= {ENTROPY_QUANTIZED_BINS}, "
                f"got {self.entropy_bins!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        data = {
            **dataclasses.asdict(self),
            "op_types": _list_or_none(self.op_types),
            "float_output_op_types": _list_or_none(self.float_output_op_types),
        }
        # fields added later appear only when set, so zoos built before they existed keep
        # their keys (the dict is part of every variant's cache key)
        for name, default in _LATER_FIELDS.items():
            if data[name] == default:
                del data[name]
        return data


# Static INT8 that ONNX Runtime runs on CPU and TensorRT builds engines from (on x86 CPUs
# the default uint8 activations are the faster choice: VNNI multiplies u8 x s8)
TENSORRT_INT8 = OrtStaticInt8Config(
    activation_type="int8", symmetric_activations=True, quantize_bias=False
)


def tensorrt_compatible(config: OrtStaticInt8Config | OrtDynamicInt8Config) -> bool:
    """Whether TensorRT can build an INT8 engine from the QDQ graph this config makes.

    TensorRT's explicit quantization takes signed int8 with zero points of 0 only, for
    weights (ORT's weights are symmetric by default) and activations, and no int32 biases.
    """
    return (
        isinstance(config, OrtStaticInt8Config)
        and config.activation_type == "int8"
        and config.weight_type == "int8"
        and config.symmetric_activations
        and not config.quantize_bias
    )


@dataclass(frozen=True)
class OrtDynamicInt8Config:
    """Dynamic INT8: int8 weights, activations quantized per call; no calibration data.

    Suits linear-heavy models (ViT); ``matmul_const_b_only`` keeps activation x activation
    MatMuls (attention scores) in float.
    """

    per_channel: bool = False
    weight_type: str = "int8"
    op_types: tuple[str, ...] | None = None
    matmul_const_b_only: bool = True
    reduce_range: bool = False

    def __post_init__(self) -> None:
        _check_int8_type("weight_type", self.weight_type)
        if isinstance(self.op_types, list):
            object.__setattr__(self, "op_types", tuple(self.op_types))
        _check_op_types(self.op_types, "IntegerOpsRegistry")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "op_types": _list_or_none(self.op_types)}


@dataclass(frozen=True)
class QuantReport:
    """What an ORT quantization produced and from what."""

    method: str  # "ort_static_int8" | "ort_dynamic_int8"
    fp32_path: str
    out_path: str
    calibration: str | None
    num_calibration_samples: int
    op_types: tuple[str, ...] | None  # None: every op type ORT can quantize
    op_selection: str
    float_output_op_types: tuple[str, ...]  # static QDQ: ops whose outputs are not requantized
    transformer_ops: tuple[str, ...]
    quantize_nodes: int
    fp32_bytes: int
    int8_bytes: int
    sha256: str
    config: dict[str, Any]
    # static QDQ: nodes left unquantized so the output stays float (a classifier that is a
    # convolution followed by a reshape, whose op type occurs elsewhere too)
    float_nodes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "op_types": _list_or_none(self.op_types),
            "float_output_op_types": list(self.float_output_op_types),
            "transformer_ops": list(self.transformer_ops),
            "float_nodes": list(self.float_nodes),
        }


def transformer_ops_in(onnx_path: str | Path) -> tuple[str, ...]:
    """The transformer marker op types present in an ONNX graph, sorted."""
    return tuple(sorted(_op_types(onnx_path) & set(TRANSFORMER_MARKERS)))


def quantize_onnx_static(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration_batches: Iterable[np.ndarray],
    config: OrtStaticInt8Config | None = None,
) -> QuantReport:
    """Write a static INT8 (QDQ) copy of ``fp32_path`` to ``out_path``, calibrated on batches."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    config = config or OrtStaticInt8Config()
    fp32_path = _existing(fp32_path, out_path)
    batches = take_samples(calibration_batches, config.num_calibration, "calibration batch")
    count = sum(len(b) for b in batches)
    if count < config.num_calibration:
        raise ConfigError(
            f"calibration batches gave {count} samples but num_calibration is "
            f"{config.num_calibration}; pass more batches or lower num_calibration"
        )
    check_not_blank(batches, "calibration")
    _check_input_shape(fp32_path, batches)
    markers = transformer_ops_in(fp32_path)
    op_types, selection = _select_op_types(config.op_types, markers, TRANSFORMER_SAFE_STATIC)
    method = {
        "entropy": CalibrationMethod.Entropy,
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
    }[config.calibration]
    float_outputs = config.float_output_op_types
    if float_outputs is None:
        float_outputs = TRANSFORMER_FLOAT_OUTPUTS if markers else ()
    extra: dict[str, Any] = {}
    if config.calibration == "percentile":
        extra["CalibPercentile"] = config.percentile
    if config.symmetric_activations:
        extra["ActivationSymmetric"] = True
    if not config.quantize_bias:
        extra["QuantizeBias"] = False
    float_nodes: tuple[str, ...] = ()
    with (
        scratch_dir_beside(out_path) as scratch,
        atomic_path(out_path) as tmp,
        _failed_writes_named(fp32_path, scratch),
    ):
        pre = _pre_process(fp32_path, scratch)
        if config.float_model_output:
            # `pre` is a scratch copy: errors name the user's file
            behind_reshape = _output_compute_nodes_behind_shape_ops(pre, fp32_path.name)
            if behind_reshape:
                # a convolution classifier then a flatten (DLA, DPN, BiT): excluding the
                # flatten's op type would leave the convolution's output quantized, so the
                # classifier node itself stays float (one small convolution)
                float_nodes = tuple(sorted(behind_reshape))
            else:
                kept = _model_output_op_type(pre, set(float_outputs), fp32_path.name)
                float_outputs = tuple(sorted(set(float_outputs) | kept))
        extra["OpTypesToExcludeOutputQuantization"] = list(float_outputs)
        # one sample per call: the histogram calibrators (entropy, percentile) stack every
        # call's activations and need equal shapes, and a trimmed last batch would differ
        samples = [sample[None] for batch in batches for sample in batch]
        reader = _batch_reader(_input_name(pre), samples)
        cache = None
        if config.calibration == "entropy":
            # quantize_static cannot set the entropy histogram size: compute the ranges here
            # and hand them over as a calibration cache
            cache = scratch / "ranges.json"
            _entropy_ranges(pre, op_types, reader, config.entropy_bins, cache)
            reader = None
        quantize_static(
            str(pre),
            str(tmp),
            reader,
            calibration_cache_path=cache,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types) if op_types else None,
            per_channel=config.per_channel,
            reduce_range=config.reduce_range,
            activation_type=_quant_type(config.activation_type),
            weight_type=_quant_type(config.weight_type),
            calibrate_method=method,
            nodes_to_exclude=list(float_nodes),
            extra_options=extra,
        )
        quantize_nodes = _require_quantized(tmp, fp32_path, op_types)
        if config.float_model_output and "DequantizeLinear" in output_op_types(
            tmp, through_shape_ops=True
        ):
            raise ArtifactError(
                f"quantizing {fp32_path} left its output behind a DequantizeLinear, so the "
                "scores would be rounded to 8 bits although float_model_output is set; set "
                "float_model_output=False to accept that, or end the model in a quantizable "
                "op (Gemm, MatMul, Conv)"
            )
    return _report(
        "ort_static_int8",
        fp32_path,
        out_path,
        config.calibration,
        count,
        op_types,
        selection,
        tuple(float_outputs),
        markers,
        quantize_nodes,
        config.to_dict(),
        float_nodes,
    )


def quantize_onnx_dynamic(
    fp32_path: str | Path,
    out_path: str | Path,
    config: OrtDynamicInt8Config | None = None,
) -> QuantReport:
    """Write a dynamic INT8 copy of ``fp32_path`` to ``out_path``."""
    from onnxruntime.quantization import quantize_dynamic

    config = config or OrtDynamicInt8Config()
    fp32_path = _existing(fp32_path, out_path)
    markers = transformer_ops_in(fp32_path)
    op_types, selection = _select_op_types(config.op_types, markers, TRANSFORMER_SAFE_DYNAMIC)
    with (
        scratch_dir_beside(out_path) as scratch,
        atomic_path(out_path) as tmp,
        _failed_writes_named(fp32_path, scratch),
    ):
        pre = _pre_process(fp32_path, scratch)
        quantize_dynamic(
            str(pre),
            str(tmp),
            op_types_to_quantize=list(op_types) if op_types else None,
            per_channel=config.per_channel,
            reduce_range=config.reduce_range,
            weight_type=_quant_type(config.weight_type),
            extra_options={"MatMulConstBOnly": config.matmul_const_b_only},
        )
        quantize_nodes = _require_quantized(tmp, fp32_path, op_types)
    return _report(
        "ort_dynamic_int8",
        fp32_path,
        out_path,
        None,
        0,
        op_types,
        selection,
        (),
        markers,
        quantize_nodes,
        config.to_dict(),
    )


# --------------------------------------------------------------------------- internals


def _batch_reader(input_name: str, batches: list[np.ndarray]) -> Any:
    """An ONNX Runtime CalibrationDataReader over in-memory batches."""
    from onnxruntime.quantization import CalibrationDataReader

    class BatchReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches: Iterator[np.ndarray] = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

    return BatchReader()


def _entropy_ranges(
    model: Path, op_types: tuple[str, ...] | None, reader: Any, bins: int, cache: Path
) -> None:
    from onnxruntime.quantization.calibrate import (
        CalibrationMethod,
        create_calibrator,
        save_tensors_data,
    )

    calibrator = create_calibrator(
        model,
        list(op_types) if op_types else None,
        augmented_model_path=str(cache.with_name("augmented.onnx")),
        calibrate_method=CalibrationMethod.Entropy,
        extra_options={"num_bins": bins, "num_quantized_bins": ENTROPY_QUANTIZED_BINS},
    )
    calibrator.collect_data(reader)
    save_tensors_data(calibrator.compute_data(), cache)


def _select_op_types(
    requested: tuple[str, ...] | None, markers: tuple[str, ...], safe: tuple[str, ...]
) -> tuple[tuple[str, ...] | None, str]:
    if requested is not None:
        return requested, "config"
    if markers:
        return (
            safe,
            f"auto: transformer ops {', '.join(markers)} found, quantize {', '.join(safe)} only",
        )
    return None, "auto: no transformer ops, quantize every supported op"


# the working copies ONNX Runtime writes while quantizing (pre-processed, optimized,
# calibration-augmented models) take a few times the FP32 model's size
_WORKING_COPIES = 4


def _mib(size: int) -> str:
    # whole MiB, as disks are read, but a model of a few hundred kB is not "0 MiB"
    return f"{size / 2**20:.0f} MiB" if size >= 10 * 2**20 else f"{size / 2**20:.2g} MiB"


@contextlib.contextmanager
def _failed_writes_named(fp32_path: Path, scratch: Path) -> Iterator[None]:
    """ONNX Runtime writes its working copies of the model from C++ without reporting a
    failed write, so a full disk surfaced as protobuf's "Wire format was corrupt" traceback
    when the truncated copy was read back, which blames the model. Said for what it is: a
    full disk (OSError ENOSPC, which the CLI reports as one) when too little space is left,
    else a copy that could not be read back."""
    from google.protobuf.message import DecodeError

    try:
        yield
    except DecodeError as exc:
        free = shutil.disk_usage(scratch).free
        needed = _WORKING_COPIES * fp32_path.stat().st_size
        if free < needed:
            raise OSError(
                errno.ENOSPC,
                f"ONNX Runtime could not write its working copies of {fp32_path.name} while "
                f"quantizing it: {_mib(free)} are free there and it needs about "
                f"{_mib(needed)} (a truncated copy read back as {exc})",
                str(scratch.parent),
            ) from exc
        raise ArtifactError(
            f"ONNX Runtime wrote a working copy of {fp32_path} that it cannot read back "
            f"({exc}) while quantizing it, with {_mib(free)} free in "
            f"{scratch.parent}; check that disk, then build again (the FP32 model itself "
            "loads, or quantizing would have stopped before)"
        ) from exc


def _pre_process(fp32_path: Path, workdir: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = workdir / f"{fp32_path.stem}.pre.onnx"
    quant_pre_process(str(fp32_path), str(out))
    return out


# ops that mark a graph as already quantized (QDQ, QOperator or dynamic INT8)
_QUANTIZED_OPS = frozenset({
    "ConvInteger", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "QGemm",
    "QLinearConv", "QLinearMatMul", "QuantizeLinear",
})


def _existing(path: str | Path, out_path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(
            f"fp32 ONNX file {path} not found; export it first with "
            "defectbench.compress.export_onnx"
        )
    if Path(out_path).resolve() == path.resolve():
        # the report would also read the INT8 file's size as the fp32 one's
        raise ConfigError(
            f"out_path {out_path} is the fp32 model itself, which quantizing would overwrite; "
            "write the INT8 model to another file"
        )
    quantized = sorted(_op_types(path) & _QUANTIZED_OPS)
    if quantized:
        # ORT quantizes such a graph again (static) or only logs a warning (dynamic)
        raise ArtifactError(
            f"{path} is already quantized (it has {', '.join(quantized)} nodes); quantize the "
            "fp32 export of the model instead"
        )
    return path


# ops that only move or relabel values: an output behind them is still the op's before them
_SHAPE_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity"})


def _output_nodes(onnx_path: str | Path, through_shape_ops: bool) -> list[Any]:
    """The nodes producing the graph's outputs, or, through shape-only ops, the nodes whose
    values those ops pass on (the Conv behind a classifier's Flatten)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    found, pending, seen = [], [o.name for o in graph.output], set()
    while pending:
        node = producer.get(pending.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if through_shape_ops and node.op_type in _SHAPE_OPS:
            pending.append(node.input[0])  # the data input; the others are shapes or axes
        else:
            found.append(node)
    return found


def output_op_types(onnx_path: str | Path, through_shape_ops: bool = False) -> set[str]:
    """Op types of the nodes that produce the graph's outputs (a classifier's Gemm)."""
    return {node.op_type for node in _output_nodes(onnx_path, through_shape_ops)}


def _output_compute_nodes_behind_shape_ops(onnx_path: str | Path, shown_as: str) -> set[str]:
    """Names of the nodes whose outputs reach the graph's outputs only through shape-only
    ops; empty when the outputs come straight from a compute node (a Gemm classifier).
    `shown_as` names the graph in errors."""
    direct = {tuple(n.output) for n in _output_nodes(onnx_path, through_shape_ops=False)}
    behind = [n for n in _output_nodes(onnx_path, through_shape_ops=True)
              if tuple(n.output) not in direct]
    unnamed = [n.op_type for n in behind if not n.name]
    if unnamed:  # ORT excludes nodes by name
        raise ConfigError(
            f"the {', '.join(unnamed)} node(s) behind {shown_as}'s output have no "
            "name, so they cannot be kept float; set float_model_output=False"
        )
    return {n.name for n in behind}


def _model_output_op_type(onnx_path: Path, already_float: set[str], shown_as: str) -> set[str]:
    """The op type whose outputs ORT must leave unquantized so the model's output stays float.

    ORT excludes output quantization by op type, not by node: if the output's op type also
    occurs elsewhere, every node of it would keep a float output, which is another model than
    the one asked for; refuse rather than make it.
    """
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    types = output_op_types(onnx_path) - already_float
    repeated = {t: n for t in types if (n := sum(node.op_type == t for node in graph.node)) > 1}
    if repeated:
        listed = ", ".join(f"{t} ({n} nodes)" for t, n in sorted(repeated.items()))
        raise ConfigError(
            f"float_model_output keeps outputs float by op type, and the op type producing "
            f"{shown_as}'s output also occurs elsewhere: {listed}; set "
            "float_model_output=False, or name the op types to keep float in "
            "float_output_op_types"
        )
    return types


def _op_types(onnx_path: str | Path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(onnx_path), load_external_data=False).graph.node}


def _count_quantize_nodes(onnx_path: Path) -> int:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return sum(n.op_type in ("QuantizeLinear", "DynamicQuantizeLinear") for n in graph.node)


def _require_quantized(
    onnx_path: Path, fp32_path: Path, op_types: tuple[str, ...] | None
) -> int:
    """The quantize-node count; ArtifactError if there is none (the graph would run in float
    and be timed and gated as INT8)."""
    count = _count_quantize_nodes(onnx_path)
    if count == 0:
        present = sorted(_op_types(fp32_path))
        raise ArtifactError(
            f"quantizing {fp32_path} produced no QuantizeLinear node: op_types "
            f"{list(op_types) if op_types else 'default'} matched none of the graph's operators "
            f"({', '.join(present)}); set op_types to operators the graph has"
        )
    return count


def _check_input_shape(onnx_path: Path, batches: list[np.ndarray]) -> None:
    """DataError unless every calibration sample fits the graph's fixed input dimensions
    (ONNX Runtime would fail mid-calibration with "invalid dimensions")."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    graph_input = next(i for i in graph.input if i.name not in initializers)
    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in graph_input.type.tensor_type.shape.dim]
    wanted = tuple("?" if d is None else d for d in dims[1:])
    for batch in batches:
        got = batch.shape[1:]
        if len(got) != len(wanted) or any(
            w not in ("?", g) for w, g in zip(wanted, got, strict=True)
        ):
            raise DataError(
                f"calibration samples have shape {tuple(got)} (C, H, W) but {onnx_path.name} "
                f"takes {wanted}; calibrate on images preprocessed like the export example "
                "(same channels and size)"
            )


def _input_name(onnx_path: Path) -> str:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    return next(i.name for i in graph.input if i.name not in initializers)


def _quant_type(name: str) -> Any:
    from onnxruntime.quantization import QuantType

    return {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[name]


def _list_or_none(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


def _report(
    method: str,
    fp32_path: Path,
    out_path: str | Path,
    calibration: str | None,
    count: int,
    op_types: tuple[str, ...] | None,
    selection: str,
    float_outputs: tuple[str, ...],
    markers: tuple[str, ...],
    quantize_nodes: int,
    config: dict[str, Any],
    float_nodes: tuple[str, ...] = (),
) -> QuantReport:
    out_path = Path(out_path)
    return QuantReport(
        method=method,
        fp32_path=str(fp32_path),
        out_path=str(out_path),
        calibration=calibration,
        num_calibration_samples=count,
        op_types=op_types,
        op_selection=selection,
        float_output_op_types=float_outputs,
        transformer_ops=markers,
        quantize_nodes=quantize_nodes,
        fp32_bytes=fp32_path.stat().st_size,
        int8_bytes=out_path.stat().st_size,
        sha256=sha256_file(out_path),
        config=config,
        float_nodes=float_nodes,
    )
