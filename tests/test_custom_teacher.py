"""Another teacher from a local checkpoint: built from the file's weights, and named with its
options wherever a command is given back (`zoo list`, rebuild advice).

The checkpoints here are untrained (timm's small test models): they test the loading,
building and naming path only, never a teacher's quality.
"""

from __future__ import annotations

import torch

from defectbench.cli import main
from defectbench.zoo.profiles import get_profile
from defectbench.zoo.store import ZooStore


def _checkpoint(path, arch="test_resnet", seed=0, save="torch"):
    """An ImageNet-shaped (1000-class) state_dict of `arch`, as a user would save one."""
    import timm

    torch.manual_seed(seed)
    state = timm.create_model(arch, num_classes=1000).state_dict()
    if save == "torch":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    return path, state


def test_a_teacher_built_from_a_checkpoint_starts_from_its_weights_with_a_new_head(
    tmp_path, no_teacher_env
):
    from defectbench.zoo.build import build_zoo, load_trained_model
    from defectbench.zoo.catalog import Catalog

    weights, state = _checkpoint(tmp_path / "resnet.pth")
    no_teacher_env.setenv("DEFECTBENCH_TEACHER", "test_resnet")
    no_teacher_env.setenv("DEFECTBENCH_TEACHER_SIZE", "32")
    no_teacher_env.setenv("DEFECTBENCH_TEACHER_WEIGHTS", str(weights))
    profile = get_profile("smoke")
    manifest = build_zoo(profile, tmp_path / "zoo", [profile.teacher],
                         log=lambda _: None)[profile.teacher]
    assert manifest["weights"]["checkpoint_num_classes"] == 1000
    catalog = Catalog(tmp_path / "zoo", profile)
    built = load_trained_model(catalog.store, profile.teacher, catalog.recipe(profile.teacher),
                               catalog.keys[profile.teacher]).state_dict()
    assert built["fc.weight"].shape[0] == 2  # the 1000-class head replaced for 2 classes
    # one short epoch of fine-tuning moves the stem a little; a random start is unrelated
    stem = "conv1.0.weight"
    cosine = torch.nn.functional.cosine_similarity(
        built[stem].flatten(), state[stem].flatten(), dim=0)
    assert cosine > 0.95


def test_the_rebuild_advice_of_another_teachers_folder_names_its_exact_options(
    tmp_path, no_teacher_env
):
    # "with the --teacher options this folder was built with" left the user to find them
    weights, _ = _checkpoint(tmp_path / "my weights.safetensors", save="safetensors")
    no_teacher_env.setenv("DEFECTBENCH_TEACHER", "test_resnet")
    no_teacher_env.setenv("DEFECTBENCH_TEACHER_SIZE", "32")
    no_teacher_env.setenv("DEFECTBENCH_TEACHER_WEIGHTS", str(weights))
    profile = get_profile("smoke")
    store = ZooStore(tmp_path / "zoo", "smoke", profile.zoo_folder)
    assert store.rebuild_command("test_resnet.teacher") == (
        f"`defectbench zoo build --profile smoke --zoo {tmp_path / 'zoo'} --teacher test_resnet "
        f"--teacher-size 32 --teacher-weights '{weights}' --variants test_resnet.teacher`")
    # a folder of a teacher this process was not given: its options are not known here
    other = ZooStore(tmp_path / "zoo", "smoke", "smoke@convnext_base-224px")
    assert other.rebuild_command().endswith(
        "with the --teacher options this folder (smoke@convnext_base-224px) was built with")


def test_zoo_list_names_the_teacher_and_its_weights_file(tmp_path, no_teacher_env, capsys):
    weights, _ = _checkpoint(tmp_path / "resnet.pth")
    assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path / "zoo"),
                 "--teacher", "test_resnet", "--teacher-size", "32",
                 "--teacher-weights", str(weights)]) == 0
    err = capsys.readouterr().err
    assert (f"teacher: test_resnet.teacher (test_resnet fine-tuned at 32 px; weights from "
            f"{weights}, keyed by its sha256)") in err
    # the command that builds the rest is one to copy and paste, options included
    assert f"--teacher test_resnet --teacher-size 32 --teacher-weights {weights}`" in err


def test_zoo_list_of_the_default_teacher_adds_no_teacher_line(tmp_path, no_teacher_env, capsys):
    assert main(["zoo", "list", "--profile", "smoke", "--zoo", str(tmp_path / "zoo")]) == 0
    assert "teacher:" not in capsys.readouterr().err
