"""One predict interface over every runnable artifact: eager/compiled torch and ONNX Runtime.

Inputs are float32 NCHW numpy batches that ``defectbench.data.preprocess`` already made, so
every runtime sees the same pixels; outputs are float32 ``(N, 2)`` logits, class 1 = defective.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from defectbench.errors import ArtifactError, ConfigError, DataError, UnknownNameError
from defectbench.runtime.precision import (
    CUDA_HINT,
    cudnn_autotuned,
    ieee_fp32_on_cuda,
    require_cuda,
    resolve_device,
    resolve_precision,
    torch_dtype,
)

NUM_CLASSES = 2


def defect_probability(logits: np.ndarray) -> np.ndarray:
    """``softmax(logits)[:, 1]`` as float32 ``(N,)``, computed without overflow."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != NUM_CLASSES:
        raise DataError(f"expected logits of shape (N, 2), got {logits.shape}")
    # softmax over two classes is the logistic function of the logit margin
    margin = logits[:, 1] - logits[:, 0]
    return (0.5 * (1.0 + np.tanh(0.5 * margin))).astype(np.float32)


class Predictor(abc.ABC):
    """A runnable classifier: float32 NCHW batch in, ``(N, 2)`` float32 logits out.

    Subclasses set ``name``, ``precision`` (fp32/bf16/fp16/int8), ``device`` (cpu/cuda),
    ``runtime`` and ``max_batch`` (largest batch one call may take, None = any), and implement
    ``_predict_batch``. Larger inputs are split into ``max_batch`` chunks.
    """

    name: str
    precision: str
    device: str
    runtime: str
    max_batch: int | None = None
    # (channels, height, width) of one image the artifact takes, None for a dimension it does
    # not fix; None when it does not say. Checked on each new batch shape, so a batch in another
    # layout or size is named here instead of failing deep inside the runtime (or, for an
    # eager CNN that takes any size, computing another function without a word)
    input_shape: tuple[int | None, int | None, int | None] | None = None
    # why this instance computes another function than the build whose dev threshold it is
    # judged at (a PT2E graph recalibrated at load into other parameters); None: the same
    differs_from_build: str | None = None

    @abc.abstractmethod
    def _predict_batch(self, x: np.ndarray) -> np.ndarray:
        """Logits for one batch of at most ``max_batch`` images."""

    # (batch shape, input_shape) of the last batch that passed _check_batch: a timed loop
    # feeds one shape, so it is checked once, not on every timed call
    _checked: tuple[tuple[int, ...], Any] | None = None

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        """Float32 ``(N, 2)`` logits for a float32 NCHW batch."""
        if not (type(x) is np.ndarray and x.dtype == np.float32
                and (x.shape, self.input_shape) == self._checked):
            _check_batch(x, self.name, self.input_shape)
            self._checked = (x.shape, self.input_shape)
        step = self.max_batch or len(x)
        chunks = [self._predict_batch(x[i : i + step]) for i in range(0, len(x), step)]
        logits = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        if logits.shape != (len(x), NUM_CLASSES):
            raise ArtifactError(
                f"predictor {self.name!r} returned logits of shape {logits.shape} for {len(x)} "
                f"images; expected ({len(x)}, {NUM_CLASSES}): the model must be a 2-class "
                "classifier (class 1 = defective)"
            )
        return np.ascontiguousarray(logits, dtype=np.float32)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Float32 ``(N,)`` defect probability, ``softmax(logits)[:, 1]``."""
        return defect_probability(self.predict_logits(x))

    def describe(self) -> dict[str, Any]:
        """What runs, for results JSON."""
        return {
            "name": self.name,
            "runtime": self.runtime,
            "precision": self.precision,
            "device": self.device,
            "max_batch": self.max_batch,
        }

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.describe().items())
        return f"{type(self).__name__}({fields})"


def _check_batch(x: Any, name: str, input_shape: tuple[int | None, ...] | None = None) -> None:
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 4 or len(x) == 0:
        got = (
            f"{type(x).__name__} {x.dtype} {x.shape}"
            if isinstance(x, np.ndarray)
            else type(x).__name__
        )
        raise DataError(
            f"predictor {name!r} needs a non-empty float32 NCHW numpy batch, got {got}; "
            "preprocess images with defectbench.data.preprocess first"
        )
    if input_shape is not None and any(
        want is not None and want != got for want, got in zip(input_shape, x.shape[1:], strict=True)
    ):
        raise DataError(_wrong_shape_message(name, input_shape, x.shape))


def _wrong_shape_message(name: str, input_shape: Sequence[int | None], got: tuple) -> str:
    wanted = "(" + ", ".join("any" if d is None else str(d) for d in input_shape) + ")"
    channels = input_shape[0]
    layout = (
        " (channels last? the batch must be NCHW: x.transpose(0, 3, 1, 2))"
        if channels is not None and got[1] != channels and got[3] == channels
        else ""
    )
    return (
        f"predictor {name!r} takes images of shape (C, H, W) = {wanted}, got a batch of shape "
        f"{tuple(got)}{layout}; preprocess them with the artifact's own Preprocess "
        "(Catalog.preprocess(variant): its size, mean and std)"
    )


# --------------------------------------------------------------------------- torch


def is_quantized_module(model: nn.Module) -> bool:
    """True when ``model`` holds quantized ops (a converted PT2E graph) or int8 weights."""
    for module in model.modules():
        graph = getattr(module, "graph", None)
        if isinstance(graph, torch.fx.Graph) and any(
            str(node.target).startswith(("quantized_decomposed.", "onednn.", "torchao."))
            for node in graph.nodes
            if node.op == "call_function"
        ):
            return True
    return any(
        t.dtype in (torch.int8, torch.uint8) or type(t).__module__.startswith("torchao")
        for t in [*model.parameters(), *model.buffers()]
    )


_MAX_STATIC_GRAPHS = 64


def _autocast_weight_types() -> tuple[type, ...]:
    from timm.layers import Conv2dSame
    from timm.layers import Linear as TimmLinear

    return (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, Conv2dSame, TimmLinear)


def cast_autocast_weights(model: nn.Module, dtype: torch.dtype) -> int:
    """Store in ``dtype`` the weights that autocast would cast to it on every call; returns how
    many modules were cast.

    Autocast caches the casts of a model's weights only until its context exits, so a
    predictor that enters it per call paid for converting every convolution and linear
    weight on every call (on CUDA, one extra kernel per tensor): that timed the conversion,
    not the model. Convolutions and linear layers are on autocast's lower-precision list on
    CPU and CUDA, so their outputs are bit for bit what autocast computes from fp32 weights.
    Only these exact classes are cast: a subclass may use its weight elsewhere first (timm's
    StdConv2d normalises it), and stays fp32 for autocast to cast per call.
    """
    types = _autocast_weight_types()
    modules = [m for m in model.modules() if type(m) in types]
    for module in modules:
        module.to(dtype)
    return len(modules)


class TorchPredictor(Predictor):
    """Runs an ``nn.Module`` in eval mode under ``torch.inference_mode``.

    ``precision``: fp32; bf16 (autocast, AMX on recent Xeons and CUDA); fp16 (autocast, CUDA
    only); int8 (the module must already be quantized, see ``defectbench.compress.pt2e``).
    The module is moved to ``device`` and, with ``channels_last``, to channels-last memory
    format in place; at bf16/fp16 its convolution and linear weights are cast in place once
    (``cast_autocast_weights``: the same outputs as autocast from fp32 weights, without a
    conversion on every call), so pass a copy to keep using the model in fp32 (the zoo's
    catalog loads a fresh module for every predictor). ``compile`` wraps it in
    ``torch.compile`` (compiled on the first call of each batch size, into a static-shape
    graph);
    ``inductor_config`` is applied with ``torch._inductor.config.patch`` around every call, so
    settings such as ``freezing`` stay local to this predictor instead of process-wide.
    ``input_shape`` (channels, height, width; None for any) is checked on each new batch
    shape; without it an exported graph's (PT2E) is read from the graph, while an eager CNN
    takes any size.
    """

    def __init__(
        self,
        model: nn.Module,
        device: str = "cpu",
        precision: str = "fp32",
        *,
        channels_last: bool = True,
        compile: bool = False,
        compile_mode: str | None = None,
        inductor_config: Mapping[str, Any] | None = None,
        max_batch: int | None = None,
        input_shape: Sequence[int | None] | None = None,
        name: str | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision)
        self.runtime = "torch_compile" if compile else "torch"
        self.name = name or f"{type(model).__name__}.{self.runtime}.{self.precision}.{self.device}"
        self.max_batch = _check_max_batch(max_batch)
        self.input_shape = (
            _graph_input_shape(model) if input_shape is None else _check_input_shape(input_shape)
        )
        self.channels_last = channels_last
        if self.device == "cuda":
            require_cuda(f"TorchPredictor {self.name!r} on device 'cuda'")
        if self.precision == "fp16" and self.device != "cuda":
            raise ConfigError(
                f"TorchPredictor {self.name!r}: fp16 runs on CUDA only; on CPU use bf16 (AMX) or "
                f"fp32, or {CUDA_HINT}"
            )
        if self.precision == "int8" and not is_quantized_module(model):
            raise ConfigError(
                f"TorchPredictor {self.name!r}: precision 'int8' needs an already quantized "
                "module; build one with defectbench.compress.pt2e (prepare, calibrate, convert)"
            )
        if self.precision == "int8" and self.device != "cpu":
            raise ConfigError(
                f"TorchPredictor {self.name!r}: PT2E int8 (X86InductorQuantizer) runs on CPU "
                "only; use device='cpu' or an ONNX Runtime int8 artifact"
            )
        self._autocast_dtype = (
            None if self.precision in ("fp32", "int8") else torch_dtype(self.precision)
        )
        self._inductor_config = dict(inductor_config or {})
        model.eval()
        model.to(self.device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        if self._autocast_dtype is not None:
            cast_autocast_weights(model, self._autocast_dtype)
        self.model = model
        # dynamic=False: one static graph per batch size. The default recompiles a second batch
        # size as a dynamic-shape graph that every later size reuses, so what batch 32 timed
        # would depend on which batch sizes ran before it.
        self._run = torch.compile(model, mode=compile_mode, dynamic=False) if compile else model
        self._compiled = compile

    def _predict_batch(self, x: np.ndarray) -> np.ndarray:
        # ascontiguousarray: torch refuses negative strides (a flipped view), ORT copes
        tensor = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
        if self.channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.inference_mode())
            if self._inductor_config:
                import torch._inductor.config as inductor_config

                stack.enter_context(inductor_config.patch(self._inductor_config))
            if self._compiled:
                import torch._dynamo.config as dynamo_config

                # a static graph per batch size: suite sizes plus the last partial batches of
                # dev and val; past dynamo's default of 8 it would fall back to eager silently
                stack.enter_context(dynamo_config.patch(recompile_limit=_MAX_STATIC_GRAPHS))
            if self.device == "cuda":
                stack.enter_context(cudnn_autotuned())
            if self._autocast_dtype is not None:
                stack.enter_context(torch.autocast(self.device, dtype=self._autocast_dtype))
            elif self.device == "cuda" and self.precision == "fp32":
                stack.enter_context(ieee_fp32_on_cuda())
            try:
                logits = self._run(tensor)
            except RuntimeError as exc:
                # an eager module fixes no input shape up front; its first layer tells what
                # a wrong channel count (an NHWC batch, grey images) ran into
                channels = _first_conv_channels(self.model)
                if channels is not None and x.shape[1] != channels:
                    raise DataError(
                        _wrong_shape_message(self.name, (channels, None, None), x.shape)
                    ) from exc
                raise
        logits = logits.float()
        if self.device == "cuda":
            # kernels run asynchronously; wait so a timer around this call sees the real work
            torch.cuda.synchronize()
        return logits.cpu().numpy()

    def describe(self) -> dict[str, Any]:
        described = {**super().describe(), "channels_last": self.channels_last}
        if self._compiled:
            described["compiled_shapes"] = "static per batch size"
        return described


def _check_max_batch(max_batch: int | None) -> int | None:
    if max_batch is not None and not _is_positive_int(max_batch):
        raise ConfigError(f"max_batch must be a positive int or None, got {max_batch!r}")
    return max_batch


def _is_positive_int(value: Any) -> bool:
    # bool is an int to Python, but max_batch=True is a mistake, not a batch of 1
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_input_shape(input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
    shape = tuple(input_shape) if isinstance(input_shape, Sequence) else ()
    if len(shape) != 3 or not all(d is None or _is_positive_int(d) for d in shape):
        raise ConfigError(
            f"input_shape must be (channels, height, width) of positive ints or None (any), "
            f"got {input_shape!r}"
        )
    return shape


def _graph_input_shape(model: nn.Module) -> tuple[int | None, ...] | None:
    """(C, H, W) the module fixes: an exported graph's (PT2E) traced shape, a timm ViT's
    image size; None for a module that takes any size (a CNN) or does not say.

    torch.export records each input's shape on its placeholder node; a dynamic dimension
    (the batch) is a symbol there, not an int."""
    graph = getattr(model, "graph", None)
    if isinstance(graph, torch.fx.Graph):
        for node in graph.nodes:
            value = node.meta.get("val") if node.op == "placeholder" else None
            if isinstance(value, torch.Tensor) and value.dim() == 4:
                return tuple(d if isinstance(d, int) else None for d in value.shape[1:])
        return None
    embed = getattr(model, "patch_embed", None)
    size = getattr(embed, "img_size", None)
    proj = getattr(embed, "proj", None)
    if getattr(embed, "strict_img_size", False) and isinstance(proj, nn.Conv2d) and size:
        return (int(proj.in_channels), int(size[0]), int(size[1]))
    return None


def _first_conv_channels(model: nn.Module) -> int | None:
    """Input channels of the model's first convolution (a CNN's stem, a ViT's patch embedding)."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return None if conv is None else int(conv.in_channels)


# --------------------------------------------------------------------------- ONNX Runtime

PROVIDER_ALIASES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
_GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
_INT8_OPS = frozenset(
    {
        "QuantizeLinear",
        "DynamicQuantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "MatMulInteger",
        "ConvInteger",
    }
)


def resolve_providers(providers: str | Sequence[str]) -> tuple[str, ...]:
    """ONNX Runtime provider names for aliases (cpu, cuda, tensorrt) or full names.

    Raises UnknownNameError for a name ONNX Runtime does not know and ConfigError, saying how
    to enable it, for one this onnxruntime build cannot use.
    """
    import onnxruntime as ort

    names = (providers,) if isinstance(providers, str) else tuple(providers)
    if not names:
        raise ConfigError("providers is empty; pass e.g. ('cpu',) or ('tensorrt', 'cuda', 'cpu')")
    known = set(ort.get_all_providers())
    resolved = []
    for raw in names:
        full = PROVIDER_ALIASES.get(str(raw).strip().lower(), str(raw).strip())
        if full not in known:
            raise UnknownNameError(
                f"unknown ONNX Runtime provider {raw!r}; valid aliases: "
                f"{', '.join(PROVIDER_ALIASES)}, or a full name such as 'CPUExecutionProvider'"
            )
        resolved.append(full)
    reason = missing_providers_reason(resolved, ort.get_available_providers())
    if reason:
        raise ConfigError(reason)
    return tuple(resolved)


# The GPU build of ONNX Runtime is a different wheel that owns the same `onnxruntime` module:
# the CPU wheel has to go first, or the two overwrite each other's files.
# The versions matter: onnxruntime-gpu on PyPI is built for CUDA 12 up to 1.26 and for CUDA 13
# (torch's cu130 libraries) from 1.27, and its TensorRT provider needs libnvinfer.so.10 while
# an unpinned `pip install tensorrt` installs TensorRT 11.
ORT_GPU_REQUIREMENTS = ("onnxruntime-gpu>=1.27", "tensorrt>=10,<11")
ORT_GPU_INSTALL = (
    "`pip uninstall -y onnxruntime && pip install onnxruntime-gpu tensorrt` at the versions "
    "`tox -e gpu` installs: `pip install "
    + " ".join(f'"{r}"' for r in ORT_GPU_REQUIREMENTS) + "`"
)
# the shared libraries ONNX Runtime's TensorRT provider (libonnxruntime_providers_tensorrt.so)
# is linked against: both have to load, at TensorRT 10's sonames
TENSORRT_SONAMES = ("libnvinfer.so.10", "libnvonnxparser.so.10")


def missing_providers_reason(providers: Sequence[str], available: Sequence[str]) -> str | None:
    """Why these ONNX Runtime providers cannot run here and how to enable them; None if they can.

    ``providers`` are full names; ``available`` is ``onnxruntime.get_available_providers()``.
    """
    missing = [p for p in providers if p not in available]
    if not missing:
        return None
    hint = (
        f"on a GPU host, install the GPU build: {ORT_GPU_INSTALL}"
        if set(missing) & set(_GPU_PROVIDERS)
        else "install an onnxruntime build that ships it"
    )
    names = (f"providers {', '.join(missing)} are" if len(missing) > 1
             else f"provider {missing[0]} is")
    return (
        f"ONNX Runtime {names} not available in this onnxruntime build "
        f"(available: {', '.join(available)}); {hint}"
    )


def tensorrt_library_reason() -> str | None:
    """Why TensorRT's runtime library cannot be loaded here, with the fix; None if it can.

    onnxruntime-gpu lists TensorrtExecutionProvider whether or not libnvinfer loads. The pip
    `tensorrt` wheel keeps the library outside the loader's search path; importing the wheel
    loads it into the process, where ONNX Runtime's own dlopen then finds it by soname.
    """
    import ctypes

    with contextlib.suppress(ImportError):
        import tensorrt  # noqa: F401
    # versioned sonames only: an unversioned libnvinfer.so (a system TensorRT's dev package)
    # may be TensorRT 11, which the provider cannot use
    for soname in TENSORRT_SONAMES:
        try:
            ctypes.CDLL(soname)
        except OSError:
            return (
                f"TensorRT's library ({soname}) does not load: `pip install tensorrt` at "
                f'version 10 (`pip install "{ORT_GPU_REQUIREMENTS[1]}"`, what `tox -e gpu` '
                "does) or put TensorRT 10's lib/ directory on LD_LIBRARY_PATH"
            )
    return None


def execution_unavailable_reason(providers: Sequence[str]) -> str | None:
    """Why this host cannot run these ONNX Runtime providers (full names), with the fix."""
    import onnxruntime as ort

    reason = missing_providers_reason(providers, ort.get_available_providers())
    if reason is None and PROVIDER_ALIASES["tensorrt"] in providers:
        reason = tensorrt_library_reason()
    return reason


# TensorRT engines get one explicit optimization profile: batch 1 to this, tuned for it (the
# quality pass's batch and the suite's largest default). Without one, ONNX Runtime grows the
# profile from the shapes it has seen and tunes for the largest so far, so which engine a
# batch-1 case was timed on depended on the cases run before it and on the engine cache.
TENSORRT_MAX_BATCH = 32


def tensorrt_profile_shapes(onnx_path: str | Path, max_batch: int = TENSORRT_MAX_BATCH) -> dict:
    """ONNX Runtime's ``trt_profile_{min,opt,max}_shapes`` for a graph whose only dynamic
    dimension is the batch: min 1, opt and max ``max_batch``."""
    proto = load_onnx_proto(onnx_path)
    initializers = {t.name for t in proto.graph.initializer}
    shapes: dict[str, list[str]] = {"min": [], "opt": [], "max": []}
    for graph_input in proto.graph.input:
        if graph_input.name in initializers:
            continue
        dims = graph_input.type.tensor_type.shape.dim
        rest = [d.dim_value if d.HasField("dim_value") else None for d in dims[1:]]
        if not dims or None in rest:
            raise ConfigError(
                f"{onnx_path}: input {graph_input.name!r} has dynamic dimensions besides the "
                "batch; TensorRT engines here are built for fixed image sizes; re-export the "
                "model with a fixed input size"
            )
        tail = "".join(f"x{d}" for d in rest)
        fixed = dims[0].dim_value if dims[0].HasField("dim_value") else None
        # a graph exported with a fixed batch takes only that batch
        for key, batch in (("min", fixed or 1), ("opt", fixed or max_batch),
                           ("max", fixed or max_batch)):
            shapes[key].append(f"{graph_input.name}:{batch}{tail}")
    return {f"trt_profile_{key}_shapes": ",".join(value) for key, value in shapes.items()}


def tensorrt_environment() -> str:
    """What a cached TensorRT engine is only valid for: ONNX Runtime's and TensorRT's versions
    and the GPU (ONNX Runtime's docs: clear the cache when any of them changes)."""
    import onnxruntime as ort

    try:
        import tensorrt

        trt_version = tensorrt.__version__
    except ImportError:
        trt_version = "none"
    gpu = "nogpu"
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        gpu = f"{torch.cuda.get_device_name()}-sm{major}{minor}"
    tag = f"ort{ort.__version__}-trt{trt_version}-{gpu}"
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in tag)


@dataclass(frozen=True)
class OrtExecution:
    """Which ONNX Runtime providers run an ONNX artifact at a precision on a device, and how."""

    providers: tuple[str, ...]
    provider_options: tuple[dict[str, Any], ...] | None = None


def ort_execution(
    precision: str,
    device: str,
    engine_cache: Path | None = None,
    profile_shapes: Mapping[str, str] | None = None,
) -> OrtExecution:
    """The providers for an ONNX artifact at ``precision`` on ``device``.

    CPU: the CPU provider runs the graph as it is (fp32, or int8 QDQ). CUDA: fp32 on the CUDA
    provider with TF32 off (its default is on; fp32 should mean fp32, as in torch); fp16 and
    int8 through TensorRT, which builds fp16 engines from the fp32 graph and int8 engines from
    a QDQ graph with zero points of 0 (explicit quantization), and hands what it cannot take
    to the CUDA provider. TensorRT engines take tens of seconds to build and are cached in
    ``engine_cache`` when given. ONNX Runtime names cached engines by graph topology and
    names, not weights: give every artifact its own ``engine_cache``. ``profile_shapes``
    (``tensorrt_profile_shapes``) fixes the engines' optimization profile.
    """
    # the names every other entry point takes ("FP32", "gpu"), not only the canonical ones;
    # a name no alias covers is refused below, saying what this function can run
    with contextlib.suppress(UnknownNameError):
        precision = resolve_precision(precision)
    with contextlib.suppress(UnknownNameError):
        device = resolve_device(device)
    if device == "cpu":
        if precision not in ("fp32", "int8"):
            raise ConfigError(
                f"ONNX Runtime on cpu runs the graph's own precision (fp32 or int8), not "
                f"{precision!r}; use the torch variant for bf16 on cpu"
                + (", or device 'cuda' (TensorRT) for fp16" if precision == "fp16" else "")
            )
        return OrtExecution((PROVIDER_ALIASES["cpu"],))
    if device != "cuda":
        raise ConfigError(f"unknown device {device!r} for ONNX Runtime; use cpu or cuda")
    if precision == "fp32":
        return OrtExecution((PROVIDER_ALIASES["cuda"],), ({"use_tf32": 0},))
    if precision not in ("fp16", "int8"):
        raise ConfigError(
            f"no ONNX Runtime path for {precision!r} on cuda; choose fp32, fp16 or int8"
        )
    trt: dict[str, Any] = {
        "trt_fp16_enable": precision == "fp16",
        "trt_int8_enable": precision == "int8",  # a QDQ graph needs no calibration table
    }
    if engine_cache is not None:
        trt.update(
            trt_engine_cache_enable=True,
            trt_engine_cache_path=str(engine_cache),
            trt_timing_cache_enable=True,
            trt_timing_cache_path=str(engine_cache),
        )
    trt.update(profile_shapes or {})
    # nodes TensorRT hands back run on the CUDA provider: fp32 there too, not TF32
    return OrtExecution(
        (PROVIDER_ALIASES["tensorrt"], PROVIDER_ALIASES["cuda"]), (trt, {"use_tf32": 0})
    )


def load_onnx_proto(model_path: str | Path) -> Any:
    """The ModelProto of an ONNX file (weights stored outside it not read); ArtifactError
    for a file that is not one: truncated, damaged, empty or another kind of file."""
    import onnx
    from google.protobuf.message import DecodeError

    fix = (
        "it may be truncated or damaged, or not an ONNX model; re-copy it or export it again "
        "(defectbench.compress.export_onnx; for a zoo variant, delete its folder and rebuild it)"
    )
    try:
        proto = onnx.load(str(model_path), load_external_data=False)
    except (DecodeError, ValueError, OSError) as exc:
        raise ArtifactError(
            f"ONNX file {model_path} cannot be read ({type(exc).__name__}: {exc}); {fix}"
        ) from exc
    # protobuf reads an empty file, and some foreign bytes, as a model without a graph
    if not proto.graph.node or not proto.graph.output:
        raise ArtifactError(f"ONNX file {model_path} holds no graph; {fix}")
    return proto


def onnx_precision(model_path: str | Path) -> str:
    """fp32, fp16 or int8: what an ONNX graph computes in, read from its ops and inputs."""
    import onnx

    proto = load_onnx_proto(model_path)
    if any(node.op_type in _INT8_OPS for node in proto.graph.node):
        return "int8"
    input_types = {i.type.tensor_type.elem_type for i in proto.graph.input}
    if onnx.TensorProto.FLOAT16 in input_types:
        return "fp16"
    return "fp32"


class OrtPredictor(Predictor):
    """Runs an ONNX file with an ONNX Runtime InferenceSession.

    ``providers`` in priority order (aliases cpu / cuda / tensorrt or full names); a provider
    that is not available raises instead of silently falling back to CPU. ``precision`` is
    read from the graph (int8 when it holds quantize ops) unless TensorRT is told to build fp16
    engines (``provider_options`` with ``trt_fp16_enable``).
    """

    def __init__(
        self,
        onnx_path: str | Path,
        providers: str | Sequence[str] = ("cpu",),
        *,
        intra_op_threads: int | None = None,
        provider_options: Sequence[Mapping[str, Any]] | None = None,
        max_batch: int | None = None,
        name: str | None = None,
    ) -> None:
        import onnxruntime as ort

        path = Path(onnx_path)
        max_batch = _check_max_batch(max_batch)
        if not path.is_file():
            raise ArtifactError(
                f"ONNX file {path} not found; build it with defectbench.compress.export_onnx"
            )
        self.providers = resolve_providers(providers)
        if PROVIDER_ALIASES["tensorrt"] in self.providers:
            reason = tensorrt_library_reason()  # also loads the pip wheel's libnvinfer
            if reason:
                raise ConfigError(reason)
        if intra_op_threads is not None and not _is_positive_int(intra_op_threads):
            raise ConfigError(
                f"intra_op_threads must be an int >= 1, or None for ONNX Runtime's default; "
                f"got {intra_op_threads!r}"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads is not None:
            options.intra_op_num_threads = intra_op_threads
        if provider_options is not None and len(provider_options) != len(self.providers):
            raise ConfigError(
                f"provider_options has {len(provider_options)} entries for "
                f"{len(self.providers)} providers; give one mapping per provider"
            )
        try:
            self.session = ort.InferenceSession(
                str(path),
                sess_options=options,
                providers=list(self.providers),
                provider_options=[dict(o) for o in provider_options] if provider_options else None,
            )
        except Exception as exc:
            if not type(exc).__module__.startswith("onnxruntime"):
                raise
            # a damaged file is named by the ONNX reader, not ONNX Runtime's protobuf error.
            # Read here, after a failure, not before the session: the proto is read after it
            # (for the precision) as in the runs committed so far, whose load RAM it is in
            load_onnx_proto(path)
            gpu = set(self.providers) & set(_GPU_PROVIDERS)
            raise ArtifactError(
                f"ONNX Runtime cannot load {path} with {', '.join(self.providers)} "
                f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''})"
                "; the graph may be damaged or made by a newer exporter: export it again "
                "(for a zoo variant, delete its folder and rebuild it)"
                + (f", or check the CUDA/TensorRT libraries ({CUDA_HINT})" if gpu else "")
            ) from exc
        # a provider that fails inside run() makes ORT retry on the others and keep them for
        # the session's life: the case would go on being timed on CUDA or CPU under its
        # TensorRT label. Off: such a failure raises
        self.session.disable_fallback()
        # ORT drops a provider whose libraries fail to load and carries on with CPU
        missing = [p for p in self.providers if p not in self.session.get_providers()]
        if missing:
            raise ConfigError(
                f"ONNX Runtime could not start {', '.join(missing)} for {path} (session has "
                f"{', '.join(self.session.get_providers())}); check the CUDA/TensorRT libraries "
                f"and {CUDA_HINT}"
            )
        self.path = path
        self.intra_op_threads = intra_op_threads
        trt_options = dict((provider_options or [{}])[0]) if self.providers[0] == \
            _GPU_PROVIDERS[1] else {}
        self._tensorrt_profile = {
            k.removeprefix("trt_profile_").removesuffix("_shapes"): v
            for k, v in trt_options.items() if k.startswith("trt_profile_")
        }
        self.device = "cuda" if self.providers[0] in _GPU_PROVIDERS else "cpu"
        self.precision = onnx_precision(path)
        trt_fp16 = any(
            str((o or {}).get("trt_fp16_enable", "")).lower() in ("1", "true")
            for o in (provider_options or ())
        )
        if self.precision == "fp32" and trt_fp16 and self.providers[0] == _GPU_PROVIDERS[1]:
            self.precision = "fp16"
        self.runtime = "onnxruntime"
        self.name = name or f"{path.stem}.onnxruntime.{self.precision}.{self.device}"
        graph_input = _image_input(self.session, path)
        self.input_name = graph_input.name
        # a named (symbolic) dimension is dynamic: any size
        self.input_shape = tuple(d if isinstance(d, int) else None for d in graph_input.shape[1:])
        batch_dim = graph_input.shape[0]
        # a graph exported with a fixed batch takes exactly that batch; a dynamic one takes
        # `max_batch` at most (a TensorRT engine's profile ends there)
        self._fixed_batch = batch_dim if isinstance(batch_dim, int) else None
        self.max_batch = self._fixed_batch or max_batch
        self._input_dtype = np.float16 if "float16" in graph_input.type else np.float32

    def _predict_batch(self, x: np.ndarray) -> np.ndarray:
        if self._fixed_batch is not None and len(x) != self._fixed_batch:
            raise DataError(
                f"{self.path} was exported with a fixed batch of {self._fixed_batch}, got a "
                f"chunk of {len(x)}; re-export with OnnxExportConfig(dynamic_batch=True)"
            )
        feed = {self.input_name: x.astype(self._input_dtype, copy=False)}
        return self.session.run(None, feed)[0].astype(np.float32, copy=False)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "providers": list(self.providers),
            "intra_op_threads": self.intra_op_threads,
            **({"tensorrt_profile": self._tensorrt_profile} if self._tensorrt_profile else {}),
            "path": str(self.path),
        }


def _image_input(session: Any, path: Path) -> Any:
    """The graph's one input, checked to be an NCHW image batch with (N, 2) logits out: a
    graph that is not a defectbench export is named when it is opened, not at its first call."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    problem = None
    if len(inputs) != 1:
        problem = f"has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}), not 1"
    elif len(inputs[0].shape or ()) != 4:
        problem = f"takes input {inputs[0].name!r} of shape {inputs[0].shape}, not (N, C, H, W)"
    elif (
        not outputs
        or outputs[0].shape is None
        or len(outputs[0].shape) != 2
        or (isinstance(outputs[0].shape[1], int) and outputs[0].shape[1] != NUM_CLASSES)
    ):
        got = outputs[0].shape if outputs else "nothing"
        problem = f"returns {got}, not (N, {NUM_CLASSES}) logits"
    if problem:
        raise ArtifactError(
            f"ONNX graph {path} {problem}: it is not a 2-class image classifier exported by "
            "defectbench (class 1 = defective); export the model with "
            "defectbench.compress.export_onnx"
        )
    return inputs[0]
