"""Speed-target files are refused when a target could never be measured: a target naming a
case no run benchmarks would be skipped as "not measured" forever, and its gate never fire."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from defectbench.errors import ConfigError
from defectbench.suite import check_speed_targets_apply, judge_speed_target, load_speed_targets
from defectbench.zoo.catalog import Catalog
from defectbench.zoo.profiles import TEACHER

REPO = Path(__file__).resolve().parents[1]

TARGET = f"""
[[target]]
name = "teacher-ort-int8-vs-fp32-b1"
faster = "{TEACHER}.int8_ort"
faster_precision = "int8"
slower = "{TEACHER}.onnx"
slower_precision = "fp32"
device = "cpu"
batch = 1
min_ratio = 1.5
"""


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return Catalog(tmp_path_factory.mktemp("zoo"), "smoke")  # names and capabilities only


def _write(tmp_path, text):
    path = tmp_path / "speed_targets.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["speed_targets.toml", "speed_targets-smoke.toml"])
def test_the_shipped_targets_load_and_name_cases_of_the_zoo(name, catalog):
    path = REPO / "fixtures" / name
    targets = load_speed_targets(path)
    assert targets and targets[0].faster == f"{TEACHER}.int8_ort"
    check_speed_targets_apply(targets, catalog, str(path))


def test_teacher_in_a_target_stands_for_the_profiles_teacher(tmp_path):
    from defectbench.zoo.profiles import get_profile, with_teacher

    profile = with_teacher(get_profile("smoke"), "convnext_base")
    path = REPO / "fixtures" / "speed_targets.toml"
    [target] = load_speed_targets(path, profile.teacher)
    assert (target.faster, target.slower) == ("convnext_base.teacher.int8_ort",
                                              "convnext_base.teacher.onnx")
    check_speed_targets_apply([target], Catalog(tmp_path, profile), str(path))


def test_an_empty_file_is_refused(tmp_path):
    for path in (_write(tmp_path, "# nothing yet\n"), Path("/dev/null")):
        with pytest.raises(ConfigError, match=r"no \[\[target\]\] entries.*passes every run"):
            load_speed_targets(path)
    with pytest.raises(ConfigError, match="note the double brackets"):
        load_speed_targets(_write(tmp_path, TARGET.replace("[[target]]", "[target]")))
    with pytest.raises(ConfigError, match="unknown top-level key 'targets'"):
        load_speed_targets(_write(tmp_path, TARGET.replace("[[target]]", "[[targets]]")))


def test_a_folder_is_refused_with_the_file_to_pass(tmp_path):
    # was "is unreadable or malformed: [Errno 21] Is a directory", with no fix
    with pytest.raises(ConfigError, match=rf"speed targets file '{tmp_path}' is a folder, not a "
                                          r"file; pass the speed targets TOML file, e\.g\. "
                                          r"fixtures/speed_targets\.toml"):
        load_speed_targets(tmp_path)


@pytest.mark.parametrize(
    ("written", "wrong", "expected"),
    [
        ('"int8"', '"INT8"', ["faster_precision = 'INT8'",
                              "'fp32', 'bf16', 'fp16', 'int8' (lower case)"]),
        ('device = "cpu"', 'device = "gpu"', ["device = 'gpu'",
                                              "'cpu', 'cuda' (a GPU is 'cuda')"]),
        # the measured case's batch is an int: "1" would never match it, 0 names no case
        ("batch = 1", 'batch = "1"', ["batch must be a whole number >= 1", "got '1'"]),
        ("batch = 1", "batch = 0", ["batch must be a whole number >= 1", "got 0"]),
        ("batch = 1", "batch = 1.0", ["batch must be a whole number >= 1", "got 1.0"]),
        ("min_ratio = 1.5", 'min_ratio = "1.5"', ["min_ratio must be a finite number > 0",
                                                  "got '1.5'"]),
        # a ratio no measurement reaches: the target could never pass
        ("min_ratio = 1.5", "min_ratio = inf", ["min_ratio must be a finite number > 0",
                                                "got inf"]),
        # one case against itself: a ratio of 1 by construction, judging nothing
        (f'slower = "{TEACHER}.onnx"\nslower_precision = "fp32"',
         f'slower = "{TEACHER}.int8_ort"\nslower_precision = "int8"',
         ["faster and slower are the same case", "ratio is 1 by construction"]),
    ],
)
def test_a_wrong_case_precision_or_unknown_device_is_refused_with_the_choices(
    tmp_path, written, wrong, expected
):
    path = _write(tmp_path, TARGET.replace(written, wrong))
    with pytest.raises(ConfigError) as info:
        load_speed_targets(path)
    message = str(info.value)
    assert str(path) in message and "[[target]] #1" in message
    assert "'teacher-ort-int8-vs-fp32-b1'" in message
    for part in expected:
        assert part in message


def test_a_misspelt_variant_is_refused_naming_the_close_matches(tmp_path, catalog):
    path = _write(tmp_path, TARGET.replace(".int8_ort\"", ".int8_ortt\""))
    targets = load_speed_targets(path)  # the file itself is well formed
    with pytest.raises(ConfigError) as info:
        check_speed_targets_apply(targets, catalog, str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: speed target 'teacher-ort-int8-vs-fp32-b1' has "
                              f"faster = '{TEACHER}.int8_ortt', which is not a variant")
    assert f"close matches: '{TEACHER}.int8_ort'" in message
    assert f"variants are {', '.join(map(repr, catalog.names))}" in message

    # the other side too, and a precision the variant has no build for on that device
    slower = load_speed_targets(_write(tmp_path, TARGET.replace(".onnx\"", ".onx\"")))
    with pytest.raises(ConfigError, match=rf"slower = '{TEACHER}.onx', which is not a variant"):
        check_speed_targets_apply(slower, catalog, "f")
    fp16 = load_speed_targets(_write(tmp_path, TARGET.replace('"fp32"', '"fp16"')))
    with pytest.raises(ConfigError, match=r"has no fp16 build for cpu \(it offers fp32 there\)"):
        check_speed_targets_apply(fp16, catalog, "f")


def test_a_misspelt_or_missing_key_names_the_allowed_keys(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_speed_targets(_write(tmp_path, TARGET.replace("min_ratio", "min_ration")))
    message = str(info.value)
    assert "[[target]] #1: unknown key 'min_ration'; allowed keys are 'name'," in message
    assert message.endswith("did you mean 'min_ratio'?")
    with pytest.raises(ConfigError, match=r"#1: missing required key\(s\) 'batch'"):
        load_speed_targets(_write(tmp_path, TARGET.replace("batch = 1\n", "")))


def test_a_batch_no_run_measures_is_refused_unless_this_run_asks_for_it(tmp_path, catalog):
    # batch 4 is not a default batch size: every default run would skip the target
    path = _write(tmp_path, TARGET.replace("batch = 1", "batch = 4"))
    targets = load_speed_targets(path)
    with pytest.raises(ConfigError, match=(
            r"has batch = 4, which a default run never measures \(batch sizes 1, 8, 32\), nor "
            r"this one; .*--batch-sizes including 4")):
        check_speed_targets_apply(targets, catalog, str(path), batches=(1,))
    check_speed_targets_apply(targets, catalog, str(path), batches=(1, 4))
    # a default batch this run leaves out is "not measured in this run", not a mistake
    eight = load_speed_targets(_write(tmp_path, TARGET.replace("batch = 1", "batch = 8")))
    check_speed_targets_apply(eight, catalog, str(path), batches=(1,))


class _UnmeasuredSuite:
    """A suite that benchmarked nothing, as on a host without the target's device."""

    def __init__(self, catalog):
        self.catalog, self.latency = catalog, {}


def test_judging_refuses_a_misspelt_variant_instead_of_skipping_it(tmp_path, catalog):
    (target,) = load_speed_targets(_write(tmp_path, TARGET.replace(".int8_ort\"", ".int8_ortt\"")))
    with pytest.raises(ConfigError, match="which is not a variant of this zoo"):
        judge_speed_target(_UnmeasuredSuite(catalog), target)


def test_a_target_at_a_batch_this_run_measures_is_judged_not_refused(tmp_path, catalog):
    # batch 4 is accepted at collection when --batch-sizes has it; judging must not refuse it
    (target,) = load_speed_targets(_write(tmp_path, TARGET.replace("batch = 1", "batch = 4")))
    assert judge_speed_target(_UnmeasuredSuite(catalog), target) == {
        "name": "teacher-ort-int8-vs-fp32-b1",
        "measured": False,
        "missing": [f"{TEACHER}.int8_ort-int8-cpu-b4", f"{TEACHER}.onnx-fp32-cpu-b4"],
    }


def test_a_valid_cuda_target_on_a_cpu_host_is_still_skipped_not_refused(tmp_path, catalog):
    text = (TARGET.replace('device = "cpu"', 'device = "cuda"')
            .replace(".int8_ort\"", ".onnx\"").replace('"int8"', '"fp16"'))
    (target,) = load_speed_targets(_write(tmp_path, text))
    check_speed_targets_apply([target], catalog, "f")
    assert judge_speed_target(_UnmeasuredSuite(catalog), target) == {
        "name": "teacher-ort-int8-vs-fp32-b1",
        "measured": False,
        "missing": [f"{TEACHER}.onnx-fp16-cuda-b1", f"{TEACHER}.onnx-fp32-cuda-b1"],
    }


def test_two_targets_of_one_name_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="name 'teacher-ort-int8-vs-fp32-b1' is used by more "
                                          "than one"):
        load_speed_targets(_write(tmp_path, TARGET + TARGET.replace("batch = 1", "batch = 8")))


def test_a_cuda_target_carries_the_gpu_marks_of_its_cases(tmp_path, catalog, monkeypatch):
    # without them `tox -e gpu` (-m gpu) deselected every CUDA target, and a CPU host skipped
    # it as "not measured ... run test_latency.py"
    import defectbench.plugin as plugin

    cuda = (TARGET.replace('device = "cpu"', 'device = "cuda"').replace("-b1", "-cuda")
            .replace(".int8_ort\"", ".onnx\"").replace('"int8"', '"fp16"'))
    path = _write(tmp_path, TARGET + cuda)
    monkeypatch.setattr(plugin, "profile_file", lambda stem, profile: path)
    monkeypatch.setattr(plugin, "_catalog", lambda config: catalog)
    monkeypatch.setattr(plugin, "option",
                        lambda config, name: "smoke" if name == "--zoo-profile" else None)
    monkeypatch.setattr(plugin, "_selection", lambda config: SimpleNamespace(batches=(1,)))
    seen = {}

    class Metafunc:
        config = None

        def parametrize(self, name, params):
            seen.update({p.id: {m.name for m in p.marks} for p in params})

    plugin._parametrize_speed_targets(Metafunc())
    assert seen["teacher-ort-int8-vs-fp32-b1"] == set()
    assert seen["teacher-ort-int8-vs-fp32-cuda"] == {"gpu", "skipif"}


def test_a_byte_order_mark_is_read_and_a_relative_path_not_found_names_its_folder(
    tmp_path, monkeypatch
):
    path = tmp_path / "speed_targets.toml"
    path.write_text("\ufeff" + TARGET, encoding="utf-8")
    assert [t.name for t in load_speed_targets(path)] == ["teacher-ort-int8-vs-fp32-b1"]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"'fixtures/speed_targets.toml' not found \(read from "
                       rf"the working directory: {tmp_path}/fixtures/speed_targets.toml\)"):
        load_speed_targets(Path("fixtures/speed_targets.toml"))
