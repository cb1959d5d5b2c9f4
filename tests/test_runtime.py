"""Precision / device parsing and the predict interface (torch and ONNX Runtime)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import scipy.special
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from defectbench.errors import ArtifactError, ConfigError, DataError, UnknownNameError
from defectbench.runtime import (
    CUDA_SKIP_REASON,
    PRECISIONS,
    OrtPredictor,
    TorchPredictor,
    cast_autocast_weights,
    cuda_available,
    defect_probability,
    resolve_device,
    resolve_precision,
    torch_dtype,
)

requires_cuda = pytest.mark.skipif(not cuda_available(), reason=CUDA_SKIP_REASON)
without_cuda = pytest.mark.skipif(cuda_available(), reason="checks the no-CUDA error path")


class TinyNet(nn.Module):
    """Conv + BN + pooled linear head: enough to exercise every predictor path quickly."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def tiny_net(num_classes: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return TinyNet(num_classes).eval()


@pytest.fixture
def batch() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((5, 3, 16, 16)).astype(np.float32)


def reference_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("raw", "canonical"),
    sorted(
        {
            "fp32": "fp32",
            "FP32": "fp32",
            "float32": "fp32",
            "bf16": "bf16",
            "bfloat16": "bf16",
            "fp16": "fp16",
            "half": "fp16",
            " int8 ": "int8",
        }.items()
    ),
)
def test_resolve_precision_accepts_aliases(raw: str, canonical: str) -> None:
    assert resolve_precision(raw) == canonical


def test_resolve_precision_lists_valid_choices() -> None:
    with pytest.raises(
        UnknownNameError,
        match=r"unknown precision 'fp8'; valid choices: "
        r"bf16, fp16, fp32, int8",
    ):
        resolve_precision("fp8")


@pytest.mark.parametrize(
    ("raw", "canonical"), [("CPU", "cpu"), ("cuda", "cuda"), ("cuda:0", "cuda")]
)
def test_resolve_device(raw: str, canonical: str) -> None:
    assert resolve_device(raw) == canonical


def test_resolve_device_lists_valid_choices() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown device 'tpu'; valid choices: cpu, cuda"):
        resolve_device("tpu")


def test_torch_dtype() -> None:
    assert torch_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(ConfigError, match="precision 'int8' has no torch float dtype"):
        torch_dtype("int8")


def test_precisions_are_sorted() -> None:
    assert list(PRECISIONS) == sorted(PRECISIONS)


# --------------------------------------------------------------------------- probabilities


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 8), st.just(2)), elements=st.floats(-500, 500)))
def test_defect_probability_matches_scipy_softmax(logits: np.ndarray) -> None:
    expected = scipy.special.softmax(logits, axis=1)[:, 1]
    got = defect_probability(logits)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_defect_probability_rejects_wrong_shape() -> None:
    with pytest.raises(DataError, match=r"expected logits of shape \(N, 2\), got \(3, 3\)"):
        defect_probability(np.zeros((3, 3)))


# --------------------------------------------------------------------------- torch


def test_torch_predictor_fp32_matches_module(batch: np.ndarray) -> None:
    model = tiny_net()
    expected = reference_logits(model, batch)
    predictor = TorchPredictor(model, name="tiny")
    logits = predictor.predict_logits(batch)
    assert logits.dtype == np.float32 and logits.shape == (5, 2)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        predictor.predict_proba(batch), scipy.special.softmax(expected, axis=1)[:, 1], atol=1e-6
    )
    assert predictor.describe() == {
        "name": "tiny",
        "runtime": "torch",
        "precision": "fp32",
        "device": "cpu",
        "max_batch": None,
        "channels_last": True,
    }


def test_torch_predictor_takes_a_flipped_view(batch: np.ndarray) -> None:
    # a horizontally flipped view has a negative stride, which torch.from_numpy refuses
    model = tiny_net()
    flipped = batch[..., ::-1]
    np.testing.assert_allclose(TorchPredictor(model).predict_logits(flipped),
                               reference_logits(model, flipped.copy()), rtol=1e-5, atol=1e-5)


def test_torch_predictor_splits_into_max_batch_chunks(batch: np.ndarray) -> None:
    model = tiny_net()
    seen: list[int] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))
    whole = TorchPredictor(model).predict_logits(batch)
    assert seen == [5]
    seen.clear()
    chunked = TorchPredictor(model, max_batch=2).predict_logits(batch)
    assert seen == [2, 2, 1]  # the model never got more than max_batch images at once
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


def test_torch_predictor_puts_a_model_left_in_training_mode_in_eval_mode(
    batch: np.ndarray,
) -> None:
    # in training mode BatchNorm normalises each batch by its own statistics: the scores of an
    # image would depend on the other images in its batch
    model = tiny_net()
    expected = reference_logits(model, batch)
    predictor = TorchPredictor(model.train())
    assert not model.training and not model.features[1].training
    np.testing.assert_allclose(predictor.predict_logits(batch), expected, rtol=1e-5, atol=1e-5)


def test_channels_last_applies_to_the_weights_and_to_every_batch(batch: np.ndarray) -> None:
    channels_last = torch.channels_last
    for wanted in (True, False):
        model = tiny_net()
        seen: list[bool] = []
        model.register_forward_pre_hook(
            lambda module, args, seen=seen: seen.append(
                args[0].is_contiguous(memory_format=channels_last)
            )
        )
        TorchPredictor(model, channels_last=wanted).predict_logits(batch)
        assert model.features[0].weight.is_contiguous(memory_format=channels_last) is wanted
        assert seen == [wanted]


def test_predict_rejects_logits_for_another_number_of_images(batch: np.ndarray) -> None:
    class Folded(nn.Module):  # four scores per image, reshaped into rows of two
        def __init__(self) -> None:
            super().__init__()
            self.net = tiny_net(num_classes=4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x).reshape(-1, 2)

    predictor = TorchPredictor(Folded().eval(), name="folded")
    with pytest.raises(ArtifactError, match=r"'folded' returned logits of shape \(10, 2\) for 5"):
        predictor.predict_logits(batch)


def test_torch_predictor_bf16_on_cpu_is_close_to_fp32(batch: np.ndarray) -> None:
    model = tiny_net()
    expected = reference_logits(model, batch)
    predictor = TorchPredictor(model, precision="bfloat16")
    assert predictor.precision == "bf16"
    logits = predictor.predict_logits(batch)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, expected, atol=0.05 * np.abs(expected).max() + 1e-2)


@pytest.mark.parametrize("arch", ["tf_efficientnet_lite0", "test_vit"])
def test_bf16_weights_are_cast_once_with_autocasts_exact_outputs(arch: str) -> None:
    # entering autocast per call re-cast every weight on every call, which the latency
    # benchmarks then timed; casting the weights once must not change a single output bit
    import copy

    import timm

    torch.manual_seed(0)
    size = 64 if arch.startswith("tf_") else 160
    model = timm.create_model(arch, num_classes=2, img_size=size) if "vit" in arch else \
        timm.create_model(arch, num_classes=2)
    model.eval()
    x = np.random.default_rng(1).standard_normal((3, 3, size, size)).astype(np.float32)
    reference = copy.deepcopy(model).to(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        tensor = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
        expected = reference(tensor).float().numpy()
    predictor = TorchPredictor(model, precision="bf16")
    cast = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert cast and all(m.weight.dtype == torch.bfloat16 for m in cast)
    assert all(p.dtype == torch.float32 for m in model.modules()
               if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)) for p in m.parameters())
    np.testing.assert_array_equal(predictor.predict_logits(x), expected)


def test_weight_cast_leaves_subclasses_that_reuse_their_weight_alone() -> None:
    from timm.layers import StdConv2d

    model = nn.Sequential(StdConv2d(3, 4, 3), nn.Conv2d(4, 4, 1))
    assert cast_autocast_weights(model, torch.bfloat16) == 1
    assert model[0].weight.dtype == torch.float32 and model[1].weight.dtype == torch.bfloat16


def test_torch_predictor_compiled_keeps_inductor_settings_local(batch: np.ndarray) -> None:
    import torch._inductor.config as inductor_config

    model = tiny_net()
    expected = reference_logits(model, batch)
    predictor = TorchPredictor(model, compile=True, inductor_config={"freezing": True})
    assert predictor.runtime == "torch_compile"
    np.testing.assert_allclose(predictor.predict_logits(batch), expected, rtol=1e-4, atol=1e-4)
    assert inductor_config.freezing is False


def test_torch_predictor_compiles_a_static_graph_per_batch_size() -> None:
    # torch.compile's default turns the second batch size into a dynamic-shape graph that all
    # later sizes reuse: the graph timed at batch 32 would depend on the sizes run before it.
    # Nine sizes also pass dynamo's default recompile limit (8), past which it runs eager.
    from torch._dynamo.utils import counters

    model = tiny_net()
    predictor = TorchPredictor(model, compile=True)
    assert predictor.describe()["compiled_shapes"] == "static per batch size"
    rng = np.random.default_rng(1)
    counters.clear()
    for size in range(1, 10):
        x = rng.standard_normal((size, 3, 16, 16)).astype(np.float32)
        np.testing.assert_allclose(
            predictor.predict_logits(x), reference_logits(model, x), rtol=1e-4, atol=1e-4
        )
    assert counters["stats"]["unique_graphs"] == 9
    assert "recompile_limit" not in str(dict(counters["recompiles"]))


def test_cuda_fp32_turns_tf32_off_for_the_call_and_restores_it() -> None:
    # fp32 must mean the same arithmetic for torch and ONNX Runtime (use_tf32: 0); the
    # settings are plain process state, so the switch is checked here without a GPU
    import torch

    from defectbench.runtime.precision import ieee_fp32_on_cuda

    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = (conv.fp32_precision, matmul.fp32_precision, torch.backends.cudnn.rnn.fp32_precision)
    conv.fp32_precision = matmul.fp32_precision = "tf32"  # TF32 allowed for both
    torch.backends.cudnn.rnn.fp32_precision = "ieee"  # a mix the legacy flags cannot read
    try:
        with ieee_fp32_on_cuda():
            assert (conv.fp32_precision, matmul.fp32_precision) == ("ieee", "ieee")
        assert (conv.fp32_precision, matmul.fp32_precision) == ("tf32", "tf32")
        with pytest.raises(RuntimeError, match="boom"), ieee_fp32_on_cuda():
            raise RuntimeError("boom")
        assert (conv.fp32_precision, matmul.fp32_precision) == ("tf32", "tf32")
    finally:
        conv.fp32_precision, matmul.fp32_precision, torch.backends.cudnn.rnn.fp32_precision = before


def test_fp16_on_cpu_says_to_use_bf16_or_a_gpu() -> None:
    with pytest.raises(ConfigError, match=r"fp16 runs on CUDA only; on CPU use bf16 .*tox -e gpu"):
        TorchPredictor(tiny_net(), precision="fp16")


def test_int8_needs_a_quantized_module() -> None:
    with pytest.raises(ConfigError, match="needs an already quantized module"):
        TorchPredictor(tiny_net(), precision="int8")


@without_cuda
def test_cuda_without_gpu_says_how_to_enable() -> None:
    with pytest.raises(
        ConfigError, match=r"CUDA is not available; run on a GPU host \(`tox -e gpu`\)"
    ):
        TorchPredictor(tiny_net(), device="cuda")


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(np.zeros((2, 3, 16, 16), np.float64), id="float64"),
        pytest.param(np.zeros((3, 16, 16), np.float32), id="chw"),
        pytest.param(np.zeros((0, 3, 16, 16), np.float32), id="empty"),
        pytest.param([[0.0]], id="list"),
    ],
)
def test_predict_rejects_non_nchw_float32(bad) -> None:
    with pytest.raises(DataError, match="needs a non-empty float32 NCHW numpy batch"):
        TorchPredictor(tiny_net()).predict_logits(bad)


def test_predict_rejects_a_model_that_is_not_binary(batch: np.ndarray) -> None:
    predictor = TorchPredictor(tiny_net(num_classes=1000), name="imagenet")
    with pytest.raises(ArtifactError, match=r"'imagenet' returned logits of shape \(5, 1000\)"):
        predictor.predict_logits(batch)


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_torch_predictor_cuda_matches_cpu(batch: np.ndarray, precision: str) -> None:
    expected = reference_logits(tiny_net(), batch)
    predictor = TorchPredictor(tiny_net(), device="cuda", precision=precision)
    logits = predictor.predict_logits(batch)
    assert predictor.device == "cuda" and logits.dtype == np.float32
    tolerance = 1e-3 if precision == "fp32" else 0.05 * np.abs(expected).max() + 1e-2
    np.testing.assert_allclose(logits, expected, atol=tolerance)


@pytest.mark.gpu
@requires_cuda
def test_torch_predictor_cuda_fp32_runs_without_tf32(batch: np.ndarray) -> None:
    import torch

    seen = []

    class Spy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = tiny_net()

        def forward(self, x):
            seen.append((torch.backends.cudnn.conv.fp32_precision,
                         torch.backends.cuda.matmul.fp32_precision,
                         torch.backends.cudnn.benchmark))
            return self.net(x)

    TorchPredictor(Spy(), device="cuda", precision="fp32").predict_logits(batch)
    # cuDNN's algorithm search on, as ONNX Runtime's CUDA provider has it by default
    assert seen == [("ieee", "ieee", True)]


def test_cudnn_autotuning_is_on_inside_the_block_only() -> None:
    from defectbench.runtime.precision import cudnn_autotuned

    before = torch.backends.cudnn.benchmark
    with cudnn_autotuned():
        assert torch.backends.cudnn.benchmark is True
    assert torch.backends.cudnn.benchmark == before


# --------------------------------------------------------------------------- ONNX Runtime


def write_onnx(path, weight: np.ndarray, batch_dim: int | str = "batch", quantized: bool = False):
    """A hand-built graph: logits = mean over H, W of x, times ``weight`` (3, 2)."""
    nodes = []
    source = "x"
    if quantized:
        nodes += [
            helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "scale", "zero"], ["xdq"]),
        ]
        source = "xdq"
    nodes += [
        helper.make_node("ReduceMean", [source, "axes"], ["pooled"], keepdims=0),
        helper.make_node("Gemm", ["pooled", "w"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch_dim, 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch_dim, 2])],
        initializer=[
            numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(np.array(0.05, np.float32), "scale"),
            numpy_helper.from_array(np.array(128, np.uint8), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


@pytest.fixture
def weight() -> np.ndarray:
    return np.array([[1.0, -1.0], [0.5, 2.0], [-3.0, 0.25]], np.float32)


@pytest.fixture
def small_batch() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((3, 3, 4, 4)).astype(np.float32)


def test_ort_predictor_matches_numpy(tmp_path, weight, small_batch) -> None:
    predictor = OrtPredictor(write_onnx(tmp_path / "m.onnx", weight), intra_op_threads=1)
    expected = small_batch.mean(axis=(2, 3)) @ weight
    np.testing.assert_allclose(
        predictor.predict_logits(small_batch), expected, rtol=1e-5, atol=1e-6
    )
    assert (predictor.precision, predictor.device, predictor.runtime) == (
        "fp32",
        "cpu",
        "onnxruntime",
    )
    assert predictor.describe()["providers"] == ["CPUExecutionProvider"]
    assert predictor.max_batch is None


def test_ort_predictor_reads_int8_from_the_graph(tmp_path, weight, small_batch) -> None:
    predictor = OrtPredictor(write_onnx(tmp_path / "q.onnx", weight, quantized=True))
    assert predictor.precision == "int8"
    expected = small_batch.mean(axis=(2, 3)) @ weight
    # 8-bit input grid of step 0.05: the mean moves by at most half a step
    np.testing.assert_allclose(predictor.predict_logits(small_batch), expected, atol=0.2)


def test_ort_predictor_feeds_a_fixed_batch_graph_one_by_one(tmp_path, weight, small_batch) -> None:
    predictor = OrtPredictor(write_onnx(tmp_path / "b1.onnx", weight, batch_dim=1))
    assert predictor.max_batch == 1
    assert predictor.predict_logits(small_batch).shape == (3, 2)


def test_a_fixed_batch_graph_takes_exactly_its_batch(tmp_path, weight, small_batch) -> None:
    predictor = OrtPredictor(write_onnx(tmp_path / "b2.onnx", weight, batch_dim=2), max_batch=3)
    assert predictor.max_batch == 2  # the graph's batch wins over a larger max_batch
    assert predictor.predict_logits(np.concatenate([small_batch, small_batch[:1]])).shape == (4, 2)
    # 3 images: chunks of 2 and 1, and the graph takes no chunk of 1
    with pytest.raises(
        DataError, match=r"fixed batch of 2, got a chunk of 1; re-export with OnnxExportConfig"
    ):
        predictor.predict_logits(small_batch)


def test_ort_predictor_runs_a_graph_that_takes_fp16(tmp_path, weight, small_batch) -> None:
    # a half-precision export: float32 batches are cast to the graph's input type
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["x"], ["x32"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", ["x32", "axes"], ["pooled"], keepdims=0),
            helper.make_node("Gemm", ["pooled", "w"], ["logits"]),
        ],
        "half",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=[
            numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
            numpy_helper.from_array(weight, "w"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "half.onnx"))
    predictor = OrtPredictor(tmp_path / "half.onnx")
    assert predictor.precision == "fp16" and predictor.name == "half.onnxruntime.fp16.cpu"
    logits = predictor.predict_logits(small_batch)
    assert logits.dtype == np.float32
    expected = small_batch.astype(np.float16).astype(np.float32).mean(axis=(2, 3)) @ weight
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_ort_session_has_the_thread_count_and_full_graph_optimization(tmp_path, weight) -> None:
    import onnxruntime as ort

    predictor = OrtPredictor(write_onnx(tmp_path / "m.onnx", weight), intra_op_threads=1)
    options = predictor.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert predictor.describe()["intra_op_threads"] == 1  # recorded with the results


def test_ort_predictor_checks_its_providers_and_their_options(tmp_path, weight) -> None:
    path = write_onnx(tmp_path / "m.onnx", weight)
    assert OrtPredictor(path, providers=" CPU ").providers == ("CPUExecutionProvider",)
    with pytest.raises(ConfigError, match=r"providers is empty; pass e\.g\. \('cpu',\)"):
        OrtPredictor(path, providers=())
    with pytest.raises(
        ConfigError, match=r"provider_options has 2 entries for 1 providers; give one mapping"
    ):
        OrtPredictor(path, provider_options=[{}, {}])


def test_ort_predictor_missing_file(tmp_path) -> None:
    with pytest.raises(ArtifactError, match=r"ONNX file .*nope.onnx not found; build it with"):
        OrtPredictor(tmp_path / "nope.onnx")


def test_ort_predictor_unknown_provider(tmp_path, weight) -> None:
    with pytest.raises(
        UnknownNameError,
        match=r"unknown ONNX Runtime provider 'tpu'; valid aliases: "
        r"cpu, cuda, tensorrt",
    ):
        OrtPredictor(write_onnx(tmp_path / "m.onnx", weight), providers=("tpu",))


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_ort_gpu_provider_missing_says_how_to_enable(tmp_path, weight, provider) -> None:
    import onnxruntime as ort

    full = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}[provider]
    if full in ort.get_available_providers():
        pytest.skip(f"{full} is available here; this checks the error on CPU-only builds")
    with pytest.raises(
        ConfigError, match=rf"{full} is not available .*onnxruntime-gpu.*tox -e gpu"
    ):
        OrtPredictor(write_onnx(tmp_path / "m.onnx", weight), providers=(provider, "cpu"))


@pytest.mark.parametrize(
    ("precision", "device", "providers", "engine"),
    [
        ("fp32", "cpu", ("CPUExecutionProvider",), None),
        ("int8", "cpu", ("CPUExecutionProvider",), None),
        ("fp32", "cuda", ("CUDAExecutionProvider",), None),
        ("fp16", "cuda", ("TensorrtExecutionProvider", "CUDAExecutionProvider"), "fp16"),
        ("int8", "cuda", ("TensorrtExecutionProvider", "CUDAExecutionProvider"), "int8"),
    ],
)
def test_ort_execution_routes_fp16_and_int8_on_cuda_to_tensorrt(
    tmp_path, precision, device, providers, engine
) -> None:
    from defectbench.runtime.predictor import ort_execution

    execution = ort_execution(precision, device, engine_cache=tmp_path)
    assert execution.providers == providers
    if device == "cpu":
        assert execution.provider_options is None
    elif engine is None:  # fp32 on the CUDA provider means fp32, not its default TF32
        assert execution.provider_options == ({"use_tf32": 0},)
    else:
        trt, cuda = execution.provider_options
        assert (trt["trt_fp16_enable"], trt["trt_int8_enable"]) == (
            engine == "fp16", engine == "int8")
        assert cuda == {"use_tf32": 0}  # what TensorRT hands back runs in fp32 too
        assert trt["trt_engine_cache_enable"] and trt["trt_engine_cache_path"] == str(tmp_path)
        # the timing cache too: without it every engine rebuild times every tactic again
        assert trt["trt_timing_cache_enable"] and trt["trt_timing_cache_path"] == str(tmp_path)


def test_tensorrt_profile_is_explicit_batch_1_to_max_tuned_for_max(tmp_path, weight) -> None:
    # without it ONNX Runtime grows the profile from the shapes seen so far and tunes for the
    # largest: a batch-1 case was timed on whichever engine earlier cases had left behind
    from defectbench.runtime.predictor import (
        ort_execution,
        tensorrt_environment,
        tensorrt_profile_shapes,
    )

    shapes = tensorrt_profile_shapes(write_onnx(tmp_path / "m.onnx", weight), max_batch=32)
    assert shapes == {
        "trt_profile_min_shapes": "x:1x3x4x4",
        "trt_profile_opt_shapes": "x:32x3x4x4",
        "trt_profile_max_shapes": "x:32x3x4x4",
    }
    trt, _ = ort_execution("fp16", "cuda", tmp_path, shapes).provider_options
    assert trt["trt_profile_opt_shapes"] == "x:32x3x4x4" and trt["trt_fp16_enable"]
    # engines are only valid for the ONNX Runtime, TensorRT and GPU that built them
    import onnxruntime as ort

    tag = tensorrt_environment()
    assert tag.startswith(f"ort{ort.__version__}-trt") and "/" not in tag and " " not in tag


def test_tensorrt_profile_of_a_fixed_batch_graph_is_that_batch(tmp_path, weight) -> None:
    from defectbench.runtime.predictor import tensorrt_profile_shapes

    shapes = tensorrt_profile_shapes(write_onnx(tmp_path / "b4.onnx", weight, batch_dim=4))
    assert set(shapes.values()) == {"x:4x3x4x4"}


def test_tensorrt_profile_refuses_dynamic_image_sizes(tmp_path, weight) -> None:
    from defectbench.runtime.predictor import tensorrt_profile_shapes

    path = write_onnx(tmp_path / "m.onnx", weight)
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    onnx.save(model, str(path))
    with pytest.raises(ConfigError, match="dynamic dimensions besides the batch"):
        tensorrt_profile_shapes(path)


def test_ort_predictor_max_batch_chunks_a_dynamic_batch(tmp_path, weight, small_batch) -> None:
    path = write_onnx(tmp_path / "m.onnx", weight)
    predictor = OrtPredictor(path, max_batch=2)
    assert predictor.max_batch == 2
    seen: list[int] = []

    class RecordingSession:  # the real session, with the batch size of every call noted
        def __init__(self, inner):
            self.inner = inner

        def run(self, outputs, feed):
            seen.append(len(next(iter(feed.values()))))
            return self.inner.run(outputs, feed)

    predictor.session = RecordingSession(predictor.session)
    chunked = predictor.predict_logits(small_batch)
    assert seen == [2, 1]  # the session never got more than max_batch images at once
    np.testing.assert_allclose(chunked, OrtPredictor(path).predict_logits(small_batch), rtol=1e-6)


@pytest.mark.parametrize(
    ("precision", "device", "message"),
    [
        ("bf16", "cpu", r"graph's own precision \(fp32 or int8\), not 'bf16'"),
        ("bf16", "cuda", r"no ONNX Runtime path for 'bf16' on cuda; choose fp32, fp16 or int8"),
        ("fp32", "tpu", r"unknown device 'tpu' for ONNX Runtime; use cpu or cuda"),
    ],
)
def test_ort_execution_rejects_what_it_cannot_run(precision, device, message) -> None:
    from defectbench.runtime.predictor import ort_execution

    with pytest.raises(ConfigError, match=message):
        ort_execution(precision, device)


def test_missing_providers_reason_names_the_fix() -> None:
    from defectbench.runtime.predictor import missing_providers_reason

    cpu_only = ["CPUExecutionProvider"]
    assert missing_providers_reason(["CPUExecutionProvider"], cpu_only) is None
    reason = missing_providers_reason(
        ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
        ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    assert reason.startswith("ONNX Runtime provider TensorrtExecutionProvider is not available")
    assert "pip uninstall -y onnxruntime && pip install onnxruntime-gpu tensorrt" in reason
    assert "tox -e gpu" in reason


def test_tensorrt_that_onnxruntime_lists_but_cannot_load_is_reported(monkeypatch) -> None:
    import ctypes

    import onnxruntime as ort

    from defectbench.runtime import predictor

    trt = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    # what onnxruntime-gpu reports on a host whose TensorRT library is missing
    monkeypatch.setattr(ort, "get_available_providers", lambda: [*trt, "CPUExecutionProvider"])

    def no_library(name, *args, **kwargs):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_library)
    reason = predictor.execution_unavailable_reason(trt)
    assert reason.startswith("TensorRT's library (libnvinfer.so.10) does not load")
    assert "pip install tensorrt" in reason and "LD_LIBRARY_PATH" in reason
    assert predictor.execution_unavailable_reason(("CUDAExecutionProvider",)) is None
    monkeypatch.setattr(ctypes, "CDLL", lambda name, *a, **k: object())
    assert predictor.execution_unavailable_reason(trt) is None


def test_ort_predictor_rejects_bad_thread_count(tmp_path, weight) -> None:
    with pytest.raises(
        ConfigError, match="intra_op_threads must be an int >= 1, or None .*; got 0"
    ):
        OrtPredictor(write_onnx(tmp_path / "m.onnx", weight), intra_op_threads=0)
