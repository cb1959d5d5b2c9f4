"""Structured pruning (defectbench.compress.prune): groups left whole, the caller's model on
error, odd configs and models, and damaged pruned-model files.

Small hand-made models and random weights: these tests check the mechanics, not accuracy.
"""

from __future__ import annotations

import io
import struct
import warnings
import zipfile

import numpy as np
import pytest
import torch
from tiny_models import TinyCNN
from torch import nn

from defectbench.compress.prune import (
    PRUNED_FORMAT,
    PruneConfig,
    load_pruned,
    load_pruned_metadata,
    prune_model,
    pruned_structure,
    save_pruned,
)
from defectbench.errors import ArtifactError, ConfigError, DataError


def images(n: int, seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


def logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


class ChannelSplit(nn.Module):
    """Sums four slices of conv's channels: Torch-Pruning maps conv's 32 channels onto conv2's
    8 inputs, so removing 16 of them would empty conv2's input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        b, c, h, w = x.shape
        x = x.view(b, 4, c // 4, h, w).sum(1)
        return self.head(self.conv2(x).mean((2, 3)))


class FixedWidth(nn.Module):
    """Writes its width into forward, which Torch-Pruning's graph cannot see."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean((2, 3)).view(-1, 16))


def build(cls: type[nn.Module] = TinyCNN) -> nn.Module:
    torch.manual_seed(0)
    return cls().eval()


def snapshot(model: nn.Module) -> dict:
    """Everything about ``model`` that pruning could change, with the tensors' identities."""
    return {
        "params": {name: (p, p.detach().clone()) for name, p in model.named_parameters()},
        "buffers": {name: (b, b.clone()) for name, b in model.named_buffers()},
        "attributes": pruned_structure(model),
        "grads": {name: p.grad for name, p in model.named_parameters()},
        "training": {name: m.training for name, m in model.named_modules()},
    }


def assert_untouched(model: nn.Module, before: dict) -> None:
    after = dict(model.named_parameters())
    assert after.keys() == before["params"].keys()
    for name, (tensor, values) in before["params"].items():
        assert after[name] is tensor and torch.equal(tensor, values), name
    buffers = dict(model.named_buffers())
    for name, (tensor, values) in before["buffers"].items():
        assert buffers[name] is tensor and torch.equal(tensor, values), name
    assert pruned_structure(model) == before["attributes"]
    assert {name: p.grad for name, p in model.named_parameters()} == before["grads"]
    assert {name: m.training for name, m in model.named_modules()} == before["training"]


# --------------------------------------------------------------------------- groups left whole


def test_global_pruning_records_groups_its_ranking_kept_whole_without_a_warning() -> None:
    # features.0's channels all score alike and features.3's half score low: the global
    # threshold falls below features.0, which global pruning then rightly keeps whole
    model = build()
    with torch.no_grad():
        model.features[0].weight.fill_(0.1)
        scale = torch.tensor([0.1, 1.9] * 16)
        model.features[3].weight.copy_(0.1 * scale.view(32, 1, 1, 1).expand(32, 16, 3, 3))
        model.head.weight.copy_(0.1 * scale.view(1, 32).expand(2, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = prune_model(model, images(1, 1), PruneConfig(ratio=0.3, global_pruning=True))
    assert report.kept_whole_by_ranking == (("features.0", 16),)
    assert report.kept_whole == ()
    assert report.to_dict()["kept_whole_by_ranking"] == [["features.0", 16]]
    assert model.features[0].out_channels == 16 and model.features[3].out_channels == 16


def test_global_pruning_warns_about_and_reports_groups_torch_pruning_skipped() -> None:
    # at 0.9 the global ranking chose every channel of features.0, so Torch-Pruning left it
    # whole without a word (the report said nothing, and only "removed nothing" was caught)
    model = build()
    with pytest.warns(
        UserWarning,
        match=r"global pruning at ratio 0.9 left 1 layer group\(s\) whole that Torch-Pruning "
        r"skipped \(1: the global ranking chose all of their channels\): features.0 \(16\)",
    ):
        report = prune_model(model, images(1, 2), PruneConfig(ratio=0.9, global_pruning=True))
    assert report.kept_whole == (("features.0", 16),)
    assert report.kept_whole_by_ranking == ()
    assert report.to_dict()["kept_whole"] == [["features.0", 16]]
    assert model.features[0].out_channels == 16 and model.features[3].out_channels < 32


def test_global_pruning_names_a_group_whose_dependent_layer_it_would_empty() -> None:
    model = build(ChannelSplit)
    with pytest.warns(
        UserWarning, match=r"1: removing the channels it chose would empty a layer that depends"
    ):
        report = prune_model(model, images(1, 3), PruneConfig(ratio=0.5, global_pruning=True))
    assert report.kept_whole == (("conv", 32),)
    assert logits(model, images(2, 4)).shape == (2, 2)


def test_local_pruning_names_a_group_torch_pruning_turned_down_and_restores_the_model() -> None:
    # was "round_to=None rounds the channels ... down to 0 ... lower round_to", and conv2 and
    # the head came back pruned
    model = build(ChannelSplit)
    before = snapshot(model)
    with pytest.raises(
        ArtifactError,
        match=r"left 1 layer group\(s\) whole.*Torch-Pruning turned them down: removing those "
        r"channels would empty a layer that depends on them.*conv \(32\).*left as it was: use "
        r"global_pruning=True",
    ):
        prune_model(model, images(1, 3), PruneConfig(ratio=0.5))
    assert_untouched(model, before)


@pytest.mark.parametrize("global_pruning", [False, True], ids=["local", "global"])
def test_a_ratio_too_small_to_remove_a_channel_says_raise_it(global_pruning: bool) -> None:
    # 1 - 1e-17 == 1.0: no channel is chosen. Local pruning blamed round_to=None; global told
    # the user to lower the ratio
    message = (
        r"removed nothing: it is too small to remove a single channel; raise the ratio"
        if global_pruning
        else r"2: the ratio removes none of their channels .*: raise the ratio"
    )
    model = build()
    before = snapshot(model)
    with pytest.raises(ArtifactError, match=message):
        prune_model(model, images(1, 5), PruneConfig(ratio=1e-17, global_pruning=global_pruning))
    assert_untouched(model, before)


def test_a_group_that_keeps_exactly_round_to_channels_is_not_excused_as_too_narrow() -> None:
    # ratio 0.5 keeps 16 of conv's 32 channels, which round_to=16 keeps too: the group is
    # left whole because pruning it would empty conv2's input, not because it is too narrow
    # for round_to, so it is an error and not the "kept whole by design" warning
    model = build(ChannelSplit)
    before = snapshot(model)
    with pytest.raises(
        ArtifactError, match=r"left 1 layer group\(s\) whole.*Torch-Pruning turned them down"
        r".*: conv \(32\)"
    ):
        prune_model(model, images(1, 3), PruneConfig(ratio=0.5, round_to=16))
    assert_untouched(model, before)


def test_attention_heads_too_narrow_for_round_to_are_refused_not_excused() -> None:
    # ratio 0.5 keeps 32 of each 64-wide head's dimensions (96 per 192-wide q/k/v group),
    # which round_to=128 rounds to none: a squeeze-excitation bottleneck that narrow is kept
    # whole with a warning, but head dimensions are an error: the embedding still shrinks
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", num_classes=2, img_size=32).eval()
    with pytest.raises(
        ArtifactError, match=r"left 12 layer group\(s\) whole.*12: round_to=128 rounds the "
        r"channels that ratio keeps \(per head or channel group\) down to 0.*attn\.qkv \(576\)"
    ):
        prune_model(model, images(1, 14, size=32), PruneConfig(ratio=0.5, round_to=128))
    assert [block.attn.head_dim for block in model.blocks] == [64] * 12


def test_a_ratio_that_keeps_no_dimension_of_a_head_says_lower_it() -> None:
    # Torch-Pruning keeps int(64 * 0.005) = 0 of each head's dimensions, not int(576 * 0.005)
    # = 2 of the whole qkv: the 12 qkv groups (and the embedding-wide group of fc2) would be
    # emptied, so Torch-Pruning leaves them whole, which the message must blame on the ratio
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", num_classes=2, img_size=32).eval()
    with pytest.raises(
        ArtifactError,
        match=r"left 13 layer group\(s\) whole, which Torch-Pruning does without a word \(13: "
        r"the ratio keeps int\(channels \* 0.005\) = 0 of their channels\).*attn\.qkv \(576\)"
        r".*: lower the ratio$",
    ):
        prune_model(model, images(1, 18, size=32), PruneConfig(ratio=0.995))


class OneWide(nn.Module):
    """A one-channel squeeze: a layer group Torch-Pruning lists but can never prune."""

    def __init__(self) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(3, 1, 3, padding=1)
        self.conv = nn.Conv2d(1, 16, 3, padding=1)
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(self.squeeze(x)).mean((2, 3)))


def test_a_global_prune_that_removed_nothing_is_refused_beside_a_one_channel_group() -> None:
    # the one-channel group cannot be pruned and so is never "left whole": counting it among
    # the groups that could have been let a prune that removed nothing pass
    model = build(OneWide)
    before = snapshot(model)
    with pytest.raises(ArtifactError, match=r"global pruning at ratio 1e-17 removed nothing"):
        prune_model(model, images(1, 5), PruneConfig(ratio=1e-17, global_pruning=True))
    assert_untouched(model, before)


def test_the_report_gives_the_image_shape_and_ratios_of_after_to_before() -> None:
    # the zoo's manifest and report tables read these: a ratio above 1 for a model that shrank
    report = prune_model(build(), images(2, 16), PruneConfig(ratio=0.5))
    assert report.input_shape == (3, 16, 16)  # one image's, whatever the example's batch
    assert report.params_after < report.params_before
    assert report.params_ratio == report.params_after / report.params_before < 1
    assert report.macs_ratio == report.macs_after / report.macs_before < 1
    data = report.to_dict()
    assert data["input_shape"] == [3, 16, 16]
    assert (data["params_ratio"], data["macs_ratio"]) == (report.params_ratio, report.macs_ratio)


class MlpHead(nn.Module):
    """No get_classifier(): the classifier is the last of two nn.Linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.hidden = nn.Linear(16, 32)
        self.out = nn.Linear(32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(self.conv(x).mean((2, 3)))))


def test_without_get_classifier_the_last_linear_keeps_its_outputs() -> None:
    model = build(MlpHead)
    prune_model(model, images(1, 17), PruneConfig(ratio=0.5))
    assert (model.hidden.out_features, model.out.out_features) == (16, 2)
    assert logits(model, images(3, 17)).shape == (3, 2)


# --------------------------------------------------------------------------- caller's model


def test_failed_local_pruning_leaves_the_callers_model_as_it_was() -> None:
    # the check ran after pruner.step(): the caller got an error and a model with features.3
    # and the head pruned (the zoo deep-copies first; a library user did not)
    model = build()
    model.train()
    model.features[1].eval()  # a frozen BatchNorm stays frozen
    x = images(2, 6)
    nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.tensor([0, 1])).backward()
    calls = []
    handle = model.features[0].register_forward_hook(lambda *args: calls.append(1))
    before = snapshot(model)
    with pytest.raises(ArtifactError, match=r"ratio 0.97 .*left as it was: lower the ratio"):
        prune_model(model, x, PruneConfig(ratio=0.97))
    assert_untouched(model, before)
    # the hooks dict the caller's handle points at is the one the module still uses
    calls.clear()
    logits(model, x)
    assert calls == [1]
    handle.remove()
    logits(model, x)
    assert calls == [1]
    # and the restored model prunes as a fresh one does
    report = prune_model(model, x, PruneConfig(ratio=0.5))
    fresh = build()
    assert report == prune_model(fresh, x, PruneConfig(ratio=0.5))
    np.testing.assert_array_equal(logits(model.eval(), x), logits(fresh, x))


def test_a_pruned_model_that_no_longer_runs_is_refused_and_restored() -> None:
    # a RuntimeError from the pruned model's forward, with the model already pruned
    model = build(FixedWidth)
    before = snapshot(model)
    reference = logits(model, images(2, 7))
    with pytest.raises(
        ArtifactError,
        match=r"the pruned FixedWidth no longer runs \(RuntimeError: shape '\[-1, 16\]'.*"
        r"Torch-Pruning missed a dependency.*left as it was",
    ):
        prune_model(model, images(1, 7), PruneConfig(ratio=0.5))
    assert_untouched(model, before)
    np.testing.assert_array_equal(logits(model, images(2, 7)), reference)


def test_failed_global_head_pruning_leaves_a_vit_as_it_was() -> None:
    # the error came from the attention fix-up after pruner.step(), some blocks already
    # pruned and given their new head counts
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", num_classes=2, img_size=32).eval()
    x = images(1, 12, size=32)
    before, reference = snapshot(model), logits(model, x)
    with pytest.raises(ArtifactError, match=r"removed every head of blocks\.\d+\.attn.*as it was"):
        prune_model(model, x, PruneConfig(ratio=0.9, prune_num_heads=True, global_pruning=True))
    assert_untouched(model, before)
    assert [block.attn.num_heads for block in model.blocks] == [3] * 12
    np.testing.assert_array_equal(logits(model, x), reference)


def test_head_pruning_removes_whole_heads_and_keeps_each_heads_dimensions() -> None:
    # prune_num_heads removes ceil(0.3 * 3) = 1 of each block's 3 heads and keeps the other
    # two 64 wide: shrinking them as well would prune twice what the user asked of attention
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", num_classes=2, img_size=32).eval()
    x = images(2, 13, size=32)
    report = prune_model(model, x, PruneConfig(ratio=0.3, prune_num_heads=True))
    assert {(heads, dim) for _, heads, dim in report.attention_heads} == {(2, 64)}
    assert len(report.attention_heads) == 12
    for block in model.blocks:
        attn = block.attn
        assert (attn.num_heads, attn.head_dim, attn.attn_dim) == (2, 64, 128)
        assert attn.qkv.out_features == 3 * 128 and attn.proj.in_features == 128
        assert attn.scale == pytest.approx(64**-0.5)
    assert logits(model, x).shape == (2, 2)


def test_an_example_the_model_cannot_run_is_a_data_error() -> None:
    model = build()
    with pytest.raises(
        DataError, match=r"pruning example \(shape \(1, 1, 16, 16\)\) does not run through TinyCNN"
    ):
        prune_model(model, np.zeros((1, 1, 16, 16), np.float32), PruneConfig(ratio=0.5))


@pytest.mark.parametrize("global_pruning", [False, True], ids=["local", "global"])
def test_a_model_with_nothing_to_prune_is_refused(global_pruning: bool) -> None:
    # local pruning returned a report of a model pruned by nothing; global said "lower the ratio"
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2)).eval()
    with pytest.raises(ConfigError, match=r"Sequential has no layer that Torch-Pruning can prune"):
        prune_model(model, images(1, 8), PruneConfig(ratio=0.5, global_pruning=global_pruning))


def test_taylor_pruning_with_empty_gradient_batches_is_refused_and_restores_the_model() -> None:
    # an exhausted generator: no gradient to rank channels by, so the ranking was arbitrary
    model = build()
    before = snapshot(model)
    with pytest.raises(ConfigError, match=r"gradient_batches is empty; taylor importance needs"):
        prune_model(
            model, images(1, 9), PruneConfig(ratio=0.5, importance="taylor"),
            gradient_batches=iter([]),
        )
    assert_untouched(model, before)


def test_gradient_batches_without_taylor_importance_are_refused() -> None:
    # they were ignored without a word
    x = images(2, 9)
    with pytest.raises(ConfigError, match=r"gradient_batches are used only by importance='taylor'"):
        prune_model(build(), x, PruneConfig(ratio=0.5), gradient_batches=[(x, np.array([0, 1]))])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": "0.5"}, r"ratio must be a number, got '0.5'"),
        ({"ratio": True}, r"ratio must be a number, got True"),
        ({"ratio": float("nan")}, r"pruning ratio must be in \(0, 1\), got nan"),
        # 1.0 would remove every channel of every group
        ({"ratio": 1.0}, r"pruning ratio must be in \(0, 1\), got 1.0"),
        ({"ratio": 0.5, "norm_p": True}, r"norm_p must be 1 or 2, got True"),
        ({"ratio": 0.5, "norm_p": 3}, r"norm_p must be 1 or 2, got 3"),
        ({"ratio": 0.5, "round_to": True}, r"round_to must be a positive int or None, got True"),
        ({"ratio": 0.5, "global_pruning": "no"}, r"global_pruning must be True or False"),
        ({"ratio": 0.5, "prune_num_heads": 1}, r"prune_num_heads must be True or False"),
        # Torch-Pruning applies it only between iterative steps: a global prune at 0.5 with a
        # cap of 0.5 removed 56% of a Lite0 layer, the same as without one
        ({"ratio": 0.5, "max_layer_ratio": 0.8}, r"max_layer_ratio=0.8 would cap nothing"),
    ],
    ids=[
        "str", "bool", "nan", "one", "norm-bool", "norm-3", "round-bool", "global-str",
        "heads-int", "cap",
    ],
)
def test_prune_config_refuses_wrong_types_and_an_inert_cap(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        PruneConfig(**kwargs)


# --------------------------------------------------------------------------- save / load


@pytest.fixture
def saved(tmp_path):
    """(path, pruned model) of a pruned TinyCNN saved with save_pruned."""
    model = build()
    prune_model(model, images(1, 10), PruneConfig(ratio=0.5))
    path = tmp_path / "pruned.pt"
    save_pruned(model, path, metadata={"arch": "tiny"})
    return path, model


def record_offset(data: bytes, name: str) -> int:
    """Where the bytes of zip record ``name`` start (after its local header)."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    name_len, extra_len = struct.unpack(
        "<HH", data[info.header_offset + 26 : info.header_offset + 30]
    )
    return info.header_offset + 30 + name_len + extra_len


def test_load_pruned_refuses_a_flipped_weight_byte(saved) -> None:
    # torch does not check tensor bytes: the model loaded with another weight, without a word
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[record_offset(bytes(data), "archive/data/0") + 10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(
        ArtifactError, match=r"pruned.pt is damaged: its record 'archive/data/0' fails"
    ):
        load_pruned(path, build())
    with pytest.raises(ArtifactError, match=r"is damaged"):
        load_pruned_metadata(path)


def test_load_pruned_refuses_a_record_marked_as_a_folder(saved) -> None:
    # the CRCs still match, but torch then read no bytes for head.bias and loaded an
    # uninitialized tensor
    path, _ = saved
    data = bytearray(path.read_bytes())
    name = b"archive/data/10"
    entry = data.index(name, zipfile.ZipFile(io.BytesIO(bytes(data))).start_dir) - 46
    data[entry + 38] |= 0x10  # external attributes: MS-DOS directory
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"record 'archive/data/10' is marked as a folder"):
        load_pruned(path, build())


def test_load_pruned_never_loads_a_damaged_file(saved, tmp_path) -> None:
    # any one byte flipped: an ArtifactError, or (bytes no reader uses) the same model
    path, model = saved
    data = path.read_bytes()
    x = images(1, 11)
    expected = logits(model, x)
    damaged = tmp_path / "damaged.pt"
    loaded = 0
    for offset in range(0, len(data), 7):
        flipped = bytearray(data)
        flipped[offset] ^= 0x55
        damaged.write_bytes(bytes(flipped))
        try:
            rebuilt = load_pruned(damaged, build())
        except ArtifactError:
            continue
        loaded += 1
        np.testing.assert_array_equal(logits(rebuilt, x), expected, err_msg=f"byte {offset}")
    assert loaded < len(data) // 7 // 2  # most flips were caught, not skipped


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"format": PRUNED_FORMAT}, r"its structure .*, state_dict .*, metadata .* is missing"),
        (
            {"format": PRUNED_FORMAT, "structure": [], "state_dict": {}, "metadata": {}},
            r"its structure \(module name -> plain attributes\) is missing or malformed",
        ),
        (
            {
                "format": PRUNED_FORMAT,
                "structure": {},
                "state_dict": {"head.weight": 3},
                "metadata": {},
            },
            r"its state_dict \(name -> tensor\) is missing or malformed",
        ),
        (
            {"format": PRUNED_FORMAT, "structure": {}, "state_dict": {}, "metadata": [1]},
            r"its metadata \(a dict\) is missing or malformed",
        ),
    ],
    ids=["bare", "structure-list", "state-int", "metadata-list"],
)
def test_load_pruned_names_a_malformed_payload(tmp_path, payload, message) -> None:
    # KeyError 'structure', AttributeError "'list' object has no attribute 'items'", ...
    path = tmp_path / "odd.pt"
    torch.save(payload, path)
    with pytest.raises(ArtifactError, match=message):
        load_pruned(path, build())
    with pytest.raises(ArtifactError, match=message):
        load_pruned_metadata(path)


def test_load_pruned_that_does_not_fit_leaves_the_base_model_as_it_was(saved, tmp_path) -> None:
    # load_state_dict copies what fits, then complains: the base model was half loaded
    path, _ = saved
    base = build()
    base.features[1].register_buffer("extra", torch.zeros(3))
    before = snapshot(base)
    with pytest.raises(
        ArtifactError,
        match=r"does not fit TinyCNN: it lacks tensors "
        r"\['features.1.extra'\]",
    ):
        load_pruned(path, base)
    assert_untouched(base, before)
    # a structure attribute named like a parameter: TypeError from nn.Module.__setattr__
    payload = torch.load(path, weights_only=True)
    payload["structure"]["head"]["weight"] = 3
    torch.save(payload, tmp_path / "clash.pt")
    base = build()
    before = snapshot(base)
    with pytest.raises(ArtifactError, match=r"does not fit TinyCNN: head.weight cannot be set"):
        load_pruned(tmp_path / "clash.pt", base)
    assert_untouched(base, before)


@pytest.mark.parametrize(
    "metadata", [[("arch", "tiny")], "tiny", {1: "tiny"}], ids=["pairs", "str", "int-key"]
)
def test_save_pruned_refuses_metadata_that_is_not_a_str_keyed_dict(tmp_path, metadata) -> None:
    # a str raised a bare ValueError from dict(); pairs and int keys were written as given
    with pytest.raises(ConfigError, match=r"metadata must be a dict with str keys"):
        save_pruned(build(), tmp_path / "m.pt", metadata)
    assert not (tmp_path / "m.pt").exists()


def test_load_pruned_keeps_the_base_models_mode_whatever_mode_it_was_saved_in(tmp_path) -> None:
    # the mode is not structure: a model saved mid-training loaded with its batch norm in
    # training mode, scoring each batch with that batch's own statistics
    model = build()
    prune_model(model, images(1, 10), PruneConfig(ratio=0.5))
    model.train()
    path = tmp_path / "pruned.pt"
    save_pruned(model, path)
    rebuilt = load_pruned(path, build())
    assert not any(module.training for module in rebuilt.modules())
    x = images(3, 15)
    np.testing.assert_array_equal(logits(rebuilt, x), logits(model.eval(), x))


def test_save_pruned_refuses_metadata_values_that_load_cannot_read_back(tmp_path) -> None:
    # a numpy scalar pickles fine but torch.load(weights_only=True) refuses it: the file
    # would be written and then never load
    with pytest.raises(ConfigError, match=r"metadata values must be plain .*not \['ratio'\]"):
        save_pruned(build(), tmp_path / "m.pt", {"arch": "tiny", "ratio": np.float64(0.5)})
    assert not (tmp_path / "m.pt").exists()


def test_load_pruned_keeps_frozen_parameters_frozen(saved) -> None:
    # a parameter replaced by one of the pruned shape became trainable again, so fine-tuning
    # a student with a frozen stem trained the stem too
    path, _ = saved
    base = build()
    base.features[0].requires_grad_(False)
    rebuilt = load_pruned(path, base)
    assert rebuilt.features[0].weight.shape[0] < 16  # replaced, not copied into
    assert not any(p.requires_grad for p in rebuilt.features[0].parameters())
    assert rebuilt.features[3].weight.requires_grad and rebuilt.head.weight.requires_grad


def test_save_pruned_that_fails_midway_leaves_the_previous_file(saved, monkeypatch) -> None:
    # a full disk while writing: the file that was there still loads, not a truncated one
    import defectbench.io

    path, _ = saved
    data = path.read_bytes()

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(defectbench.io.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        save_pruned(build(), path, metadata={"arch": "other"})
    monkeypatch.undo()
    assert path.read_bytes() == data
    assert load_pruned_metadata(path) == {"arch": "tiny"}


def test_load_pruned_lets_go_of_each_unpruned_tensor_it_replaces(saved, monkeypatch) -> None:
    # the suite measures the RAM a pruned artifact's load takes: a snapshot of the base model
    # taken to undo a failed load kept every replaced full-size tensor alive until the load
    # ended (pruned30 teacher: 41 -> 52 MB)
    import gc
    import weakref

    path, pruned = saved
    base = build()
    resized = [
        weakref.ref(tensor)
        for name, tensor in base.state_dict(keep_vars=True).items()
        if tensor.shape != pruned.state_dict()[name].shape
    ]
    assert resized  # the pruned model has tensors of other shapes
    alive_while_loading = []
    load_state_dict = nn.Module.load_state_dict

    def spy(self, *args, **kwargs):
        gc.collect()
        alive_while_loading.append(sum(ref() is not None for ref in resized))
        return load_state_dict(self, *args, **kwargs)

    monkeypatch.setattr(nn.Module, "load_state_dict", spy)
    load_pruned(path, base)
    assert alive_while_loading == [0]


def test_a_torch_pruning_that_bypasses_the_wrapped_hooks_is_named(monkeypatch) -> None:
    # the group decisions are read by wrapping two Torch-Pruning internals: a release that
    # stops calling them would report every group as unranked or kept whole by the ranking
    import defectbench.compress.prune as prune_module

    monkeypatch.setattr(prune_module, "_record_group_decisions", lambda pruner: (set(), {}))
    model = build()
    before = snapshot(model)
    with pytest.raises(ArtifactError, match=r"ranked no layer group through "
                       r"BasePruner.estimate_importance.*torch-pruning>=1.6,<1.7"):
        prune_model(model, images(1, 10), PruneConfig(ratio=0.5))
    assert_untouched(model, before)
