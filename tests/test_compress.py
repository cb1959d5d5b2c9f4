"""Compression transforms: ONNX export, ORT INT8, PT2E INT8 / QAT, pruning and its save / load.

timm models use random weights and small inputs: these tests check the mechanics (files, ops,
shapes, parity), not accuracy.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
import timm
import torch
from tiny_models import TinyCNN
from torch import nn

from defectbench.compress import (
    CALIBRATION_METHODS,
    OnnxExportConfig,
    OrtDynamicInt8Config,
    OrtStaticInt8Config,
    PruneConfig,
    export_onnx,
    load_pruned,
    load_pruned_metadata,
    onnx_export,
    prune_model,
    quantize_onnx_dynamic,
    quantize_onnx_static,
    save_pruned,
)
from defectbench.errors import ArtifactError, ConfigError
from defectbench.runtime import OrtPredictor

IMG = 64
ARCHS = {
    "tf_efficientnet_lite0": {},
    "vit_tiny_patch16_224": {"img_size": IMG},
}


def make_model(arch: str) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(arch, pretrained=False, num_classes=2, **ARCHS[arch]).eval()


def images(n: int, seed: int, size: int = IMG) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


def torch_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def op_types(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return TinyCNN().eval()


def export_arch(arch: str, tmp_path_factory):
    model = make_model(arch)
    path = tmp_path_factory.mktemp(arch) / f"{arch}.onnx"
    report = export_onnx(model, images(2, seed=1), path, check_batches=[images(3, seed=2)])
    return arch, model, report


@pytest.fixture(scope="module")
def lite0(tmp_path_factory):
    """(arch, model, export report), exported once per module."""
    return export_arch("tf_efficientnet_lite0", tmp_path_factory)


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    return export_arch("vit_tiny_patch16_224", tmp_path_factory)


@pytest.fixture(params=sorted(ARCHS))
def exported(request):
    return request.getfixturevalue({"tf_efficientnet_lite0": "lite0"}.get(request.param, "vit"))


# --------------------------------------------------------------------------- ONNX export


def test_export_passes_parity_in_one_file(exported) -> None:
    _, _, report = exported
    assert report.parity.passed
    assert report.parity.within_tolerance and report.parity.decision_flips == 0
    assert report.parity.num_samples == 3
    assert report.to_dict()["parity"]["passed"] is True
    path = Path(report.path)
    # weights inside the file: no external-data sibling, and the graph's initializers are real
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert report.file_bytes > 1_000_000


@pytest.mark.parametrize("n", [1, 3])
def test_export_runs_at_any_batch_size(exported, n: int) -> None:
    _, model, report = exported
    x = images(n, seed=10 + n)
    logits = OrtPredictor(report.path).predict_logits(x)
    assert logits.shape == (n, 2)
    np.testing.assert_allclose(logits, torch_logits(model, x), rtol=1e-3, atol=1e-4)


def test_export_failing_parity_raises_and_writes_nothing(tmp_path, monkeypatch) -> None:
    real = onnx_export._onnx_logits
    monkeypatch.setattr(
        onnx_export, "_onnx_logits", lambda *args: real(*args) + np.float32([[-5.0, 5.0]])
    )
    path = tmp_path / "broken.onnx"
    with pytest.raises(
        ArtifactError,
        match=r"failed its parity check: max \|logit diff\| 5.*"
        r"the file was not written",
    ):
        export_onnx(tiny_cnn(), images(2, seed=3, size=16), path)
    assert list(tmp_path.iterdir()) == []


def test_export_with_fixed_batch(tmp_path) -> None:
    report = export_onnx(
        tiny_cnn(),
        images(4, seed=4, size=16),
        tmp_path / "fixed.onnx",
        OnnxExportConfig(dynamic_batch=False),
    )
    assert report.parity.passed
    predictor = OrtPredictor(report.path)
    assert predictor.max_batch == 4
    assert predictor.predict_logits(images(8, seed=5, size=16)).shape == (8, 2)


def test_export_restores_training_mode(tmp_path) -> None:
    model = tiny_cnn().train()
    export_onnx(model, images(2, seed=6, size=16), tmp_path / "t.onnx")
    assert model.training and model.features[1].training
    # module by module: a BatchNorm frozen in eval while the rest trains stays frozen
    model.features[1].eval()
    export_onnx(model, images(2, seed=6, size=16), tmp_path / "f.onnx")
    assert model.training and model.features[0].training and not model.features[1].training


def test_parity_allows_atol_plus_rtol_times_the_logit(tmp_path, monkeypatch) -> None:
    model = tiny_cnn()
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([-50.0, 50.0]))  # large logits: rtol dominates
    real = onnx_export._onnx_logits
    x = images(2, seed=9, size=16)
    for scale, passed in ((1 + 5e-4, True), (1 + 2e-3, False)):
        monkeypatch.setattr(onnx_export, "_onnx_logits", lambda *args, s=scale: real(*args) * s)
        path = tmp_path / f"{scale}.onnx"
        if passed:  # |diff| = 0.025 > atol, but <= atol + rtol * 50
            assert export_onnx(model, x, path).parity.within_tolerance
        else:
            with pytest.raises(ArtifactError, match=r"within: False\), 0 of 2 decisions"):
                export_onnx(model, x, path)
        assert path.exists() is passed


def test_a_decision_that_flips_at_the_configured_threshold_fails_parity(
    tmp_path, monkeypatch
) -> None:
    # logits within tolerance may still put an image on the other side of the threshold
    model = tiny_cnn()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([0.0, 0.4]))  # p(defect) = 0.599 for every image
    real = onnx_export._onnx_logits
    monkeypatch.setattr(  # p(defect) = 0.525 in ONNX
        onnx_export, "_onnx_logits", lambda *args: real(*args) + np.float32([[0.0, -0.3]])
    )
    x = images(2, seed=10, size=16)
    report = export_onnx(model, x, tmp_path / "ok.onnx", OnnxExportConfig(atol=1.0))
    assert report.parity.passed and report.parity.decision_flips == 0
    with pytest.raises(
        ArtifactError, match=r"within: True\), 2 of 2 decisions at threshold 0.55 differ"
    ):
        export_onnx(model, x, tmp_path / "flip.onnx", OnnxExportConfig(atol=1.0, threshold=0.55))
    assert not (tmp_path / "flip.onnx").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"opset": 11}, r"opset 11 not supported; use 17\.\."),
        ({"atol": -1.0}, r"atol and rtol must be >= 0, got atol=-1.0"),
        ({"threshold": 1.0}, r"threshold must be in \(0, 1\), got 1.0"),
        ({"output_name": "input"}, r"must be non-empty and different"),
        ({"rtol": -1.0}, r"atol and rtol must be >= 0, got atol=0.0001 rtol=-1.0"),
        ({"threshold": 0.0}, r"threshold must be in \(0, 1\), got 0.0"),
        ({"input_name": ""}, r"input_name '' and output_name 'logits' must be non-empty"),
    ],
    ids=["opset", "atol", "threshold", "names", "rtol", "threshold-0", "empty-name"],
)
def test_export_config_validation(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        OnnxExportConfig(**kwargs)


# --------------------------------------------------------------------------- ORT INT8


@pytest.mark.parametrize("calibration", CALIBRATION_METHODS)
def test_static_int8_each_calibration_method(lite0, tmp_path, calibration: str) -> None:
    _, _, report = lite0
    config = OrtStaticInt8Config(calibration=calibration, num_calibration=4, entropy_bins=256)
    out = tmp_path / f"int8_{calibration}.onnx"
    quant = quantize_onnx_static(report.path, out, [images(3, seed=20), images(3, seed=21)], config)
    assert (quant.calibration, quant.num_calibration_samples) == (calibration, 4)
    assert quant.op_types is None and quant.op_selection.startswith("auto: no transformer ops")
    # the classifier's output stays float: logits are not rounded to 8 bits before the
    # threshold (its Gemm still computes in int8)
    assert quant.float_output_op_types == ("Gemm",)
    graph = onnx.load(str(out)).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    assert producers[graph.output[0].name] == "Gemm"
    assert "QuantizeLinear" in op_types(out) and quant.quantize_nodes > 10
    assert quant.int8_bytes < quant.fp32_bytes / 2
    x = images(3, seed=22)
    fp32 = OrtPredictor(report.path).predict_logits(x)
    predictor = OrtPredictor(out)
    assert predictor.precision == "int8"
    int8 = predictor.predict_logits(x)
    # random weights and 4 noise images for calibration: "close" is loose (entropy clips most)
    assert np.abs(int8 - fp32).max() <= 0.5 * np.abs(fp32).max()
    np.testing.assert_array_equal(int8.argmax(axis=1), fp32.argmax(axis=1))


def test_static_int8_logits_are_not_on_an_8_bit_grid(lite0, tmp_path) -> None:
    # with the output quantized, every logit difference is a multiple of one scale and at most
    # 256 levels exist; the float output gives each image its own score
    _, _, report = lite0
    batches = [images(3, seed=40), images(3, seed=41)]
    x = images(24, seed=42)
    scores = {}
    for float_output in (True, False):
        out = tmp_path / f"int8_{float_output}.onnx"
        config = OrtStaticInt8Config(num_calibration=6, float_model_output=float_output)
        quantize_onnx_static(report.path, out, batches, config)
        logits = OrtPredictor(out).predict_logits(x)
        scores[float_output] = np.unique(np.round(logits[:, 1], 7))
    graph_output = onnx.load(str(tmp_path / "int8_False.onnx")).graph
    producers = {o: n.op_type for n in graph_output.node for o in n.output}
    assert producers[graph_output.output[0].name] == "DequantizeLinear"  # the old form
    assert len(scores[True]) == len(x)
    assert len(scores[False]) < len(scores[True])


def test_an_output_left_quantized_despite_float_model_output_is_refused(
    lite0, tmp_path, monkeypatch
) -> None:
    # the last check: should the exclusion miss the node that feeds the output (an op type not
    # foreseen), the 8-bit scores are refused rather than written as float ones
    import defectbench.compress.ort_quant as ort_quant

    _, _, report = lite0
    monkeypatch.setattr(ort_quant, "_model_output_op_type", lambda path, already, shown_as: set())
    out = tmp_path / "q.onnx"
    with pytest.raises(ArtifactError, match=r"left its output behind a DequantizeLinear"):
        quantize_onnx_static(report.path, out, [images(4, seed=48)],
                             OrtStaticInt8Config(num_calibration=4))
    assert not out.exists()


def test_a_convolution_classifier_behind_a_flatten_keeps_a_float_output(tmp_path) -> None:
    # DLA, DPN and BiT end in a 1x1 convolution then a flatten: excluding the flatten's op
    # type left the convolution's output quantized (scores on an 8-bit grid) while the check
    # looked only at the flatten; now the classifier convolution itself stays float
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 2, 1), nn.Flatten())
    calib = images(8, seed=46, size=16)
    report = export_onnx(net.eval(), calib[:2], tmp_path / "convhead.onnx")
    x = images(24, seed=47, size=16)
    out = tmp_path / "q.onnx"
    quant = quantize_onnx_static(report.path, out, [calib], OrtStaticInt8Config(num_calibration=8))
    assert len(quant.float_nodes) == 1 and quant.to_dict()["float_nodes"] == list(
        quant.float_nodes)
    graph = onnx.load(str(out)).graph
    producer = {o: n for n in graph.node for o in n.output}
    node = producer[graph.output[0].name]
    while node.op_type in ("Reshape", "Flatten"):
        node = producer[node.input[0]]
    assert node.op_type == "Conv" and node.name in quant.float_nodes  # float, not requantized
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) > 0  # the rest is INT8
    logits = OrtPredictor(out).predict_logits(x)
    assert len(np.unique(np.round(logits[:, 1], 7))) == len(x)
    np.testing.assert_allclose(logits, torch_logits(net, x), atol=0.1 * np.abs(logits).max())
    # an artifact of the old form under the same key is refused at load, with the rebuild
    from defectbench.zoo.derived import OrtInt8Recipe, _check_float_output
    from defectbench.zoo.store import ZooStore

    old = tmp_path / "old.onnx"
    quantize_onnx_static(report.path, old, [calib],
                         OrtStaticInt8Config(num_calibration=8, float_model_output=False))
    store, recipe = ZooStore(tmp_path / "zoo", "smoke"), OrtInt8Recipe("p", OrtStaticInt8Config())
    _check_float_output(store, "v.int8_ort", recipe, out)
    with pytest.raises(ArtifactError, match=r"rounds its scores to 8 bits although its recipe "
                       r"keeps them float .*--variants v.int8_ort`"):
        _check_float_output(store, "v.int8_ort", recipe, old)


def conv_classifier_graph(path: Path, *, name_classifier: bool = True, size: int | str = 8):
    """x -> Conv -> Relu -> GlobalAveragePool -> 1x1 Conv classifier -> Flatten, by hand."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w1"], ["h"], name="stem"),
            helper.make_node("Relu", ["h"], ["r"], name="relu"),
            helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
            helper.make_node("Conv", ["p", "w2"], ["c"], name="classifier" if name_classifier
                             else None),
            helper.make_node("Flatten", ["c"], ["logits"], name="flatten"),
        ],
        "conv_classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=[
            numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w1"),
            numpy_helper.from_array(rng.standard_normal((2, 4, 1, 1)).astype(np.float32), "w2"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def test_an_unnamed_classifier_node_that_cannot_be_kept_float_is_named(tmp_path) -> None:
    # ORT leaves nodes unquantized by name: an unnamed one cannot be, whatever the exporter
    path = conv_classifier_graph(tmp_path / "m.onnx", name_classifier=False)
    # named by the user's file, not the preprocessed scratch copy quantization works on
    with pytest.raises(ConfigError,
                       match=r"the Conv node\(s\) behind m\.onnx's output have no name"):
        quantize_onnx_static(path, tmp_path / "q.onnx", [images(4, seed=43, size=8)],
                             OrtStaticInt8Config(num_calibration=4))
    assert not (tmp_path / "q.onnx").exists()


def test_a_graph_with_dynamic_image_sizes_calibrates_on_any_size(tmp_path) -> None:
    path = conv_classifier_graph(tmp_path / "m.onnx", size="size")
    quant = quantize_onnx_static(path, tmp_path / "q.onnx", [images(4, seed=44, size=8)],
                                 OrtStaticInt8Config(num_calibration=4))
    assert quant.float_nodes == ("classifier",)
    assert OrtPredictor(tmp_path / "q.onnx").predict_logits(images(2, 45, size=12)).shape == (2, 2)


def test_float_model_output_refuses_an_output_op_type_that_repeats(tmp_path) -> None:
    # ORT keeps outputs float by op type: with two Gemms, keeping the classifier's float would
    # keep the hidden layer's too, another model than the one asked for
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 2))
    x = images(4, seed=45, size=8)
    report = export_onnx(mlp, x, tmp_path / "mlp.onnx")
    assert [n.op_type for n in onnx.load(str(report.path)).graph.node].count("Gemm") == 2
    with pytest.raises(ConfigError, match=r"producing mlp\.onnx's output also occurs "
                                          r"elsewhere: Gemm \(2 nodes\)"):
        quantize_onnx_static(report.path, tmp_path / "q.onnx", [x], OrtStaticInt8Config(
            num_calibration=4))
    assert not (tmp_path / "q.onnx").exists()
    quant = quantize_onnx_static(report.path, tmp_path / "q.onnx", [x], OrtStaticInt8Config(
        num_calibration=4, float_model_output=False))
    assert quant.float_output_op_types == ()
    # the fix the error names: keep every Gemm's output float, the classifier's among them
    quant = quantize_onnx_static(report.path, tmp_path / "g.onnx", [x], OrtStaticInt8Config(
        num_calibration=4, float_output_op_types=("Gemm",)))
    assert quant.float_output_op_types == ("Gemm",)
    graph = onnx.load(str(tmp_path / "g.onnx")).graph
    assert {n.op_type for n in graph.node if graph.output[0].name in n.output} == {"Gemm"}


def test_static_int8_vit_leaves_layernorm_and_softmax_in_float(vit, tmp_path) -> None:
    _, _, report = vit
    out = tmp_path / "vit_int8.onnx"
    quant = quantize_onnx_static(
        report.path, out, [images(2, seed=30)], OrtStaticInt8Config(num_calibration=2)
    )
    assert quant.transformer_ops == ("LayerNormalization", "Softmax")
    assert quant.op_types == ("Conv", "Gemm", "MatMul")
    assert quant.float_output_op_types == ("Gemm", "MatMul")
    graph = onnx.load(str(out)).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    fed_int8 = {n.op_type for n in graph.node if set(n.input) & dequantized}
    assert "MatMul" in fed_int8
    assert not fed_int8 & {"LayerNormalization", "Softmax"}
    assert OrtPredictor(out).predict_logits(images(2, seed=31)).shape == (2, 2)


def test_symmetric_int8_has_the_zero_points_tensorrt_needs(tmp_path) -> None:
    from onnx import numpy_helper

    from defectbench.compress import TENSORRT_INT8, tensorrt_compatible

    model = make_model("tf_efficientnet_lite0")
    torch.manual_seed(0)
    for module in model.modules():  # as after training: batch norm folds into conv biases
        if isinstance(module, nn.BatchNorm2d):
            module.bias.data.normal_(0, 0.1)
            module.running_mean.normal_(0, 0.1)
    report = export_onnx(model, images(2, seed=1), tmp_path / "fp32.onnx")
    graph = onnx.load(str(report.path)).graph
    assert all(len(n.input) == 3 for n in graph.node if n.op_type == "Conv")  # biases exist
    out = tmp_path / "sym.onnx"
    config = dataclasses.replace(TENSORRT_INT8, num_calibration=4)
    assert tensorrt_compatible(config) and not tensorrt_compatible(OrtStaticInt8Config())
    quantize_onnx_static(report.path, out, [images(4, seed=33)], config)
    def qdq(path):
        graph = onnx.load(str(path)).graph
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        nodes = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
        # what feeds each DequantizeLinear from the graph's constants (weights, biases)
        stored = [inits[n.input[0]] for n in nodes
                  if n.op_type == "DequantizeLinear" and n.input[0] in inits]
        zero_points = [inits[n.input[2]] for n in nodes if len(n.input) > 2]
        return stored, zero_points

    stored, zero_points = qdq(out)
    assert len(zero_points) > 10
    assert all(z.dtype == np.int8 and not z.any() for z in zero_points)
    assert stored and all(w.dtype == np.int8 for w in stored)  # no int32 biases
    # the default (uint8 activations, int32 biases) is what TensorRT could not take
    quantize_onnx_static(report.path, tmp_path / "asym.onnx", [images(4, seed=33)],
                         OrtStaticInt8Config(num_calibration=4))
    stored, zero_points = qdq(tmp_path / "asym.onnx")
    assert any(z.dtype == np.uint8 and z.any() for z in zero_points)
    assert any(w.dtype == np.int32 for w in stored)
    x = images(3, seed=34)
    fp32 = OrtPredictor(report.path).predict_logits(x)
    sym = OrtPredictor(out).predict_logits(x)
    assert np.abs(sym - fp32).max() <= 0.5 * np.abs(fp32).max()


def test_calibration_settings_reach_the_quantizer(tmp_path) -> None:
    # a setting dropped on its way to ONNX Runtime falls back to ORT's own default (MinMax,
    # percentile 99.999, 128 entropy bins: the min-max range again) without a word
    from onnx import numpy_helper

    calib = [images(8, seed=120, size=16)]
    path = export_onnx(tiny_cnn(), calib[0][:2], tmp_path / "m.onnx").path

    def quantized(name: str, **kwargs) -> tuple[np.ndarray, list[int]]:
        out = tmp_path / f"{name}.onnx"
        quantize_onnx_static(path, out, calib, OrtStaticInt8Config(num_calibration=8, **kwargs))
        graph = onnx.load(str(out)).graph
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        activations = [float(inits[n.input[1]]) for n in graph.node
                       if n.op_type == "QuantizeLinear"]
        weight_scales = [inits[n.input[1]].size for n in graph.node
                         if n.op_type == "DequantizeLinear" and n.input[0] in inits
                         and inits[n.input[0]].dtype == np.int8]
        return np.array(activations), weight_scales

    minmax, per_channel = quantized("minmax")
    p90, _ = quantized("p90", calibration="percentile", percentile=90.0)
    p_default, _ = quantized("p99999", calibration="percentile")
    # the input's range: the 90th percentile of |x| of normal noise, not its maximum
    assert p90[0] < 0.6 * minmax[0] and p_default[0] > 0.9 * minmax[0]
    entropy_128, _ = quantized("e128", calibration="entropy", entropy_bins=128)
    entropy_512, _ = quantized("e512", calibration="entropy", entropy_bins=512)
    np.testing.assert_allclose(entropy_128, minmax, rtol=1e-4)
    assert np.all(entropy_512 <= minmax * (1 + 1e-4)) and np.any(entropy_512 < 0.9 * minmax)
    _, per_tensor = quantized("per_tensor", per_channel=False)
    assert max(per_channel) > 1 and max(per_tensor) == 1

    def widest_int8_weight(name: str, **kwargs) -> int:
        out = tmp_path / f"{name}.onnx"
        quantize_onnx_static(path, out, calib, OrtStaticInt8Config(num_calibration=8, **kwargs))
        inits = [numpy_helper.to_array(i) for i in onnx.load(str(out)).graph.initializer]
        return max(int(np.abs(a.astype(np.int32)).max()) for a in inits if a.dtype == np.int8)

    # reduce_range: 7-bit weights (for CPUs without VNNI, whose int8 products can saturate)
    assert widest_int8_weight("reduced", reduce_range=True) <= 64
    assert widest_int8_weight("full_range") > 64


def test_static_int8_explicit_op_types_win(lite0, tmp_path) -> None:
    _, _, report = lite0
    quant = quantize_onnx_static(
        report.path,
        tmp_path / "conv_only.onnx",
        [images(1, seed=32)],
        OrtStaticInt8Config(num_calibration=1, op_types=("Conv",)),
    )
    assert (quant.op_types, quant.op_selection) == (("Conv",), "config")


def test_explicit_op_types_win_on_a_transformer_graph_too(vit, tmp_path) -> None:
    _, _, report = vit
    out = tmp_path / "matmul_only.onnx"
    quant = quantize_onnx_dynamic(report.path, out, OrtDynamicInt8Config(op_types=("MatMul",)))
    assert (quant.op_types, quant.op_selection) == (("MatMul",), "config")
    assert "MatMulInteger" in op_types(out) and "ConvInteger" not in op_types(out)


def test_int8_that_quantizes_nothing_is_refused_not_written(lite0, tmp_path) -> None:
    # an op_types list that matches no operator would leave a float graph labelled INT8
    _, _, report = lite0
    out = tmp_path / "float.onnx"
    with pytest.raises(
        ArtifactError, match=r"no QuantizeLinear node: op_types \['LayerNormalization'\].*Conv"
    ):
        quantize_onnx_static(report.path, out, [images(1, seed=32)], OrtStaticInt8Config(
            num_calibration=1, op_types=("LayerNormalization",)))
    with pytest.raises(ArtifactError, match=r"no QuantizeLinear node"):
        quantize_onnx_dynamic(report.path, out, OrtDynamicInt8Config(op_types=("LSTM",)))
    assert not out.exists()


def test_dynamic_int8(exported, tmp_path) -> None:
    arch, _, report = exported
    out = tmp_path / "dyn.onnx"
    quant = quantize_onnx_dynamic(report.path, out)
    assert quant.method == "ort_dynamic_int8" and quant.num_calibration_samples == 0
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= op_types(out)
    if arch.startswith("vit"):
        assert quant.op_types == ("Conv", "MatMul")
        # matmul_const_b_only: attention's activation x activation MatMuls stay float
        assert "MatMul" in op_types(out)
    x = images(2, seed=40)
    fp32 = OrtPredictor(report.path).predict_logits(x)
    int8 = OrtPredictor(out).predict_logits(x)
    assert np.abs(int8 - fp32).max() <= 0.25 * np.abs(fp32).max()


def test_dynamic_int8_per_channel_reaches_the_quantizer(tmp_path) -> None:
    path = export_onnx(tiny_cnn(), images(2, seed=42, size=16), tmp_path / "m.onnx").path
    sizes = {}
    for per_channel in (False, True):
        out = tmp_path / f"dyn_{per_channel}.onnx"
        quantize_onnx_dynamic(path, out, OrtDynamicInt8Config(per_channel=per_channel))
        graph = onnx.load(str(out)).graph
        # the classifier's weight scale: one per output class, or one for the whole tensor
        sizes[per_channel] = [int(np.prod(i.dims)) for i in graph.initializer
                              if i.name.startswith("head.") and i.name.endswith("_scale")]
    assert sizes == {False: [1], True: [2]}


def test_dynamic_int8_scores_depend_on_the_call_so_the_zoo_scores_them_per_image(
    exported, tmp_path
) -> None:
    from defectbench.zoo.derived import OrtInt8Recipe, scoring_batch

    _, _, report = exported
    out = tmp_path / "dyn.onnx"
    quantize_onnx_dynamic(report.path, out)
    x = images(4, seed=41)
    x[1:] *= 3.0  # neighbours with a wider range: one activation scale per call
    predictor = OrtPredictor(out)
    alone = predictor.predict_logits(x[:1])
    assert not np.array_equal(alone, predictor.predict_logits(x)[:1])
    assert np.array_equal(alone, predictor.predict_logits(x[:1]))  # per image: repeatable
    # hence one image per call at build (dev) and in the suite (val); static graphs keep 32
    assert scoring_batch(OrtInt8Recipe("p", OrtDynamicInt8Config())) == 1
    assert scoring_batch(OrtInt8Recipe("p", OrtStaticInt8Config())) == 32


def test_static_int8_needs_enough_calibration_samples(lite0, tmp_path) -> None:
    _, _, report = lite0
    with pytest.raises(
        ConfigError, match="calibration batches gave 2 samples but num_calibration is 8"
    ):
        quantize_onnx_static(
            report.path,
            tmp_path / "x.onnx",
            [images(2, seed=41)],
            OrtStaticInt8Config(num_calibration=8),
        )
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("free", [1024, 10_000 * 2**20])
def test_a_working_copy_onnx_runtime_cannot_read_back_is_named(
    tmp_path, monkeypatch, free
) -> None:
    # on a full disk ONNX Runtime's C++ writer truncates its optimized copy without an error,
    # and the next onnx.load raised protobuf's "Wire format was corrupt" as a traceback
    import collections
    import errno

    import onnxruntime.quantization.shape_inference as shape_inference
    from google.protobuf.message import DecodeError

    path = export_onnx(tiny_cnn(), images(2, seed=42, size=16), tmp_path / "m.onnx").path

    def truncated(*args, **kwargs):
        raise DecodeError("Error parsing message with type 'onnx.ModelProto'")

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shape_inference, "quant_pre_process", truncated)
    monkeypatch.setattr("defectbench.compress.ort_quant.shutil.disk_usage",
                        lambda folder: usage(2**40, 0, free))
    out = tmp_path / "zoo" / "int8.onnx"
    if free < 4 * Path(path).stat().st_size:
        with pytest.raises(OSError) as info:
            quantize_onnx_dynamic(path, out)
        assert info.value.errno == errno.ENOSPC and info.value.filename == str(out.parent)
        assert "could not write its working copies of m.onnx while quantizing it: 0.00098 " \
               "MiB are free there" in str(info.value)
    else:
        with pytest.raises(ArtifactError, match=r"wrote a working copy of .*m.onnx that it "
                                                r"cannot read back .* 10000 MiB free"):
            quantize_onnx_dynamic(path, out)
    assert not out.exists() and list(out.parent.iterdir()) == []  # no file, no scratch left


def test_quantize_missing_fp32_file(tmp_path) -> None:
    with pytest.raises(ArtifactError, match=r"fp32 ONNX file .*none.onnx not found; export it"):
        quantize_onnx_dynamic(tmp_path / "none.onnx", tmp_path / "out.onnx")


@pytest.mark.parametrize(
    ("factory", "kwargs", "message"),
    [
        (
            OrtStaticInt8Config,
            {"calibration": "kl"},
            r"unknown calibration method 'kl'; valid choices: entropy, minmax, percentile",
        ),
        (
            OrtStaticInt8Config,
            {"activation_type": "int4"},
            r"activation_type 'int4' is not supported; valid choices: int8, uint8",
        ),
        (
            OrtStaticInt8Config,
            {"op_types": ("Softplus",)},
            r"op_types \['Softplus'\] cannot be quantized this way; valid choices: .*MatMul",
        ),
        (OrtStaticInt8Config, {"num_calibration": 0}, r"num_calibration must be a positive int"),
        (
            OrtStaticInt8Config,
            {"symmetric_activations": True},
            r"symmetric_activations needs activation_type 'int8'.*activation_type='int8'",
        ),
        (
            OrtDynamicInt8Config,
            {"op_types": ("Gemm",)},
            r"op_types \['Gemm'\] cannot be quantized this way; valid choices: .*Conv",
        ),
        (OrtStaticInt8Config, {"percentile": 80.0}, r"percentile must be in \[90, 100\], got 80"),
        (OrtStaticInt8Config, {"entropy_bins": 64}, r"entropy_bins must be an int >= 128, got 64"),
        (
            OrtStaticInt8Config,
            {"float_output_op_types": ("Softplus",)},
            r"op_types \['Softplus'\] cannot be quantized this way",
        ),
    ],
    ids=["method", "activation", "static-op", "count", "symmetric-uint8", "dynamic-op",
         "percentile", "entropy-bins", "float-output-op"],
)
def test_ort_config_validation(factory, kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        factory(**kwargs)


def test_only_a_signed_symmetric_graph_without_int32_biases_is_tensorrt_compatible() -> None:
    from defectbench.compress import TENSORRT_INT8, tensorrt_compatible

    assert tensorrt_compatible(TENSORRT_INT8)
    for change in ({"quantize_bias": True}, {"weight_type": "uint8"},
                   {"activation_type": "uint8", "symmetric_activations": False}):
        assert not tensorrt_compatible(dataclasses.replace(TENSORRT_INT8, **change)), change
    assert not tensorrt_compatible(OrtDynamicInt8Config())


def test_ort_configs_round_trip_to_dict() -> None:
    from defectbench.compress import TENSORRT_INT8

    config = OrtStaticInt8Config(calibration="percentile", op_types=["Conv", "MatMul"])
    assert OrtStaticInt8Config(**{**config.to_dict(), "op_types": ("Conv", "MatMul")}) == config
    assert config.to_dict()["op_types"] == ["Conv", "MatMul"]
    # fields added later stay out of the dict (and so out of cache keys) at their defaults
    assert not {"symmetric_activations", "quantize_bias"} & set(config.to_dict())
    trt = TENSORRT_INT8.to_dict()
    assert (trt["symmetric_activations"], trt["quantize_bias"]) == (True, False)
    assert OrtStaticInt8Config(**trt) == TENSORRT_INT8


# --------------------------------------------------------------------------- PT2E


def test_pt2e_static_int8_runs_onednn_int8_kernels() -> None:
    import torch._inductor.config as inductor_config
    from torch._inductor.utils import run_and_get_code

    from defectbench.compress.pt2e import (
        Pt2eInt8Config,
        calibrate_pt2e,
        convert_pt2e_int8,
        int8_predictor,
        prepare_pt2e_int8,
        pt2e_report,
    )

    model, x = tiny_cnn(), images(5, seed=50, size=16)
    pass_before = inductor_config.pre_grad_custom_pass
    config = Pt2eInt8Config(max_batch=4)
    prepared = prepare_pt2e_int8(model, x[:1], config)
    count = calibrate_pt2e(prepared, [images(4, seed=51, size=16), images(4, seed=52, size=16)])
    quantized = convert_pt2e_int8(prepared)
    report = pt2e_report(quantized, "pt2e_static_int8", config, count)
    assert report.num_calibration_samples == 8
    assert report.quantized_ops["quantized_decomposed.quantize_per_tensor.default"] >= 2
    predictor = int8_predictor(quantized, name="tiny.int8")
    assert (predictor.precision, predictor.runtime, predictor.max_batch) == (
        "int8",
        "torch_compile",
        4,
    )
    logits, code = run_and_get_code(predictor.predict_logits, x)
    assert "torch.ops.onednn.qconv_pointwise" in "\n".join(code)
    expected = torch_logits(model, x)
    np.testing.assert_allclose(logits, expected, atol=0.1 * np.abs(expected).max())
    # freezing and the quantizer's pre-grad pass stayed local to the predictor's calls
    assert inductor_config.freezing is False
    assert inductor_config.pre_grad_custom_pass is pass_before


def test_pt2e_convert_drops_the_float_weights_no_node_reads() -> None:
    # convert_pt2e keeps the replaced float weights as attributes no node reads: the INT8
    # graph then held (and its size counted) more than the fp32 model itself
    import copy

    from defectbench.compress.pt2e import (
        calibrate_pt2e,
        convert_pt2e_int8,
        graph_state_bytes,
        prepare_pt2e_int8,
    )

    model, x = make_model("tf_efficientnet_lite0"), images(3, seed=56, size=32)
    fp32_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    prepared = prepare_pt2e_int8(model, x[:2])
    calibrate_pt2e(prepared, [x])
    kept = convert_pt2e_int8(copy.deepcopy(prepared), drop_unused_float_weights=False)
    dropped = convert_pt2e_int8(prepared)
    assert graph_state_bytes(kept) > fp32_bytes  # the form the committed runs measured
    assert graph_state_bytes(dropped) < 0.35 * fp32_bytes  # int8 weights + float biases
    read = {str(n.target) for n in dropped.graph.nodes if n.op == "get_attr"}
    assert set(dropped.state_dict()) <= read
    with torch.no_grad():
        np.testing.assert_array_equal(
            dropped(torch.from_numpy(x)).numpy(), kept(torch.from_numpy(x)).numpy()
        )


def test_pt2e_dynamic_int8_for_vit() -> None:
    from defectbench.compress.pt2e import (
        Pt2eDynamicInt8Config,
        int8_predictor,
        quantize_pt2e_dynamic_int8,
        quantized_op_counts,
    )

    model, x = make_model("vit_tiny_patch16_224"), images(2, seed=55)
    quantized = quantize_pt2e_dynamic_int8(model, x, Pt2eDynamicInt8Config(max_batch=8))
    counts = quantized_op_counts(quantized)
    # one dynamic (choose_qparams) input quantization per linear layer: 4 per block, 12 blocks
    assert counts["quantized_decomposed.choose_qparams.tensor"] >= 48
    logits = int8_predictor(quantized, compile=False).predict_logits(x)
    expected = torch_logits(model, x)
    assert np.abs(logits - expected).max() <= 0.25 * np.abs(expected).max()


def test_pt2e_qat_prepare_train_convert() -> None:
    from defectbench.compress.pt2e import (
        Pt2eInt8Config,
        convert_pt2e_int8,
        int8_predictor,
        prepare_qat_pt2e_int8,
        quantized_op_counts,
        set_qat_mode,
    )

    model, x = tiny_cnn(), images(6, seed=60, size=16)
    prepared = prepare_qat_pt2e_int8(model, x, Pt2eInt8Config(max_batch=8))
    assert not model.training  # the caller's module keeps its mode
    optimizer = torch.optim.SGD(prepared.parameters(), lr=0.05)
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    for _ in range(2):
        loss = nn.functional.cross_entropy(prepared(torch.from_numpy(x)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    set_qat_mode(prepared, train=False)
    with torch.no_grad():
        fake_quant = prepared(torch.from_numpy(x)).numpy()
    quantized = convert_pt2e_int8(prepared)
    assert (
        quantized_op_counts(quantized)["quantized_decomposed.dequantize_per_channel.default"] >= 3
    )
    logits = int8_predictor(quantized, compile=False).predict_logits(x)
    np.testing.assert_allclose(logits, fake_quant, atol=0.05 * np.abs(fake_quant).max() + 1e-3)


def test_qat_observers_are_frozen_while_evaluating() -> None:
    # a fused moving-average observer updates its range on every call whatever the mode, so
    # scoring dev between QAT epochs moved the ranges the INT8 model is made with
    from defectbench.compress.pt2e import (
        Pt2eInt8Config,
        allow_qat_train_eval,
        prepare_qat_pt2e_int8,
    )

    prepared = prepare_qat_pt2e_int8(tiny_cnn(), images(4, seed=61, size=16), Pt2eInt8Config())
    allow_qat_train_eval(prepared)

    def ranges():
        return {k: v.clone() for k, v in prepared.state_dict().items()
                if k.endswith(("min_val", "max_val"))}

    prepared.train()
    prepared(torch.from_numpy(images(4, seed=62, size=16)))
    before = ranges()
    assert before
    prepared.eval()
    with torch.no_grad():
        prepared(torch.from_numpy(10 * images(4, seed=63, size=16)))  # far outside the range
    assert all(torch.equal(before[k], v) for k, v in ranges().items())
    prepared.train()
    prepared(torch.from_numpy(10 * images(4, seed=63, size=16)))
    trained = ranges()
    assert any(not torch.equal(before[k], v) for k, v in trained.items())
    # observers_follow=False (a recipe with freeze_observers_in_eval=False, as zoos built
    # before the freeze were): .eval() leaves the observers on, so evaluating moves the ranges
    allow_qat_train_eval(prepared, observers_follow=False)
    prepared.eval()
    with torch.no_grad():
        prepared(torch.from_numpy(100 * images(4, seed=64, size=16)))
    assert any(not torch.equal(trained[k], v) for k, v in ranges().items())


@pytest.mark.slow
def test_pt2e_static_int8_lite0_compiled() -> None:
    from defectbench.compress.pt2e import (
        calibrate_pt2e,
        convert_pt2e_int8,
        int8_predictor,
        prepare_pt2e_int8,
    )

    model = make_model("tf_efficientnet_lite0")
    prepared = prepare_pt2e_int8(model, images(2, seed=70))
    calibrate_pt2e(prepared, [images(4, seed=71)])
    predictor = int8_predictor(convert_pt2e_int8(prepared))
    x = images(3, seed=72)
    expected = torch_logits(model, x)
    assert np.abs(predictor.predict_logits(x) - expected).max() <= 0.25 * np.abs(expected).max()


def test_pt2e_errors() -> None:
    from defectbench.compress.pt2e import Pt2eInt8Config, calibrate_pt2e, int8_predictor

    with pytest.raises(ConfigError, match=r"max_batch must be an int >= 2, got 1"):
        Pt2eInt8Config(max_batch=1)
    with pytest.raises(ConfigError, match="int8_predictor needs a converted PT2E model"):
        int8_predictor(tiny_cnn())
    with pytest.raises(ConfigError, match="not made by defectbench.compress.pt2e"):
        calibrate_pt2e(tiny_cnn(), [images(1, seed=0, size=16)])


# --------------------------------------------------------------------------- pruning


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_prune_halves_cost_runs_and_round_trips(arch: str, tmp_path) -> None:
    model = make_model(arch)
    x = images(3, seed=80)
    report = prune_model(model, x, PruneConfig(ratio=0.5))
    assert report.macs_after < 0.6 * report.macs_before
    assert report.params_after < 0.6 * report.params_before
    assert report.to_dict()["config"]["ratio"] == 0.5
    assert model.get_classifier().out_features == 2
    pruned_logits = torch_logits(model, x)
    assert pruned_logits.shape == (3, 2)
    if arch.startswith("vit"):
        assert {heads for _, heads, _ in report.attention_heads} == {3}
        assert {dim for _, _, dim in report.attention_heads} == {32}
        assert model.blocks[0].attn.scale == pytest.approx(32**-0.5)

    # the model's own width attributes follow the pruned layers: timm's reset_classifier
    # builds its new head from them
    width = model.get_classifier().in_features
    assert width < make_model(arch).num_features
    assert (model.num_features, model.head_hidden_size) == (width, width)
    if arch.startswith("vit"):
        assert model.embed_dim == width

    path = tmp_path / "pruned.pt"
    save_pruned(model, path, metadata={"arch": arch, "img_size": IMG})
    assert load_pruned_metadata(path) == {"arch": arch, "img_size": IMG}
    torch.load(path, weights_only=True)  # plain data only: nothing pickled to execute
    rebuilt = load_pruned(path, make_model(arch))
    np.testing.assert_array_equal(torch_logits(rebuilt, x), pruned_logits)
    rebuilt.reset_classifier(3)
    assert torch_logits(rebuilt, x).shape == (3, 3)
    # a file saved before prune_model updated them holds the unpruned widths
    model.num_features = model.head_hidden_size = make_model(arch).num_features
    save_pruned(model, path)
    assert load_pruned(path, make_model(arch)).num_features == width


def test_a_pooled_width_found_in_no_output_dimension_is_warned_about() -> None:
    # num_features apart from the classifier's input width, and no dimension of
    # forward_features' output carries it: pruning cannot update it, and says so
    class PooledElsewhere(TinyCNN):
        num_features = 24

        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            return self.features(x)

    model, x = PooledElsewhere(), images(2, seed=83, size=16)
    with pytest.warns(UserWarning, match=r"PooledElsewhere\.num_features \(24\) is neither"):
        prune_model(model, x, PruneConfig(ratio=0.5))
    assert model.num_features == 24
    assert model.head.in_features < 32


def test_a_pooled_width_other_than_the_classifiers_follows_the_pruned_layers(tmp_path) -> None:
    # timm's MobileNetV3 pools num_features channels into conv_head, whose wider output
    # (head_hidden_size) feeds the classifier: num_features kept its unpruned width, and
    # reset_classifier() refused to build a head ("sized for the pooled width")
    def mobilenet():
        torch.manual_seed(0)
        return timm.create_model("mobilenetv3_small_050", num_classes=2)

    model, x = mobilenet(), images(2, seed=82, size=64)
    assert model.num_features != model.get_classifier().in_features
    prune_model(model, x, PruneConfig(ratio=0.5, global_pruning=True))
    assert model.num_features == model.conv_head.in_channels < mobilenet().num_features
    assert model.head_hidden_size == model.get_classifier().in_features
    path = tmp_path / "pruned.pt"
    save_pruned(model, path)
    for pruned in (model, load_pruned(path, mobilenet())):
        assert pruned.num_features == model.conv_head.in_channels
        pruned.reset_classifier(3)
        assert torch_logits(pruned, x).shape == (2, 3)


def test_random_pruning_is_the_same_whatever_ran_before_and_restores_the_rng() -> None:
    # RandomImportance draws from torch's global generator, which nothing else seeds
    x = images(1, seed=81, size=16)
    pruned = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model = tiny_cnn()
        torch.manual_seed(seed)
        after_seed = torch.random.get_rng_state()
        prune_model(model, x, PruneConfig(ratio=0.5, importance="random", global_pruning=True))
        assert torch.equal(torch.random.get_rng_state(), after_seed)
        pruned.append({k: tuple(v.shape) for k, v in model.state_dict().items()})
    assert pruned[0] == pruned[1]


def test_load_pruned_into_another_architecture_fails(tmp_path) -> None:
    model = tiny_cnn()
    prune_model(model, images(1, seed=81, size=16), PruneConfig(ratio=0.5))
    save_pruned(model, tmp_path / "tiny.pt")
    with pytest.raises(ArtifactError, match=r"does not fit EfficientNet: it has no modules"):
        load_pruned(tmp_path / "tiny.pt", make_model("tf_efficientnet_lite0"))


def test_load_pruned_rejects_other_files(tmp_path) -> None:
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ArtifactError, match="is not a defectbench pruned model"):
        load_pruned(tmp_path / "other.pt", tiny_cnn())


def test_taylor_pruning_uses_gradient_batches() -> None:
    model, x = tiny_cnn(), images(4, seed=82, size=16)
    with pytest.raises(ConfigError, match="importance='taylor' needs gradient_batches"):
        prune_model(model, x, PruneConfig(ratio=0.5, importance="taylor"))
    report = prune_model(
        model,
        x,
        PruneConfig(ratio=0.5, importance="taylor"),
        gradient_batches=[(x, np.array([0, 1, 1, 0]))],
    )
    assert report.params_after < report.params_before
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": 1.5}, r"pruning ratio must be in \(0, 1\), got 1.5"),
        ({"ratio": 0.0}, r"pruning ratio must be in \(0, 1\), got 0.0"),
        (
            {"ratio": 0.5, "importance": "l1"},
            r"unknown importance 'l1'; valid choices: magnitude, random, taylor",
        ),
        ({"ratio": 0.5, "max_layer_ratio": 0.4}, r"max_layer_ratio must be in \[ratio, 1\]"),
        ({"ratio": 0.5, "round_to": 0}, r"round_to must be a positive int or None, got 0"),
    ],
    ids=["ratio-high", "ratio-zero", "importance", "max-layer", "round-to"],
)
def test_prune_config_validation(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        PruneConfig(**kwargs)


def test_configs_are_frozen_and_serialisable() -> None:
    config = PruneConfig(ratio=0.3, round_to=8)
    with pytest.raises(AttributeError):
        config.ratio = 0.9  # type: ignore[misc]
    assert PruneConfig(**config.to_dict()) == config
    assert OnnxExportConfig(**OnnxExportConfig(opset=17).to_dict()).opset == 17


# --------------------------------------------------------------------------- hostile inputs


def test_non_finite_images_are_refused_before_they_reach_a_model(tmp_path) -> None:
    from defectbench.compress.pt2e import calibrate_pt2e, prepare_pt2e_int8
    from defectbench.errors import DataError

    good = images(3, seed=90, size=16)
    path = export_onnx(tiny_cnn(), good, tmp_path / "m.onnx").path
    for bad_value in (np.nan, np.inf):
        bad = good.copy()
        bad[1, 0, 2, 3] = bad_value
        # an inf once stretched ORT's MinMax range so far that the INT8 model output zeros
        with pytest.raises(DataError, match=r"calibration batch holds 1 NaN or infinite .*\[1\]"):
            quantize_onnx_static(
                path, tmp_path / "q.onnx", [bad],
                OrtStaticInt8Config(num_calibration=3),
            )
        with pytest.raises(DataError, match=r"parity check batch holds 1 NaN or infinite"):
            export_onnx(tiny_cnn(), good, tmp_path / "x.onnx", check_batches=[bad])
        prepared = prepare_pt2e_int8(tiny_cnn(), good[:2])
        # torch's own error was "torch.histc: range of [-nan, -nan] is not finite"
        with pytest.raises(DataError, match=r"calibration batch holds 1 NaN or infinite"):
            calibrate_pt2e(prepared, [bad])
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "q.onnx").exists()


def test_parity_reports_a_nan_logit_as_a_nan_difference(tmp_path) -> None:
    model = tiny_cnn()
    with torch.no_grad():
        model.head.bias[1] = float("nan")  # finite images, NaN scores in torch and ONNX alike
    with pytest.raises(ArtifactError, match=r"max \|logit diff\| nan"):
        export_onnx(model, images(2, seed=91, size=16), tmp_path / "nan.onnx")


def test_parity_check_batches_of_another_size_are_named(tmp_path) -> None:
    from defectbench.errors import DataError

    x = images(2, seed=92, size=16)
    with pytest.raises(
        DataError, match=r"has samples of shape \(3, 24, 24\) .* takes \(3, 16, 16\)"
    ):
        export_onnx(tiny_cnn(), x, tmp_path / "s.onnx", check_batches=[images(2, 93, size=24)])
    grey = images(2, 93, size=16)[:, :1]  # the right size, one channel
    with pytest.raises(
        DataError, match=r"has samples of shape \(1, 16, 16\) .* takes \(3, 16, 16\)"
    ):
        export_onnx(tiny_cnn(), x, tmp_path / "s.onnx", check_batches=[grey])
    assert not (tmp_path / "s.onnx").exists()


def test_fixed_batch_export_is_checked_in_chunks_of_its_batch(tmp_path) -> None:
    from defectbench.errors import DataError

    config = OnnxExportConfig(dynamic_batch=False)
    x = images(2, seed=94, size=16)
    # ONNX Runtime refused the batch of 6: "Got invalid dimensions for input"
    report = export_onnx(tiny_cnn(), x, tmp_path / "f.onnx", config, check_batches=[
        images(6, seed=95, size=16)
    ])
    assert report.parity.passed and report.parity.num_samples == 6
    with pytest.raises(DataError, match=r"fixed batch of 2, so it cannot check a batch of 3"):
        export_onnx(tiny_cnn(), x, tmp_path / "g.onnx", config, check_batches=[
            images(3, seed=96, size=16)
        ])


def test_static_int8_calibration_of_another_shape_is_named(tmp_path) -> None:
    from defectbench.errors import DataError

    path = export_onnx(tiny_cnn(), images(2, seed=97, size=16), tmp_path / "m.onnx").path
    for shape in ((2, 3, 24, 24), (2, 1, 16, 16)):
        calib = np.random.default_rng(98).standard_normal(shape).astype(np.float32)
        with pytest.raises(
            DataError, match=rf"shape {re_tuple(shape[1:])} \(C, H, W\) but m.onnx takes"
        ):
            quantize_onnx_static(path, tmp_path / "q.onnx", [calib],
                                 OrtStaticInt8Config(num_calibration=2))
    assert not (tmp_path / "q.onnx").exists()


def re_tuple(shape) -> str:
    return r"\(" + r", ".join(str(d) for d in shape) + r"\)"


def test_pt2e_calibration_of_another_shape_is_named() -> None:
    from defectbench.compress.pt2e import calibrate_pt2e, convert_pt2e_int8, prepare_pt2e_int8
    from defectbench.errors import DataError

    prepared = prepare_pt2e_int8(tiny_cnn(), images(2, seed=99, size=16))
    # the exported graph's own error: AssertionError "Guard failed: x.size()[2] == 16"
    with pytest.raises(DataError, match=r"shape \(3, 24, 24\) .* takes \(3, 16, 16\)"):
        calibrate_pt2e(prepared, [images(2, seed=100, size=24)])
    calibrate_pt2e(prepared, [images(2, seed=101, size=16)])
    # the shape survives conversion, for the next graph made from it
    assert convert_pt2e_int8(prepared).meta["defectbench_input_shape"] == (3, 16, 16)


def test_blank_calibration_images_are_refused(tmp_path) -> None:
    from defectbench.compress.pt2e import (
        Pt2eDynamicInt8Config,
        calibrate_pt2e,
        prepare_pt2e_int8,
        quantize_pt2e_dynamic_int8,
    )
    from defectbench.errors import DataError

    blank = np.zeros((2, 3, 16, 16), np.float32)
    path = export_onnx(tiny_cnn(), images(2, seed=102, size=16), tmp_path / "m.onnx").path
    # calibrated on zeros, the INT8 graph was written and output 0 for every real image
    with pytest.raises(DataError, match="every calibration sample is a constant image"):
        quantize_onnx_static(path, tmp_path / "q.onnx", [blank, blank + 0.5],
                             OrtStaticInt8Config(num_calibration=4))
    prepared = prepare_pt2e_int8(tiny_cnn(), images(2, seed=103, size=16))
    with pytest.raises(DataError, match="every calibration sample is a constant image"):
        calibrate_pt2e(prepared, [blank])
    # one varied image is enough, and dynamic INT8 observes only weights: a blank example is fine
    calibrate_pt2e(prepared, [np.concatenate([blank, images(1, seed=104, size=16)])])
    quantize_pt2e_dynamic_int8(tiny_cnn(), blank, Pt2eDynamicInt8Config())


def test_pruning_that_would_empty_layers_is_refused_not_skipped() -> None:
    # Torch-Pruning leaves a group whole when the ratio would leave it no channels: at 0.97
    # TinyCNN (16 and 32 channels) came out unpruned, without a word
    model = tiny_cnn()
    with pytest.raises(
        ArtifactError,
        match=r"ratio 0.97 \(round_to=None\) left 2 layer group\(s\) whole.*features.0 \(16\)",
    ):
        prune_model(model, images(1, seed=105, size=16), PruneConfig(ratio=0.97))


def test_vit_round_to_that_would_empty_head_dims_is_refused() -> None:
    # 64-channel rounding of 32-wide pruned heads: every qkv kept all its head dimensions
    # while the embedding shrank to a third
    with pytest.raises(ArtifactError, match=r"left 12 layer group\(s\) whole.*attn.qkv \(576\)"):
        prune_model(make_model("vit_tiny_patch16_224"), images(1, seed=106),
                    PruneConfig(ratio=0.5, round_to=64))


def test_head_pruning_that_removes_every_head_is_refused() -> None:
    model = make_model("vit_tiny_patch16_224")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(
        ConfigError, match=r"removes ceil\(0.7 \* 3\) = 3 of the 3 heads of blocks.0.attn"
    ):
        prune_model(model, images(1, seed=107), PruneConfig(ratio=0.7, prune_num_heads=True))
    # refused before anything was pruned
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # global ranking may empty one block only: said, not a ZeroDivisionError
    with pytest.raises(ArtifactError, match=r"removed every head of blocks\.\d+\.attn"):
        prune_model(make_model("vit_tiny_patch16_224"), images(1, seed=107),
                    PruneConfig(ratio=0.9, prune_num_heads=True, global_pruning=True))


def test_quantizing_an_int8_graph_or_in_place_is_refused(tmp_path) -> None:
    x = images(2, seed=108, size=16)
    fp32 = export_onnx(tiny_cnn(), x, tmp_path / "m.onnx").path
    int8, config = tmp_path / "q.onnx", OrtStaticInt8Config(num_calibration=2)
    quantize_onnx_static(fp32, int8, [x], config)
    written = int8.read_bytes()
    # ORT quantized the QDQ graph a second time (static) or only logged a warning (dynamic)
    with pytest.raises(ArtifactError, match=r"q.onnx is already quantized \(it has .*QuantizeLin"):
        quantize_onnx_static(int8, tmp_path / "qq.onnx", [x], config)
    with pytest.raises(ArtifactError, match=r"q.onnx is already quantized"):
        quantize_onnx_dynamic(int8, tmp_path / "qd.onnx")
    assert not (tmp_path / "qq.onnx").exists() and not (tmp_path / "qd.onnx").exists()
    # in place, the report gave the INT8 file's size as the fp32 model's
    fp32_bytes = Path(fp32).read_bytes()
    with pytest.raises(ConfigError, match=r"out_path .*m.onnx is the fp32 model itself"):
        quantize_onnx_dynamic(fp32, Path(fp32))
    assert Path(fp32).read_bytes() == fp32_bytes and int8.read_bytes() == written


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_calibration": 0}, r"num_calibration must be a positive int, got 0"),
        ({"num_calibration": -4}, r"num_calibration must be a positive int, got -4"),
        ({"calibration_seed": -1}, r"calibration_seed must be an int >= 0, got -1"),
        # a fractional count is no count of images; it passed `count >= 1` unchecked
        ({"num_calibration": 2.5}, r"num_calibration must be a positive int, got 2.5"),
    ],
    ids=["zero", "negative", "seed", "fraction"],
)
def test_int8_recipes_check_their_calibration(kwargs, message) -> None:
    from defectbench.zoo.derived import OrtInt8Recipe, Pt2eRecipe

    # 0 calibrated on no rows and failed at build time as an empty "export example"; a
    # negative count or seed failed inside numpy
    with pytest.raises(ConfigError, match=rf"INT8 recipe of 'p': {message}"):
        Pt2eRecipe("p", **kwargs)
    if "calibration_seed" in kwargs:
        with pytest.raises(ConfigError, match=message):
            OrtInt8Recipe("p", OrtStaticInt8Config(), **kwargs)


def test_derived_recipes_name_the_parent_and_teacher_they_are_made_from() -> None:
    # parents decide build order and keys: a pruned or QAT variant distilled from the
    # teacher that listed only its parent was keyed and built without the teacher
    from defectbench.zoo.derived import PRUNED_FILE, QAT_FILE, load_requirements
    from defectbench.zoo.profiles import TEACHER
    from defectbench.zoo.registry import all_recipes

    recipes = all_recipes("smoke")
    student = "tf_efficientnet_lite0.kd"
    for name in (f"{student}.pruned50", f"{student}.qat_pt2e"):
        assert recipes[name].distill.teacher == TEACHER
        assert recipes[name].parents == (student, TEACHER)
    assert recipes[f"{student}.int8_pt2e"].parents == (student,)
    # what a load opens in the variant's folder, and the parent it is rebuilt from each time
    assert load_requirements(recipes[f"{student}.pruned50"]) == ((PRUNED_FILE,), None)
    assert load_requirements(recipes[f"{student}.qat_pt2e"]) == ((QAT_FILE,), student)
    assert load_requirements(recipes[f"{student}.int8_pt2e"]) == ((), student)
    assert load_requirements(recipes[f"{student}.onnx"]) == (("model.onnx",), None)


def test_pt2e_calibration_with_fewer_samples_than_asked_is_refused() -> None:
    from defectbench.compress.pt2e import calibrate_pt2e, prepare_pt2e_int8

    prepared = prepare_pt2e_int8(tiny_cnn(), images(2, seed=116, size=16))
    with pytest.raises(ConfigError, match=r"calibration batches gave 2 samples, expected 4"):
        calibrate_pt2e(prepared, [images(2, seed=117, size=16)], num_samples=4)
    assert calibrate_pt2e(prepared, [images(3, seed=118, size=16)] * 2, num_samples=4) == 4


def test_pt2e_calibrates_a_batch_larger_than_max_batch_in_chunks() -> None:
    # the exported batch dimension stops at max_batch: a larger calibration batch is run in
    # slices of it, not refused by the graph's guard
    from defectbench.compress.pt2e import Pt2eInt8Config, calibrate_pt2e, prepare_pt2e_int8

    prepared = prepare_pt2e_int8(tiny_cnn(), images(2, seed=119, size=16), Pt2eInt8Config(2))
    assert calibrate_pt2e(prepared, [images(5, seed=120, size=16)]) == 5


def test_pt2e_config_keys_keep_the_old_form_only_at_the_old_value() -> None:
    from defectbench.compress.pt2e import Pt2eInt8Config

    assert Pt2eInt8Config().to_dict() == {
        "max_batch": 64, "reduce_range": False, "drop_unused_float_weights": True,
    }
    assert Pt2eInt8Config(drop_unused_float_weights=False).to_dict() == {
        "max_batch": 64, "reduce_range": False,
    }


def test_load_pruned_names_a_truncated_file(tmp_path) -> None:
    model = tiny_cnn()
    save_pruned(model, tmp_path / "whole.pt")
    data = (tmp_path / "whole.pt").read_bytes()
    for name, cut in (("half.pt", len(data) // 2), ("empty.pt", 0)):
        (tmp_path / name).write_bytes(data[:cut])
        # torch's own words: "PytorchStreamReader failed reading zip archive", or an empty
        # EOFError
        with pytest.raises(ArtifactError, match=rf"{name} cannot be read as a pruned model"):
            load_pruned(tmp_path / name, tiny_cnn())


def test_calibration_draws_only_the_batches_it_needs(tmp_path) -> None:
    # calibration batches may come from a loader over a whole split: reading past
    # num_calibration samples would preprocess images that are never used
    path = export_onnx(tiny_cnn(), images(2, seed=114, size=16), tmp_path / "m.onnx").path
    drawn: list[int] = []

    def loader():
        for i in range(3):
            drawn.append(i)
            yield images(3, seed=115 + i, size=16)

    quant = quantize_onnx_static(path, tmp_path / "q.onnx", loader(),
                                 OrtStaticInt8Config(num_calibration=4))
    assert quant.num_calibration_samples == 4 and drawn == [0, 1]


def test_one_array_passed_as_the_calibration_batches_is_named(tmp_path) -> None:
    from defectbench.compress.pt2e import calibrate_pt2e, prepare_pt2e_int8
    from defectbench.errors import DataError

    x = images(2, seed=109, size=16)
    path = export_onnx(tiny_cnn(), x, tmp_path / "m.onnx").path
    # was: "must be a non-empty float32 NCHW numpy batch, got float32 (3, 16, 16)"
    message = r"calibration batches must be an iterable .* shape \(2, 3, 16, 16\); wrap it"
    with pytest.raises(DataError, match=message):
        quantize_onnx_static(path, tmp_path / "q.onnx", x, OrtStaticInt8Config(num_calibration=2))
    with pytest.raises(DataError, match=message):
        calibrate_pt2e(prepare_pt2e_int8(tiny_cnn(), x), x)


def test_global_pruning_that_removes_nothing_is_refused() -> None:
    # at 0.999 every group would be emptied, so the model came back whole, reported as pruned
    with pytest.raises(ArtifactError, match=r"global pruning at ratio 0.999 removed nothing"):
        prune_model(tiny_cnn(), images(1, seed=110, size=16),
                    PruneConfig(ratio=0.999, global_pruning=True))
    # at 0.9 the ranking picks every channel of the first conv: Torch-Pruning skips that group
    # and prunes the rest, and the skipped group is named, not passed over
    with pytest.warns(UserWarning, match=r"left 1 layer group\(s\) whole .* features.0 \(16\)"):
        report = prune_model(tiny_cnn(), images(1, seed=110, size=16),
                             PruneConfig(ratio=0.9, global_pruning=True))
    assert report.kept_whole == (("features.0", 16),)
    assert report.params_after < 0.3 * report.params_before


def test_groups_too_narrow_for_round_to_are_kept_whole_and_reported() -> None:
    # round_to=8 rounds what ratio 0.3 keeps of a squeeze-excitation bottleneck (4 to 10
    # channels) down to none, so Torch-Pruning skips it at any ratio: this raised ArtifactError
    # ("lower the ratio") and failed a zoo build with an efficientnet_b0 teacher
    model = timm.create_model("mobilenetv3_small_100", pretrained=False, num_classes=2)
    with pytest.warns(UserWarning, match=r"round_to=8 rounds .* blocks.0.0.se.conv_reduce \(8\)"):
        report = prune_model(model, images(1, seed=111), PruneConfig(ratio=0.3, round_to=8))
    assert report.kept_whole == (("blocks.0.0.se.conv_reduce", 8),)
    assert report.to_dict()["kept_whole"] == [["blocks.0.0.se.conv_reduce", 8]]
    assert model.blocks[0][0].se.conv_reduce.out_channels == 8
    assert report.params_after < 0.8 * report.params_before
    assert torch_logits(model, images(1, seed=112)).shape == (1, 2)


def test_save_pruned_writes_torch_bytes_and_unreadable_files_say_so(tmp_path) -> None:
    import io
    import os

    from defectbench.compress.prune import PRUNED_FORMAT, pruned_structure

    model = tiny_cnn()
    path = tmp_path / "m.pt"
    save_pruned(model, path, metadata={"arch": "tiny"})
    # serialized in memory and written by defectbench.io (a full disk names the file)
    buffer = io.BytesIO()
    torch.save({"format": PRUNED_FORMAT, "structure": pruned_structure(model),
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "metadata": {"arch": "tiny"}}, buffer)
    assert path.read_bytes() == buffer.getvalue()
    if os.geteuid() != 0:  # root reads a 0o000 file
        path.chmod(0)
        try:
            # was "cannot be read as a pruned model ...; it is truncated or not a torch file"
            with pytest.raises(PermissionError, match=r"m.pt"):
                load_pruned(path, tiny_cnn())
        finally:
            path.chmod(0o644)
    np.testing.assert_array_equal(torch_logits(load_pruned(path, tiny_cnn()), images(1, 113, 16)),
                                  torch_logits(model, images(1, 113, 16)))


# --------------------------------------------------------------------------- batch checks (_io)


@pytest.mark.parametrize(
    ("batch", "got"),
    [
        (images(2, seed=121, size=16).astype(np.float64), r"got float64 \(2, 3, 16, 16\)"),
        (images(1, seed=121, size=16)[0], r"got float32 \(3, 16, 16\)"),
        (np.zeros((0, 3, 16, 16), np.float32), r"got float32 \(0, 3, 16, 16\)"),
        ([[0.0]], r"got list"),
    ],
    ids=["float64", "one-image", "empty", "list"],
)
def test_an_example_that_is_not_a_float32_nchw_batch_is_named(tmp_path, batch, got) -> None:
    from defectbench.errors import DataError

    # torch's own words: "Input type (double) and bias type (float) should be the same", an
    # "expected 4D input" from the first convolution, torch.export's ConstraintViolationError
    # for an empty batch, or an AttributeError for a list
    message = rf"export example must be a non-empty float32 NCHW .*{got}"
    with pytest.raises(DataError, match=message):
        export_onnx(tiny_cnn(), batch, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_non_finite_values_are_counted_and_their_samples_named(tmp_path) -> None:
    from defectbench.errors import DataError

    bad = images(3, seed=122, size=16)
    bad[0, 0, 0, :2] = np.nan  # two values of one sample
    bad[2, 1, 3, 3] = -np.inf
    message = r"holds 3 NaN or infinite values \(samples \[0, 2\] of 3\)"
    with pytest.raises(DataError, match=message):
        export_onnx(tiny_cnn(), bad, tmp_path / "m.onnx")


def test_constant_images_of_different_values_in_one_batch_are_still_blank() -> None:
    from defectbench.compress.pt2e import calibrate_pt2e, prepare_pt2e_int8
    from defectbench.errors import DataError

    # black and white frames in one batch: the batch varies, but no image does
    blank = np.concatenate([np.zeros((1, 3, 16, 16), np.float32),
                            np.ones((1, 3, 16, 16), np.float32)])
    prepared = prepare_pt2e_int8(tiny_cnn(), images(2, seed=123, size=16))
    with pytest.raises(DataError, match="every calibration sample is a constant image"):
        calibrate_pt2e(prepared, [blank])


def test_a_flipped_batch_view_is_accepted(tmp_path) -> None:
    # a horizontal flip is a view with a negative stride, which torch.from_numpy refuses
    x = images(2, seed=124, size=16)
    flipped = x[..., ::-1]
    report = export_onnx(tiny_cnn(), flipped, tmp_path / "m.onnx")
    assert report.parity.passed
    np.testing.assert_allclose(OrtPredictor(report.path).predict_logits(flipped),
                               torch_logits(tiny_cnn(), flipped.copy()), atol=1e-4)


def test_training_mode_is_restored_when_the_export_fails(tmp_path) -> None:
    model = tiny_cnn().train()
    model.features[1].eval()
    with torch.no_grad():
        model.head.bias[1] = float("nan")
    with pytest.raises(ArtifactError, match="parity"):
        export_onnx(model, images(2, seed=125, size=16), tmp_path / "nan.onnx")
    assert model.training and model.features[0].training and not model.features[1].training


def test_a_model_with_buffers_only_runs_where_its_buffers_are() -> None:
    from defectbench.compress._io import as_tensor, model_device

    model = nn.Module()
    model.register_buffer("scale", torch.ones(1, device="meta"))
    assert model_device(model) == torch.device("meta")
    assert as_tensor(images(1, seed=126, size=4), model).device == torch.device("meta")
    assert model_device(nn.Module()) == torch.device("cpu")
