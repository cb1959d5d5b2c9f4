"""What the predictors do with inputs and artifacts they cannot use: batches of another layout
or size, damaged or foreign ONNX files, mistyped settings. Each is named with its fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import timm
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from defectbench.errors import ArtifactError, ConfigError, DataError
from defectbench.runtime import OrtPredictor, TorchPredictor, onnx_precision
from defectbench.runtime.predictor import ort_execution, tensorrt_profile_shapes

NHWC_HINT = r"channels last\? the batch must be NCHW: x\.transpose\(0, 3, 1, 2\)"


def write_graph(
    path: Path,
    *,
    image: tuple[int | str, ...] = ("batch", 3, 8, 8),
    classes: int = 2,
    extra_input: bool = False,
    op: str = "ReduceMean",
) -> Path:
    """logits = mean over every axis after the channels of x, times a (3, classes) weight."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(image))]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1]))
    graph = helper.make_graph(
        [
            helper.make_node(op, ["x", "axes"], ["pooled"], keepdims=0),
            helper.make_node("Gemm", ["pooled", "w"], ["logits"]),
        ],
        "tiny",
        inputs,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [image[0], classes])],
        initializer=[
            numpy_helper.from_array(np.arange(2, len(image), dtype=np.int64), "axes"),
            numpy_helper.from_array(np.ones((3, classes), np.float32), "w"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def images(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


class TinyConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stem(x).mean(dim=(2, 3)))


# --------------------------------------------------------------------------- batch shapes


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (images(2, 8, 8, 3), NHWC_HINT),
        (images(2, 1, 8, 8), r"got a batch of shape \(2, 1, 8, 8\)"),
        (images(2, 3, 16, 16), r"got a batch of shape \(2, 3, 16, 16\)"),
    ],
    ids=["nhwc", "one-channel", "other-size"],
)
def test_ort_predictor_names_a_batch_of_another_shape(tmp_path, batch, message) -> None:
    predictor = OrtPredictor(write_graph(tmp_path / "m.onnx"), name="m")
    assert predictor.input_shape == (3, 8, 8)
    with pytest.raises(DataError, match=r"'m' takes images of shape \(C, H, W\) = \(3, 8, 8\)"):
        predictor.predict_logits(batch)
    with pytest.raises(DataError, match=message):
        predictor.predict_logits(batch)


def test_ort_predictor_takes_any_size_a_graph_leaves_dynamic(tmp_path) -> None:
    predictor = OrtPredictor(write_graph(tmp_path / "m.onnx", image=("batch", 3, "h", "w")))
    assert predictor.input_shape == (3, None, None)
    assert predictor.predict_logits(images(2, 3, 5, 7)).shape == (2, 2)


def test_an_ort_session_does_not_fall_back_to_other_providers_mid_run(tmp_path) -> None:
    # ONNX Runtime catches a provider's failure inside run(), retries on the remaining
    # providers and keeps them: a TensorRT case would go on being timed on CUDA or CPU under
    # its TensorRT label (onnxruntime_inference_collection: "Falling back to ...")
    predictor = OrtPredictor(write_graph(tmp_path / "m.onnx"))
    assert predictor.session._enable_fallback is False
    assert predictor.predict_logits(images(2, 3, 8, 8)).shape == (2, 2)


def test_eager_torch_predictor_names_a_channels_last_batch() -> None:
    predictor = TorchPredictor(TinyConvNet().eval(), name="cnn")
    assert predictor.input_shape is None  # an eager CNN takes any image size
    with pytest.raises(DataError, match=rf"'cnn' takes .* = \(3, any, any\).*{NHWC_HINT}"):
        predictor.predict_logits(images(2, 8, 8, 3))


def test_torch_predictor_checks_the_input_shape_it_is_given() -> None:
    predictor = TorchPredictor(TinyConvNet().eval(), input_shape=(3, 8, 8), name="cnn")
    assert predictor.predict_logits(images(2, 3, 8, 8)).shape == (2, 2)
    with pytest.raises(DataError, match=r"\(3, 8, 8\), got a batch of shape \(2, 3, 16, 16\)"):
        predictor.predict_logits(images(2, 3, 16, 16))


def test_the_batch_check_runs_once_per_shape_yet_sees_every_change() -> None:
    # checked once per batch shape, not on every timed call; but a batch of another dtype, or
    # the same batch after the predictor's input_shape changed, is checked again
    predictor = TorchPredictor(TinyConvNet().eval(), name="cnn")
    batch = images(2, 3, 8, 8)
    assert predictor.predict_logits(batch).shape == (2, 2)
    assert predictor.predict_logits(batch).shape == (2, 2)
    with pytest.raises(DataError, match=r"float32 NCHW numpy batch, got ndarray float64"):
        predictor.predict_logits(batch.astype(np.float64))
    predictor.input_shape = (3, 16, 16)
    with pytest.raises(DataError, match=r"\(3, 16, 16\), got a batch of shape \(2, 3, 8, 8\)"):
        predictor.predict_logits(batch)


@pytest.mark.parametrize("bad", [(3, 8), (3, 0, 8), (3, 8.0, 8), (True, 8, 8), "3x8x8"])
def test_torch_predictor_refuses_a_malformed_input_shape(bad) -> None:
    with pytest.raises(ConfigError, match=r"input_shape must be \(channels, height, width\)"):
        TorchPredictor(TinyConvNet().eval(), input_shape=bad)


def test_exported_graph_input_shape_is_read_from_the_graph() -> None:
    # what a PT2E artifact runs: a torch.export graph, traced for one image size
    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(
        TinyConvNet().eval(), (torch.zeros(2, 3, 8, 8),), dynamic_shapes=({0: batch},)
    )
    exported = program.module()
    # a plain GraphModule over the same graph: the exported module refuses eval(), which
    # torchao's convert_pt2e output allows
    graph = torch.fx.GraphModule(exported, exported.graph)
    predictor = TorchPredictor(graph, channels_last=False, name="graph")
    assert predictor.input_shape == (3, 8, 8)
    assert predictor.predict_logits(images(3, 3, 8, 8)).shape == (3, 2)
    with pytest.raises(DataError, match=r"'graph' takes .* \(3, 8, 8\), got .* \(2, 3, 16, 16\)"):
        predictor.predict_logits(images(2, 3, 16, 16))


def test_vit_input_shape_is_its_fixed_image_size() -> None:
    vit = timm.create_model(
        "vit_tiny_patch16_224", img_size=32, depth=1, num_classes=2, pretrained=False
    )
    predictor = TorchPredictor(vit.eval(), name="vit")
    assert predictor.input_shape == (3, 32, 32)
    with pytest.raises(DataError, match=r"\(3, 32, 32\), got a batch of shape \(1, 3, 48, 48\)"):
        predictor.predict_logits(images(1, 3, 48, 48))


def test_vit_input_shape_keeps_height_and_width_apart() -> None:
    vit = timm.create_model(
        "vit_tiny_patch16_224", img_size=(32, 48), depth=1, num_classes=2, pretrained=False
    )
    predictor = TorchPredictor(vit.eval(), name="vit")
    assert predictor.input_shape == (3, 32, 48)
    assert predictor.predict_logits(images(1, 3, 32, 48)).shape == (1, 2)


# --------------------------------------------------------------------------- damaged files


def _damaged(tmp_path: Path, kind: str) -> Path:
    good = write_graph(tmp_path / "good.onnx").read_bytes()
    path = tmp_path / f"{kind}.onnx"
    path.write_bytes(
        {"truncated": good[: len(good) // 2], "empty": b"", "text": b"not an onnx model"}[kind]
    )
    return path


@pytest.mark.parametrize("kind", ["truncated", "empty", "text"])
def test_a_damaged_onnx_file_is_reported_by_every_reader(tmp_path, kind) -> None:
    path = _damaged(tmp_path, kind)
    for read in (OrtPredictor, onnx_precision, tensorrt_profile_shapes):
        with pytest.raises(ArtifactError, match=rf"ONNX file .*{kind}\.onnx .*export it again"):
            read(path)


def test_a_graph_onnx_runtime_cannot_load_is_an_artifact_error(tmp_path) -> None:
    path = write_graph(tmp_path / "m.onnx", op="NoSuchOperator")
    with pytest.raises(ArtifactError, match=r"ONNX Runtime cannot load .*m\.onnx with CPU"):
        OrtPredictor(path)


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        ({"classes": 1000}, r"returns \['batch', 1000\], not \(N, 2\) logits"),
        ({"extra_input": True}, r"has 2 inputs \(x, mask\), not 1"),
        ({"image": ("batch", 3, 8, 8, 2)}, r"takes input 'x' of shape \['batch', 3, 8, 8, 2\]"),
    ],
    ids=["imagenet-head", "two-inputs", "not-nchw"],
)
def test_a_graph_that_is_not_a_binary_image_classifier_is_refused_at_open(
    tmp_path, graph, message
) -> None:
    with pytest.raises(ArtifactError, match=message):
        OrtPredictor(write_graph(tmp_path / "m.onnx", **graph))


def test_a_graph_whose_logits_are_not_two_dimensional_is_refused_at_open(tmp_path) -> None:
    path = write_graph(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    graph = model.graph
    graph.node[-1].output[0] = "flat"
    graph.node.append(helper.make_node("Unsqueeze", ["flat", "last"], ["logits"]))
    graph.initializer.append(numpy_helper.from_array(np.array([2], np.int64), "last"))
    graph.output[0].type.tensor_type.shape.dim.add().dim_value = 1
    onnx.save(model, str(path))
    with pytest.raises(ArtifactError, match=r"returns \['batch', 2, 1\], not \(N, 2\) logits"):
        OrtPredictor(path)


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize("threads", [True, 1.5, "2"])
def test_ort_thread_count_must_be_an_int(tmp_path, threads) -> None:
    with pytest.raises(ConfigError, match=rf"intra_op_threads must be an int .*{threads!r}"):
        OrtPredictor(write_graph(tmp_path / "m.onnx"), intra_op_threads=threads)


@pytest.mark.parametrize("max_batch", [True, 2.0])
def test_max_batch_must_be_an_int(max_batch) -> None:
    with pytest.raises(ConfigError, match="max_batch must be a positive int or None"):
        TorchPredictor(TinyConvNet().eval(), max_batch=max_batch)


def test_ort_execution_takes_the_aliases_the_predictors_take() -> None:
    assert ort_execution("FP32", "CPU") == ort_execution("fp32", "cpu")
    assert ort_execution("half", "gpu") == ort_execution("fp16", "cuda")
    with pytest.raises(ConfigError, match=r"not 'fp16'.*device 'cuda' \(TensorRT\) for fp16"):
        ort_execution("float16", "cpu")
