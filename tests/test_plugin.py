"""The benchmark suite end to end on the `smoke` zoo, through pytest itself (pytester)."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from defectbench import suite as suite_mod
from defectbench.errors import ConfigError, UnknownNameError
from defectbench.zoo.build import build_zoo
from defectbench.zoo.catalog import Catalog
from defectbench.zoo.profiles import TEACHER, get_profile

pytest_plugins = ["pytester"]
REPO = Path(__file__).resolve().parents[1]
STUDENT = "tf_efficientnet_lite0.kd"


@pytest.fixture(scope="module")
def smoke_zoo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("zoo")
    build_zoo(get_profile("smoke"), root, [TEACHER, STUDENT], log=lambda _: None)
    return root


@pytest.fixture
def suite_dir(pytester: pytest.Pytester) -> pytest.Pytester:
    shutil.copytree(REPO / "benchmarks", pytester.path / "benchmarks")
    pytester.makeconftest('pytest_plugins = ["defectbench.plugin"]')
    pytester.makeini("[pytest]\nmarkers =\n  gpu: cuda\n  quality: q\n  perf: p\n  slow: s\n")
    return pytester


def test_a_built_child_records_its_parents_artifacts(smoke_zoo):
    store = Catalog(smoke_zoo, "smoke").store
    teacher = store.verify(TEACHER)
    student = store.verify(STUDENT)
    assert student["parent_artifacts"] == {
        TEACHER: {f: r["sha256"] for f, r in teacher["artifacts"].items()}
    }
    assert teacher["parent_artifacts"] == {}


def test_a_build_of_a_ready_zoo_sweeps_a_killed_builds_cache_leftovers(smoke_zoo):
    from defectbench.zoo.store import MANIFEST_CHECKSUM, manifest_checksum

    store = Catalog(smoke_zoo, "smoke").store
    killed = store.cache_dir() / ".teacher_logits-abc-96.npy.x1y2.tmp"
    killed.write_bytes(b"half an array")
    logged = []
    build_zoo(get_profile("smoke"), smoke_zoo, [TEACHER, STUDENT], log=logged.append)
    assert not killed.exists()
    assert f"_cache: removed {killed.name}, left by an interrupted build" in logged
    # and what the build wrote carries its manifests' checksums
    for name in (TEACHER, STUDENT):
        manifest = store.read_manifest(name)
        assert manifest[MANIFEST_CHECKSUM] == manifest_checksum(manifest)


def _run(pytester, zoo, *extra):
    return pytester.runpytest_subprocess(
        "benchmarks",
        "--zoo-profile",
        "smoke",
        "--zoo-dir",
        str(zoo),
        "--variants",
        f"{TEACHER},{STUDENT}",
        "--precisions",
        "fp32",
        "--batch-sizes",
        "1",
        "--latency-seconds",
        "0.2",
        "-p",
        "no:cacheprovider",
        "-rs",
        "-m",
        "not slow",
        *extra,
    )


def test_suite_writes_every_field_and_passes_smoke_budgets(suite_dir, smoke_zoo):
    out = suite_dir.path / "out.json"
    result = _run(suite_dir, smoke_zoo, "--benchmark-json", str(out), "--memory-isolated", "1")
    # cuda cases skip on a CPU host; the speed target's INT8/ONNX cases were not selected
    result.assert_outcomes(passed=4, skipped=5)
    result.stdout.fnmatch_lines(
        [
            "*SKIPPED*CUDA not available; run on a GPU host (`tox -e gpu`)*",
            "*SKIPPED*not measured in this run: "
            "tf_efficientnet_lite2.teacher.int8_ort-int8-cpu-b1*",
        ]
    )
    data = json.loads(out.read_text())
    ids = sorted(b["name"] for b in data["benchmarks"])
    assert ids == [
        f"test_inference[{STUDENT}-fp32-cpu-b1]",
        f"test_inference[{TEACHER}-fp32-cpu-b1]",
    ]
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        for key in (
            "latency_ms",
            "throughput_ips",
            "memory",
            "size_mb",
            "params",
            "macs",
            "gflops_per_s",
            "peak_fraction",
            "threads",
            "quality",
            "speedup_vs_reference",
            "cost_core_hours_per_million",
        ):
            assert info[key] is not None, key
        assert info["memory"]["kind"] == "cpu_rss_high_water" and info["memory"]["peak_mb"] > 0
        assert info["memory"]["load_delta_mb"] >= 0 and info["memory"]["delta_mb"] >= 0
        assert info["latency_ms"]["p50"] <= info["latency_ms"]["p99"]
        assert info["throughput_ips"] == pytest.approx(1000 / info["latency_ms"]["p50"])
        # the derived figures follow from the measured ones (batch 1 here)
        p50_s = info["latency_ms"]["p50"] / 1e3
        assert info["gflops_per_s"] == pytest.approx(2 * info["macs"] / p50_s / 1e9)
        assert info["peak_fraction"] == pytest.approx(
            info["gflops_per_s"] / info["peak_gflops_measured"])
        assert info["cost_core_hours_per_million"] == pytest.approx(
            p50_s * 1e6 / 3600 * info["threads"])
        assert info["img_size"] == get_profile("smoke").teacher_size  # smoke: one size for all
        isolated = info["memory"]["isolated"]  # b1 is the largest selected batch here
        assert isolated["kind"] == "cpu_rss_isolated" and isolated["batch"] == 1
        assert 0 < isolated["load_mb"] <= isolated["peak_delta_mb"] < 2000
    teacher = next(b for b in data["benchmarks"] if TEACHER in b["name"])
    assert teacher["extra_info"]["speedup_vs_reference"] == 1.0
    student_info = next(b for b in data["benchmarks"] if STUDENT in b["name"])["extra_info"]
    assert student_info["speedup_vs_reference"] == pytest.approx(
        teacher["extra_info"]["latency_ms"]["p50"] / student_info["latency_ms"]["p50"])
    section = data["defectbench"]
    assert section["profile"] == "smoke" and section["reference"] == TEACHER
    assert section["budgets_file"].endswith("budgets-smoke.toml")
    quality = {q["variant"]: q for q in section["quality"]}
    assert quality[TEACHER]["recall_drop"] == 0 and quality[TEACHER]["new_miss_ids"] == []
    student = quality[STUDENT]
    assert 0 <= student["at_0.5"]["accuracy"] <= 1 and "specificity" in student["at_0.5"]
    assert student["new_misses"] == len(student["new_miss_ids"])
    assert student["recall_interval"][0] <= student["recall"] <= student["recall_interval"][1]
    for key in ("amx_bf16", "avx512f"):
        assert key in data["machine_info"]["cpu_flags"]
    assert data["machine_info"]["defectbench_versions"]["torch"]
    # the JSON stays pytest-benchmark's own: its compare command reads it unchanged
    cli = Path(sys.executable).with_name("pytest-benchmark")  # the console script pip installed
    compare = subprocess.run(
        [str(cli), "compare", str(out)], capture_output=True, text=True, timeout=120
    )
    assert compare.returncode == 0, compare.stderr
    assert f"test_inference[{STUDENT}-fp32-cpu-b1]" in compare.stdout


COLLAPSED_CONFTEST = f"""
import numpy as np

from defectbench import suite

pytest_plugins = ["defectbench.plugin"]
_original = suite.Suite.load_predictor


class Collapsed:
    \"\"\"A broken artifact (say, a quantization whose outputs collapsed): always "good".\"\"\"

    def __init__(self, inner):
        self.inner, self.runtime = inner, inner.runtime

    def predict_logits(self, x):
        return np.tile(np.array([[8.0, -8.0]], np.float32), (len(x), 1))

    def predict_proba(self, x):
        return np.full(len(x), 1e-7)


def load_predictor(self, case):
    inner = _original(self, case)
    return Collapsed(inner) if case.variant == "{STUDENT}" else inner


suite.Suite.load_predictor = load_predictor
"""


def test_gates_fail_when_a_variant_breaks_its_budget(suite_dir, smoke_zoo):
    # the student's artifact is replaced by one whose outputs collapsed to "good": it misses
    # every defect the teacher catches, and the production budgets must say so, by name
    suite_dir.makeconftest(COLLAPSED_CONFTEST)
    budgets = REPO / "fixtures" / "budgets.toml"
    out = suite_dir.path / "quality.json"
    result = _run(
        suite_dir, smoke_zoo, "--budgets", str(budgets), "-m", "quality", "--benchmark-disable",
        "--benchmark-json", str(out),
    )
    # The student's case must fail. The smoke teacher (one epoch on 96 cells) may fail the
    # production budgets on its own merits too; no other case may fail.
    failed = re.findall(r"^_+ (test_\S+) _+$", result.stdout.str(), flags=re.MULTILINE)
    student_case = f"test_recall_budgets[{STUDENT}-fp32-cpu]"
    assert student_case in failed
    assert set(failed) <= {student_case, f"test_recall_budgets[{TEACHER}-fp32-cpu]"}
    assert result.parseoutcomes().get("failed") == len(failed)
    result.stdout.fnmatch_lines(
        [
            f"*_ test_recall_budgets[[]{STUDENT}-fp32-cpu[]] _*",
        ]
    )
    # the message names variant, metric, value, bound and budget, without the verdicts' repr
    result.stdout.fnmatch_lines(
        [
            f"{STUDENT}: recall_drop * (95% upper bound *) exceeds budget "
            "max_drop 0.030 [[]budget 'recall-drop', judged on the point estimate, "
            "204 defective[]]",
            f"{STUDENT}: fnr 1.000 (95% upper bound 1.000) exceeds budget ceiling 0.200*",
        ]
    )
    assert "assert not [{" not in result.stdout.str()
    # and again where a CI log ends, each failing budget under its case's id
    result.stdout.fnmatch_lines(
        [
            "*= defectbench gates =*",
            "quality: * of 2 cases pass every budget of */fixtures/budgets.toml",
            f"  FAIL {STUDENT}-fp32-cpu: recall_drop * exceeds budget max_drop 0.030 "
            "[[]budget 'recall-drop'*",
            f"  FAIL {STUDENT}-fp32-cpu: fnr 1.000 (95% upper bound 1.000) exceeds budget "
            "ceiling 0.200*",
            "*short test summary info*",
        ]
    )
    # nothing was timed, so pytest-benchmark wrote no file; the gate's verdicts still land
    # in pytest-benchmark's document, with an empty benchmarks list
    data = json.loads(out.read_text())
    assert data["benchmarks"] == [] and data["machine_info"]["defectbench_versions"]["torch"]
    quality = {q["variant"]: q for q in data["defectbench"]["quality"]}
    assert set(quality) == {TEACHER, STUDENT}
    assert quality[STUDENT]["passed"] is False and quality[STUDENT]["recall"] == 0
    assert quality[STUDENT]["new_misses"] == len(quality[STUDENT]["new_miss_ids"]) > 0
    # the trade-off report needs timings, and says where this file's verdicts are instead
    from defectbench.errors import ReportError
    from defectbench.report import load_report

    with pytest.raises(ReportError, match=r": 2 quality results but nothing timed \(a "
                       r"quality-only run such as `-m quality`; its verdicts are under "
                       r"`defectbench.quality`"):
        load_report([out])


def test_a_run_stopped_by_x_marks_its_json_as_holding_part_of_the_selection(
    suite_dir, smoke_zoo
):
    # -x stops at the first failing gate; the JSON is still written (CI needs the failure's
    # verdicts), but without a word it read as a run that had selected only the cases it holds
    suite_dir.makeconftest(COLLAPSED_CONFTEST)
    out = suite_dir.path / "quality.json"
    result = _run(
        suite_dir, smoke_zoo, "--budgets", str(REPO / "fixtures" / "budgets.toml"), "-m",
        "quality", "--devices", "cpu", "--benchmark-disable", "--benchmark-json", str(out), "-x",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1)  # the student's case sorts first; the teacher's never ran
    result.stdout.fnmatch_lines([
        "*= defectbench gates =*",
        "quality: 0 of 1 cases pass every budget of *",
        "stopped early (stopping after 1 failures): 1 of 2 selected tests never ran; "
        f"{out} holds only what ran and says so under defectbench.stopped_early",
    ])
    section = json.loads(out.read_text())["defectbench"]
    assert [q["variant"] for q in section["quality"]] == [STUDENT]
    assert section["stopped_early"] == {"reason": "stopping after 1 failures", "selected": 2,
                                        "not_run": 1}


GROUP_AND_TYPO_BUDGETS = """
[defaults]
confidence = 0.99

[[budget]]
name = "drop-per-cell-type"
metric = "recall_drop"
kind = "max_drop"
value = 0.99
judged_on = "point"
group = "cell_type"
"""


def test_suite_judges_a_per_group_drop_budget_and_refuses_a_pattern_matching_nothing(
    suite_dir, smoke_zoo
):
    budgets = suite_dir.path / "budgets.toml"
    budgets.write_text(GROUP_AND_TYPO_BUDGETS)
    out = suite_dir.path / "out.json"
    result = _run(suite_dir, smoke_zoo, "--budgets", str(budgets), "--benchmark-json", str(out))
    result.assert_outcomes(passed=4, skipped=5)  # as in the test above
    data = json.loads(out.read_text())
    qualities = data["defectbench"]["quality"]
    # --memory-isolated defaults to 0: no forked child per artifact unless asked for
    assert data["benchmarks"] and all(
        "isolated" not in b["extra_info"]["memory"] for b in data["benchmarks"])
    verdicts = [v for q in qualities for v in q["verdicts"]]
    assert {v["group"].split("=")[0] for v in verdicts} == {"cell_type"}
    assert all("cell_type values pass" in v["message"] for v in verdicts)
    # the bounds shown beside the verdicts are at the budgets' confidence, not a fixed 95%
    from defectbench.metrics.intervals import clopper_pearson
    from defectbench.metrics.paired import drop_interval

    for q in qualities:
        assert q["interval_confidence"] == 0.99
        drop_upper = drop_interval(q["new_misses"], q["new_catches"], q["n_defective"], 0.99,
                                   "upper")[1]
        assert q["recall_drop_upper"] == pytest.approx(drop_upper)
        misses = q["counts"]["fn"]
        fnr_upper = clopper_pearson(misses, q["n_defective"], 0.99, "upper").upper
        assert q["fnr_upper"] == pytest.approx(fnr_upper)
    # a misspelt operating point would silently drop its budget; the session refuses it
    budgets.write_text(GROUP_AND_TYPO_BUDGETS + 'operating_point = "dev_recall_0.9"\n')
    result = _run(suite_dir, smoke_zoo, "--budgets", str(budgets), "-m", "quality",
                  "--benchmark-disable")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'dev_recall_0.9', which matches no gated operating point*"])


def test_cases_are_sorted_and_never_impossible(smoke_zoo):
    catalog = Catalog(smoke_zoo, "smoke")
    selection = suite_mod.Selection(devices=("cpu", "cuda"), batches=(1, 8))
    cases = suite_mod.perf_cases(catalog, selection)
    assert cases == sorted(cases)
    assert not [c for c in cases if c.device == "cpu" and c.precision == "fp16"]
    assert f"{TEACHER}-bf16-cpu-b8" in [c.id for c in cases]
    # the precisions asked for, and only those, among what each variant offers
    fp32 = suite_mod.quality_cases(catalog, suite_mod.Selection(precisions=("fp32",)))
    assert fp32 and {c.precision for c in fp32} == {"fp32"}


def test_bad_selection_names_the_choices(smoke_zoo):
    with pytest.raises(UnknownNameError, match="unknown precision 'int4'"):
        suite_mod.Selection(precisions=("int4",))
    with pytest.raises(ConfigError, match="batch sizes must be positive"):
        suite_mod.Selection(batches=(0,))
    with pytest.raises(ConfigError, match="must be comma-separated positive integers"):
        suite_mod.parse_batches("1,x")
    # a value lost in editing must not shrink the gate to the rest
    with pytest.raises(ConfigError, match=r"--batch-sizes '1,,8' has an empty item; .* e.g. 1,8"):
        suite_mod.parse_batches("1,,8")
    with pytest.raises(ConfigError, match=r"--variants 'a,' has an empty item"):
        suite_mod.parse_list("a,", "variants")
    with pytest.raises(ConfigError, match="--batch-sizes is empty"):
        suite_mod.parse_batches(" , ")
    catalog = Catalog(smoke_zoo, "smoke")
    with pytest.raises(ConfigError, match="matches no variant; choose from: "):
        suite_mod.quality_cases(catalog, suite_mod.Selection(variants=("resnet*",)))
    # a misspelt glob beside a good one would silently run fewer cases
    with pytest.raises(ConfigError, match=r"--variants 'tf_efficientnet_lite0.kdd' matches no"):
        suite_mod.quality_cases(catalog, suite_mod.Selection(variants=(TEACHER, f"{STUDENT}d")))
    # a name is matched whole: the short name gets the full one and the glob that works
    with pytest.raises(ConfigError, match=r"'lite0.kd' matches no variant \(did you mean "
                       rf"'{STUDENT}', or the glob '\*lite0.kd'\?\)"):
        suite_mod.quality_cases(catalog, suite_mod.Selection(variants=("lite0.kd",)))
    with pytest.raises(ConfigError, match=rf"\(did you mean '{STUDENT}'\?\)"):
        suite_mod.quality_cases(catalog, suite_mod.Selection(variants=(STUDENT[:-2] + "dk",)))


def test_tensorrt_cases_exist_for_cuda_and_skip_with_the_fix_where_tensorrt_is_missing(
    tmp_path,
):
    import onnxruntime as ort

    from defectbench.plugin import _case_marks

    catalog = Catalog(tmp_path, "smoke")  # names and capabilities only; nothing is built
    selection = suite_mod.Selection(
        variants=(f"{TEACHER}.onnx", f"{TEACHER}.int8_ort", f"{TEACHER}.int8_ort_sym", TEACHER),
        devices=("cpu", "cuda"),
    )
    ids = {c.id for c in suite_mod.quality_cases(catalog, selection)}
    assert {f"{TEACHER}.onnx-fp16-cuda", f"{TEACHER}.onnx-fp32-cuda",
            f"{TEACHER}.int8_ort_sym-int8-cuda", f"{TEACHER}.int8_ort_sym-int8-cpu"} <= ids
    # uint8 activations with zero points: no TensorRT engine, so no cuda case
    assert f"{TEACHER}.int8_ort-int8-cuda" not in ids
    assert catalog.unavailable_reason(f"{TEACHER}.int8_ort_sym", "int8", "cpu") is None
    assert catalog.unavailable_reason(TEACHER, "fp16", "cuda") is None  # torch: gpu marker's job
    reason = catalog.unavailable_reason(f"{TEACHER}.onnx", "fp16", "cuda")
    if "TensorrtExecutionProvider" in ort.get_available_providers():
        assert reason is None
    else:
        assert "TensorrtExecutionProvider" in reason and "not available" in reason
        assert "pip install onnxruntime-gpu tensorrt" in reason
        case = suite_mod.Case(f"{TEACHER}.onnx", "fp16", "cuda")
        skips = [m for m in _case_marks(catalog, case) if m.name == "skip"]
        assert [m.kwargs["reason"] for m in skips] == [reason]


def test_threads_apply_to_the_whole_session_and_bad_values_are_named(suite_dir):
    # the survey never builds the suite, so --threads must not wait for it
    # 2 threads: not the count the tests' environment (OMP_NUM_THREADS=1) gives by itself
    suite_dir.makepyfile(test_threads="""
        import torch

        def test_count():
            assert torch.get_num_threads() == 2
    """)
    suite_dir.runpytest_subprocess("test_threads.py", "--threads", "2").assert_outcomes(passed=1)
    bad = suite_dir.runpytest_subprocess("test_threads.py", "--threads", "two")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR  # pytest's own error line, no traceback
    bad.stderr.fnmatch_lines(
        ["ERROR: --threads (DEFECTBENCH_THREADS) must be a positive integer, got 'two'"]
    )
    # the timing options are checked before any case runs, once, naming the option
    for flag, value, message in (
        ("--latency-seconds", "0", "*--latency-seconds (DEFECTBENCH_LATENCY_SECONDS) must be "
         "a positive number of seconds, e.g. 3, got '0'*"),
        ("--latency-seconds", "3s", "*--latency-seconds * got '3s'*"),
        ("--memory-isolated", "yes", "*--memory-isolated (DEFECTBENCH_MEMORY_ISOLATED) must "
         "be 0 or 1, got 'yes'*"),
    ):
        bad = suite_dir.runpytest_subprocess("test_threads.py", flag, value)
        assert bad.ret == pytest.ExitCode.USAGE_ERROR and "passed" not in bad.stdout.str()
        bad.stderr.fnmatch_lines([message])


def test_a_misspelt_variable_is_refused_before_anything_runs(suite_dir, monkeypatch):
    # DEFECTBENCH_PROFLE=smoke was ignored, and the suite started building the quick zoo
    suite_dir.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    monkeypatch.setenv("DEFECTBENCH_PROFLE", "smoke")
    bad = suite_dir.runpytest_subprocess("test_nothing.py")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR and "passed" not in bad.stdout.str()
    bad.stderr.fnmatch_lines(["ERROR: defectbench reads no $DEFECTBENCH_PROFLE (did you mean "
                              "$DEFECTBENCH_PROFILE?); unset it or correct the name; it reads "
                              "$DEFECTBENCH_BATCH_SIZES, *"])
    monkeypatch.delenv("DEFECTBENCH_PROFLE")
    suite_dir.runpytest_subprocess("test_nothing.py").assert_outcomes(passed=1)


def test_survey_writes_latency_only_rows_without_a_zoo(pytester):
    # the latency survey end to end, cut down to one small architecture: it needs no zoo and
    # writes latency-only rows with a memory record (which call it measures is not checked)
    shutil.copytree(REPO / "benchmarks", pytester.path / "benchmarks")
    pytester.makeconftest(
        'import defectbench.survey\n'
        'defectbench.survey.SURVEY_ARCHS = (("resnet10t", 64),)\n'
        'pytest_plugins = ["defectbench.plugin"]\n'
    )
    pytester.makeini("[pytest]\nmarkers =\n  gpu: cuda\n  quality: q\n  perf: p\n  slow: s\n")
    out = pytester.path / "survey.json"
    result = pytester.runpytest_subprocess(
        "benchmarks/test_survey.py", "-m", "slow", "--precisions", "fp32", "--devices", "cpu",
        "--batch-sizes", "1", "--latency-seconds", "0.2", "--zoo-dir",
        str(pytester.path / "no-zoo-here"), "--benchmark-json", str(out), "-p", "no:cacheprovider",
    )
    result.assert_outcomes(passed=1)
    data = json.loads(out.read_text())
    (row,) = data["benchmarks"]
    # the file says it holds no zoo case: no profile, fixture or reference behind its rows
    assert data["defectbench"]["latency_only"] is True
    assert data["defectbench"]["reference"] is None and data["defectbench"]["fixture"] is None
    info = row["extra_info"]
    assert info["variant"] == "survey.resnet10t" and info["latency_only"] is True
    assert info["quality"] is None and info["latency_ms"]["p50"] > 0
    assert info["memory"]["kind"] == "cpu_rss_high_water" and info["memory"]["delta_mb"] >= 0
    assert not (pytester.path / "no-zoo-here").exists()  # the survey never builds the zoo


def test_survey_int8_runs_on_the_sessions_thread_count(monkeypatch, tmp_path):
    import torch

    from defectbench import survey

    monkeypatch.setattr(survey, "SURVEY_ARCHS", (("resnet10t", 32),))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        predictor = survey.survey_predictor(survey.SurveyCase("resnet10t", "int8", "cpu", 1),
                                            tmp_path)
    finally:
        torch.set_num_threads(before)
    assert predictor.intra_op_threads == 1


def test_survey_cases_are_every_architecture_precision_and_batch_of_the_device():
    from defectbench import survey

    cases = survey.survey_cases(("cpu",), ("bf16", "fp16", "fp32", "int8"), (1, 8))
    # fp16 is CUDA's (autocast on CPU is bf16): every other precision, at both batches
    assert {(c.precision, c.batch) for c in cases} == {
        (p, b) for p in ("bf16", "fp32", "int8") for b in (1, 8)}
    assert len(cases) == len(set(cases)) == 6 * len(survey.SURVEY_ARCHS)
    assert {c.precision for c in survey.survey_cases(("cuda",), ("fp16", "int8"), (1,))} == {
        "fp16"}


def test_survey_architectures_run_at_timms_native_input_size():
    # the teacher's architecture in particular must be timed at the size it is served at
    import timm

    from defectbench import survey

    for arch, size in survey.SURVEY_ARCHS:
        assert timm.get_pretrained_cfg(arch).input_size == (3, size, size), arch


def test_survey_bf16_and_fp32_are_torch_eager_at_their_own_precision(monkeypatch, tmp_path):
    from defectbench import survey
    from defectbench.runtime.predictor import TorchPredictor

    monkeypatch.setattr(survey, "SURVEY_ARCHS", (("resnet10t", 32),))
    for precision in ("bf16", "fp32"):
        predictor = survey.survey_predictor(
            survey.SurveyCase("resnet10t", precision, "cpu", 1), tmp_path)
        assert isinstance(predictor, TorchPredictor) and predictor.precision == precision
    assert not list(tmp_path.iterdir())  # no ONNX file made for them


def test_shown_intervals_take_the_budgets_shared_confidence():
    from defectbench.budgets import Budget

    def budget(confidence):
        return Budget(name=f"b{confidence}", metric="fnr", kind="ceiling", value=0.2,
                      judged_on="upper_bound", confidence=confidence)

    assert suite_mod.interval_confidence([budget(0.99), budget(0.99)]) == 0.99
    assert suite_mod.interval_confidence([budget(0.9), budget(0.99)]) == 0.95  # no one level
    assert suite_mod.interval_confidence([]) == 0.95


def test_a_device_named_twice_through_an_alias_is_selected_once():
    selection = suite_mod.Selection(devices=("cpu", "CPU", "cuda", "gpu"))
    assert selection.devices == ("cpu", "cuda")


def test_the_quality_pass_leaves_the_timed_instance_to_its_own_first_calls(
    smoke_zoo, monkeypatch
):
    # A case's memory figure is its timed instance's first call at that batch size. When the
    # quality pass (batch 32) went through that instance, ONNX Runtime's arena was already at
    # its peak and the b8 and b32 cases read 0 MB: the pass must use an instance of its own.
    loaded: list[tuple[object, list[int]]] = []  # each loaded instance, the batches it ran
    load = suite_mod.Suite.load_predictor

    def recording_load(self, case):
        predictor = load(self, case)
        seen: list[int] = []
        loaded.append((predictor, seen))  # held: a freed instance's id() could be reused
        inner = predictor.predict_logits

        def predict_logits(x):
            seen.append(len(x))
            return inner(x)

        predictor.predict_logits = predict_logits
        return predictor

    def batches_of(predictor) -> list[int]:
        return next(seen for p, seen in loaded if p is predictor)

    monkeypatch.setattr(suite_mod.Suite, "load_predictor", recording_load)
    suite = suite_mod.Suite(Catalog(smoke_zoo, "smoke"), REPO / "fixtures" / "budgets-smoke.toml")
    case = suite_mod.Case(STUDENT, "fp32", "cpu", 8)
    result = suite.evaluate(case)
    assert result["n"] == len(suite.val) and result["runtime"] == "torch"
    # the student's and the reference teacher's passes each ran on an instance of their own
    assert len(loaded) == 2 and all(max(seen) == 32 for _, seen in loaded)
    timed = suite.predictor(case)
    assert len(loaded) == 3 and batches_of(timed) == []
    suite.memory(case, suite.perf_batch(case))
    assert batches_of(timed) == [8]
    assert suite.predictor(case) is timed  # kept for the session


def test_a_case_says_which_scoring_chose_its_threshold(smoke_zoo):
    # the zoo chose each variant's threshold on dev with the artifact as built (fp32 on CPU
    # here); a bf16 case applies that threshold, and the JSON says it was not chosen for it
    suite = suite_mod.Suite(Catalog(smoke_zoo, "smoke"), REPO / "fixtures" / "budgets-smoke.toml")
    fp32 = suite.evaluate(suite_mod.Case(STUDENT, "fp32", "cpu", 1))
    bf16 = suite.evaluate(suite_mod.Case(STUDENT, "bf16", "cpu", 1))
    for result in (fp32, bf16):
        assert result["threshold_chosen_with"] == {"precision": "fp32", "device": "cpu"}
        assert result["operating_point"] == fp32["operating_point"]
    assert fp32["threshold_from_this_case"] is True
    assert bf16["threshold_from_this_case"] is False
    assert fp32["differs_from_build"] is None  # same weights as the build scored dev with
    # the dev scoring the manifest recorded is the fp32 one: it reproduces the threshold
    from defectbench.metrics import threshold_for_recall

    predictor = suite.catalog.predictor(STUDENT, "fp32", "cpu")
    rows = suite.catalog.dev_rows(STUDENT)
    probs = np.concatenate([predictor.predict_proba(rows[i:i + 32])
                            for i in range(0, len(rows), 32)])
    assert threshold_for_recall(rows.images.labels, probs, 0.90) == pytest.approx(
        fp32["operating_point"]["threshold"], abs=1e-6)


RECOMPUTED_BUDGETS = """
[[budget]]
name = "low-floor"
metric = "recall"
kind = "floor"
value = 0.01
judged_on = "point"

[[budget]]
name = "perfect-floor"
metric = "recall"
kind = "floor"
value = 0.999
judged_on = "point"

[[budget]]
name = "drop-per-cell-type"
metric = "recall_drop"
kind = "max_drop"
value = 0.5
judged_on = "point"
group = "cell_type"
"""


def test_a_quality_result_is_what_its_predictions_at_the_dev_threshold_give(smoke_zoo, tmp_path):
    # every gated figure recomputed by hand from the two artifacts' val scores: the variant
    # at its own dev threshold against the FP32 teacher at the teacher's, and a case that
    # breaks one of its budgets fails however many others it meets
    budgets = tmp_path / "budgets.toml"
    budgets.write_text(RECOMPUTED_BUDGETS)
    suite = suite_mod.Suite(Catalog(smoke_zoo, "smoke"), budgets)
    case = suite_mod.Case(STUDENT, "fp32", "cpu")
    result = suite.evaluate(case)

    def predictions(variant):
        probs, _, _ = suite.predict_val(suite_mod.Case(variant, "fp32", "cpu"))
        return probs >= suite.operating_point(variant).threshold

    pred, ref = predictions(STUDENT), predictions(TEACHER)
    assert result["operating_point"]["threshold"] == suite.operating_point(STUDENT).threshold
    defective = np.asarray(suite.val.labels) == 1
    ids = np.asarray(suite.val.ids, dtype=object)
    n_def = int(defective.sum())
    caught = int((pred & defective).sum())
    assert result["n_defective"] == n_def and result["counts"]["fn"] == n_def - caught
    assert result["recall"] == pytest.approx(caught / n_def)
    assert result["fnr"] == pytest.approx(1 - caught / n_def)
    assert result["recall_drop"] == pytest.approx(
        (int((ref & defective).sum()) - caught) / n_def)
    missed = defective & ref & ~pred
    assert sorted(result["new_miss_ids"]) == sorted(ids[missed])
    assert result["new_misses"] == int(missed.sum())
    assert result["new_catches"] == int((defective & ~ref & pred).sum())
    # the group budget is judged on the worst cell type's drop (here at the 95% default)
    cell_type = np.asarray(suite.val.metadata["cell_type"])
    drops = []
    for value in np.unique(cell_type[defective]):
        group = defective & (cell_type == value)
        drops.append((int((ref & group).sum()) - int((pred & group).sum())) / int(group.sum()))
    verdicts = {v["budget"]: v for v in result["verdicts"]}
    assert verdicts["drop-per-cell-type"]["value"] == pytest.approx(max(drops))
    assert verdicts["drop-per-cell-type"]["passed"] is True
    assert 0.01 < result["recall"] < 0.999  # so exactly one floor holds
    assert verdicts["low-floor"]["passed"] is True
    assert verdicts["perfect-floor"]["passed"] is False
    assert result["passed"] is False
    # the teacher against itself: no drop, whatever its threshold
    teacher = suite.evaluate(suite_mod.Case(TEACHER, "fp32", "cpu"))
    assert (teacher["recall_drop"], teacher["new_misses"], teacher["new_catches"]) == (0, 0, 0)
    # the JSON section holds the fixture's own counts, every result in case order, and the
    # speed targets' verdicts as judged
    suite.speed_results.append({"name": "t", "measured": False, "missing": ["x"]})
    section = suite_mod.json_section(suite)
    assert section["fixture"]["val_images"] == len(ids)
    assert section["fixture"]["val_defective"] == n_def
    assert section["gated_operating_point"] == "dev_recall_0.90"
    assert [(q["variant"], q["precision"]) for q in section["quality"]] == sorted(
        [(STUDENT, "fp32"), (TEACHER, "fp32")])
    assert section["quality"][[q["variant"] for q in section["quality"]].index(STUDENT)] \
        is result
    assert section["speed_targets"] == [{"name": "t", "measured": False, "missing": ["x"]}]
    assert sorted(section["recipes"]) == sorted([STUDENT, TEACHER])


IN_PROCESS_BUILD_FORBIDDEN = '''
pytest_plugins = ["defectbench.plugin"]

import defectbench.zoo.build as build


def _refuse(*args, **kwargs):
    raise AssertionError("the zoo was built inside the suite's own process")


# the suite process must neither build nor tune its allocator for training: both would
# change what it then measures (defectbench.train.allocator)
build.build_zoo = _refuse
build.retain_freed_memory = _refuse
'''


def test_the_suite_builds_a_missing_zoo_in_a_process_of_its_own(suite_dir, tmp_path):
    suite_dir.makeconftest(IN_PROCESS_BUILD_FORBIDDEN)
    zoo = tmp_path / "empty-zoo"
    result = suite_dir.runpytest_subprocess(
        "benchmarks", "--zoo-profile", "smoke", "--zoo-dir", str(zoo), "--variants", TEACHER,
        "--precisions", "fp32", "--devices", "cpu", "-m", "quality", "--benchmark-disable",
        "-p", "no:cacheprovider",
    )
    result.stdout.fnmatch_lines([f"*built {TEACHER} in * s*"])
    assert result.parseoutcomes().get("failed", 0) + result.parseoutcomes().get("passed", 0) == 1
    assert "AssertionError: the zoo was built inside" not in result.stdout.str()
    manifest = Catalog(zoo, "smoke").store.verify(TEACHER)
    assert manifest["built_on"]["torch_threads"] >= 1
    # a second session finds it built and starts no build at all
    again = suite_dir.runpytest_subprocess(
        "benchmarks", "--zoo-profile", "smoke", "--zoo-dir", str(zoo), "--variants", TEACHER,
        "--precisions", "fp32", "--devices", "cpu", "-m", "quality", "--benchmark-disable",
        "-p", "no:cacheprovider",
    )
    assert "building" not in again.stdout.str()


def test_a_failed_zoo_build_stops_the_suite_with_the_way_to_resume(suite_dir, tmp_path):
    # the profile's folder is a file: the zoo folder itself passes the session-start check,
    # the build the suite starts fails
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "smoke").write_text("a file where the profile's folder should be")
    result = suite_dir.runpytest_subprocess(
        "benchmarks", "--zoo-profile", "smoke", "--zoo-dir", str(zoo), "--variants",
        TEACHER, "--precisions", "fp32", "--devices", "cpu", "-m", "quality",
        "--benchmark-disable", "-p", "no:cacheprovider",
    )
    result.stdout.fnmatch_lines(
        ["*ZooBuildError: building the 'smoke' zoo failed (exit status *"
         f"`defectbench zoo build --profile smoke --zoo {zoo}` resumes the rest*"]
    )
    # said once for the session, not repeated under every case
    assert result.stdout.str().count("zoo failed (exit status") == 1
    assert result.ret == pytest.ExitCode.TESTS_FAILED


@pytest.mark.parametrize(
    "budgets, message",
    [
        (None, "*budget file * not found; pass the reviewed budgets*"),
        ('[[budget]]\nname = "g"\nmetric = "recall"\nkind = "floor"\nvalue = 0.5\n'
         'judged_on = "point"\ngroup = "cell-type"\n',
         "*budget 'g' has group = 'cell-type', for which the suite computes no results; "
         "groups are 'cell_type', 'severity'; did you mean 'cell_type'?*"),
    ],
)
def test_a_bad_budgets_file_is_refused_before_the_zoo_is_built(suite_dir, tmp_path, budgets,
                                                               message):
    path = tmp_path / "budgets.toml"
    if budgets is not None:
        path.write_text(budgets)
    zoo = tmp_path / "zoo"
    result = suite_dir.runpytest_subprocess(
        "benchmarks", "--zoo-profile", "smoke", "--zoo-dir", str(zoo), "--budgets", str(path),
        "--variants", TEACHER, "-m", "quality", "--benchmark-disable", "-p", "no:cacheprovider",
    )
    # one usage error for the session (not a traceback per benchmark module), nothing built
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: " + message])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert not zoo.exists()


def test_a_bad_selection_or_profile_stops_the_session_before_collection(suite_dir):
    for flag, value, message in (
        ("--precisions", "int4", "ERROR: unknown precision 'int4'*"),
        ("--batch-sizes", "1,x",
         "ERROR: --batch-sizes '1,x' must be comma-separated positive integers*"),
        ("--zoo-profile", "quik", "ERROR: unknown profile 'quik'; choose one of smoke, quick, "
         "full*"),
    ):
        bad = suite_dir.runpytest_subprocess("benchmarks", flag, value, "-p", "no:cacheprovider")
        assert bad.ret == pytest.ExitCode.USAGE_ERROR, (flag, bad.stdout.str())
        bad.stderr.fnmatch_lines([message])


def test_a_selection_with_no_build_is_refused_not_skipped(suite_dir, tmp_path):
    # pytest would parametrize with an empty set, skip, and exit 0 having judged nothing
    zoo = tmp_path / "zoo"
    result = suite_dir.runpytest_subprocess(
        "benchmarks", "--zoo-profile", "smoke", "--zoo-dir", str(zoo), "--variants", TEACHER,
        "--precisions", "int8", "--devices", "cpu", "-m", "quality", "--benchmark-disable",
        "-p", "no:cacheprovider",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        f"ERROR: --variants {TEACHER} --precisions int8 --devices cpu select no build of the "
        f"'smoke' zoo*{TEACHER} (cpu fp32/bf16, cuda fp32/bf16/fp16)"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert not zoo.exists()


def test_a_selection_whose_speed_targets_and_timings_can_only_skip_is_refused(
    suite_dir, tmp_path
):
    # a speed target's id copied from a run's output, given alone: its cases are not timed in
    # this session, so it skipped as "not measured" and the run exited 0 having judged nothing
    target = ("benchmarks/test_speed_targets.py::"
              "test_speed_target[smoke-teacher-ort-int8-not-slower]")
    common = ("--zoo-profile", "smoke", "--zoo-dir", str(tmp_path / "zoo"), "--batch-sizes", "1",
              "-p", "no:cacheprovider")
    alone = suite_dir.runpytest_subprocess(target, *common)
    assert alone.ret == pytest.ExitCode.USAGE_ERROR
    alone.stderr.fnmatch_lines([
        "ERROR: every one of the 1 selected benchmark cases would be skipped (speed target "
        f"'smoke-teacher-ort-int8-not-slower' needs test_inference of {TEACHER}.int8_ort-int8-"
        f"cpu-b1, {TEACHER}.onnx-fp32-cpu-b1 timed in the same run), so the run would pass "
        "having measured and judged nothing; select those cases too*"])
    # and timings only, under --benchmark-skip, which skips every one of them
    skipped = suite_dir.runpytest_subprocess("benchmarks", *common, "--variants", TEACHER,
                                             "--devices", "cpu", "-m", "perf and not slow",
                                             "--benchmark-skip")
    assert skipped.ret == pytest.ExitCode.USAGE_ERROR
    skipped.stderr.fnmatch_lines(["ERROR: every one of the * selected benchmark cases would be "
                                  "skipped (--benchmark-skip skips every timed case)*"])
    assert not (tmp_path / "zoo").exists()  # refused before any build


def test_benchmark_only_is_refused_while_it_would_skip_the_gates(suite_dir, tmp_path):
    common = ("benchmarks", "--zoo-profile", "smoke", "--zoo-dir", str(tmp_path / "zoo"),
              "--variants", TEACHER, "-p", "no:cacheprovider", "--benchmark-only")
    bad = suite_dir.runpytest_subprocess(*common)
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["ERROR: --benchmark-only would skip the * recall gates and speed "
                              "targets selected (e.g. *test_recall_budgets*"])
    # the speed targets (marked perf, like the timings) are gates too
    targets = suite_dir.runpytest_subprocess(*common, "-m", "perf and not slow", "--collect-only")
    assert targets.ret == pytest.ExitCode.USAGE_ERROR
    targets.stderr.fnmatch_lines(["ERROR: --benchmark-only would skip the 1 recall gates and "
                                  "speed targets selected (e.g. *test_speed_target[[]*"])
    # with the gates deselected on purpose, only timings remain: accepted
    timings_only = suite_dir.runpytest_subprocess(*common, "-m", "perf and not slow", "-k",
                                                  "not test_speed_target", "--collect-only")
    assert timings_only.ret == pytest.ExitCode.OK, timings_only.stderr.str()
    timings_only.stdout.fnmatch_lines(["*test_latency*"])
    assert "test_survey" not in timings_only.stdout.str()  # the advice keeps the survey out


def test_the_suite_takes_another_teacher_and_gates_against_it(suite_dir, tmp_path, monkeypatch):
    # cases, the reference and the speed targets follow the teacher the options name
    import timm
    from safetensors.torch import save_file

    weights = tmp_path / "vit.safetensors"
    save_file(timm.create_model("test_vit", num_classes=1000).state_dict(), str(weights))
    monkeypatch.setenv("HOME", str(tmp_path))  # and `=~/...`, which no shell expands, is
    result = suite_dir.runpytest_subprocess(
        "benchmarks", "--zoo-profile", "smoke", "--zoo-dir", str(tmp_path / "zoo"),
        "--teacher", "test_vit", "--teacher-weights=~/vit.safetensors", "--devices", "cpu",
        "-p", "no:cacheprovider", "--collect-only", "-q",
    )
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    ids = result.stdout.str()
    assert "test_recall_budgets[test_vit.teacher-fp32-cpu]" in ids
    assert "test_inference[test_vit.teacher.int8_ort-int8-cpu-b1]" in ids
    assert "test_speed_target[smoke-teacher-ort-int8-not-slower]" in ids
    assert TEACHER not in ids
    bad = suite_dir.runpytest_subprocess("benchmarks", "--zoo-profile", "smoke", "--teacher",
                                         "vit_base_patch16_2244", "-p", "no:cacheprovider")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["ERROR: teacher 'vit_base_patch16_2244' is not a timm arch*"])


def test_a_benchmark_comparison_that_loads_nothing_is_refused_up_front(suite_dir):
    suite_dir.makepyfile(test_timed="""
        def test_sum(benchmark):
            benchmark(sum, range(10))
    """)
    common = ("test_timed.py", "-p", "no:cacheprovider", "--benchmark-storage",
              str(suite_dir.path / "store"))
    # "compare with the latest saved run" and none yet: pytest-benchmark's warning, no refusal
    first = suite_dir.runpytest_subprocess(*common, "--benchmark-compare")
    assert first.ret == pytest.ExitCode.OK, first.stderr.str()
    suite_dir.runpytest_subprocess(*common, "--benchmark-save=baseline").assert_outcomes(passed=1)
    assert [p.name for p in (suite_dir.path / "store").rglob("*.json")] == ["0001_baseline.json"]
    # the natural spelling matches nothing (runs are NNNN_NAME.json, matched by prefix)
    bad = suite_dir.runpytest_subprocess(*common, "--benchmark-compare=baseline",
                                         "--benchmark-compare-fail=median:100%")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR and "passed" not in bad.stdout.str()
    bad.stderr.fnmatch_lines(["ERROR: --benchmark-compare: 'baseline' matches no saved run *"
                              "stored as NNNN_NAME.json * --benchmark-compare='*_baseline'*"])
    # a name that was never saved gets the other fix: save a baseline first
    never = suite_dir.runpytest_subprocess(*common, "--benchmark-compare=*_nightly")
    assert never.ret == pytest.ExitCode.USAGE_ERROR
    never.stderr.fnmatch_lines(["ERROR: --benchmark-compare: '*_nightly' matches no saved run *"
                                "nothing by that name is saved for *: save a baseline*"])
    # the README's spelling compares (and a 100x regression margin passes)
    good = suite_dir.runpytest_subprocess(*common, "--benchmark-compare=*_baseline",
                                          "--benchmark-compare-fail=median:10000%")
    good.assert_outcomes(passed=1)


def test_benchmark_json_is_written_atomically(tmp_path, monkeypatch):
    # pytest-benchmark opens --benchmark-json in place; a write that dies (here: the disk
    # fills at fsync) must leave the previous good file whole and no temporary behind
    import inspect
    import os
    import types

    from pytest_benchmark.session import BenchmarkSession

    from defectbench.plugin import _save_benchmark_json_atomically

    # the patch works only while pytest-benchmark saves through this method; an upgrade
    # that stops doing so must fail here, not quietly write in place again
    assert "self.save_json(" in inspect.getsource(BenchmarkSession.handle_saving)
    out = tmp_path / "out.json"
    out.write_text('{"previous": "run"}')
    logger = types.SimpleNamespace(info=lambda *a, **k: None)  # pytest-benchmark's takes purple=
    bench = types.SimpleNamespace(json=out, logger=logger,
                                  save_json=lambda output_json: out.write_text("in place"))
    config = types.SimpleNamespace(_benchmarksession=bench)
    _save_benchmark_json_atomically(config)

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        bench.save_json({"benchmarks": []})
    assert out.read_text() == '{"previous": "run"}'
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    monkeypatch.undo()
    bench.save_json({"benchmarks": [], "machine_info": {}})
    assert json.loads(out.read_text()) == {"benchmarks": [], "machine_info": {}}


def test_a_gated_threshold_not_chosen_on_dev_is_refused():
    # the gates judge on val: a threshold tuned there would grade its own answers
    suite = object.__new__(suite_mod.Suite)
    suite.gated_point = "dev_recall_0.90"
    points = [{"name": "dev_recall_0.90", "threshold": 0.3, "target_recall": 0.9,
               "chosen_on": "dev"}]

    class OnePointCatalog:
        def manifest(self, variant):
            return {"dev": {"operating_points": points}}

    suite.catalog = OnePointCatalog()
    assert suite.operating_point("v").threshold == 0.3
    points[0]["chosen_on"] = "val"
    with pytest.raises(ConfigError, match=r"'v': operating point 'dev_recall_0.90' was chosen on "
                       r"'val', not 'dev'.*`defectbench zoo build`"):
        suite.operating_point("v")


def test_a_quality_only_gate_writes_its_json_without_a_warning_that_w_error_fails(
    suite_dir, smoke_zoo
):
    # pytest-benchmark warned "Not saving anything" after the verdicts were written, and
    # -W error turned that into a crashed run
    out = suite_dir.path / "q.json"
    result = _run(suite_dir, smoke_zoo, "--variants", TEACHER, "-m", "quality", "-W", "error",
                  "--budgets", str(REPO / "fixtures" / "budgets-smoke.toml"),
                  "--benchmark-json", str(out))
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-3000:]
    assert "Not saving anything" not in result.stdout.str() + result.stderr.str()
    assert json.loads(out.read_text())["defectbench"]["quality"]


INTERRUPT_AFTER_FIRST_CASE = '''
pytest_plugins = ["defectbench.plugin"]


def pytest_runtest_logreport(report):
    if report.when == "call":
        raise KeyboardInterrupt
'''


def test_an_interrupted_run_keeps_the_last_json_instead_of_writing_a_partial_one(
    suite_dir, smoke_zoo
):
    suite_dir.makeconftest(INTERRUPT_AFTER_FIRST_CASE)
    out = suite_dir.path / "out.json"
    out.write_text('{"last": "good run"}')
    result = _run(suite_dir, smoke_zoo, "--variants", TEACHER, "--benchmark-json", str(out))
    assert result.ret == pytest.ExitCode.INTERRUPTED
    said = result.stdout.str() + result.stderr.str()
    assert re.search(r"Interrupted: not writing \S*out.json .*is kept", said)
    assert json.loads(out.read_text()) == {"last": "good run"}


def test_xdist_with_a_benchmark_json_is_refused():
    # its workers time nothing and each wrote its own verdicts over the others'
    from types import SimpleNamespace

    from defectbench.errors import ConfigError
    from defectbench.plugin import _refuse_xdist_with_json

    def config(**options):
        return SimpleNamespace(getoption=lambda name, default=None: options.get(name, default))

    with pytest.raises(ConfigError, match=r"-n 2 \(pytest-xdist\) with --benchmark-json.*"
                                          "without -n"):
        _refuse_xdist_with_json(config(numprocesses=2, benchmark_json="out.json"))
    _refuse_xdist_with_json(config(numprocesses=2))  # gates alone still fail their tests
    _refuse_xdist_with_json(config(benchmark_json="out.json"))


def test_a_variants_glob_matching_nothing_is_one_error_not_a_traceback_per_module(suite_dir):
    result = suite_dir.runpytest_subprocess(
        "benchmarks", "--zoo-profile", "smoke", "--variants", "nomatch*", "-p",
        "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --variants 'nomatch*' matches no variant; choose from*"])
    said = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in said and "errors during collection" not in said
    assert said.count("matches no variant") == 1
    # a -k naming cases that were never generated must not end as "no tests ran"
    by_case = suite_dir.runpytest_subprocess(
        "benchmarks", "--zoo-profile", "smoke", "--variants", "nomatch*", "-k", "lite0 and fp32",
        "-p", "no:cacheprovider")
    assert by_case.ret == pytest.ExitCode.USAGE_ERROR
    by_case.stderr.fnmatch_lines(["ERROR: --variants 'nomatch*' matches no variant*"])
    # nor may the suite tests whose own parameters did generate (the speed targets) run on
    targets = suite_dir.runpytest_subprocess(
        "benchmarks", "--zoo-profile", "smoke", "--variants", "nomatch*", "-k",
        "test_speed_target", "--collect-only", "-q", "-p", "no:cacheprovider")
    assert targets.ret == pytest.ExitCode.USAGE_ERROR
    targets.stderr.fnmatch_lines(["ERROR: --variants 'nomatch*' matches no variant*"])
    # the survey does not use the zoo: selecting it alone is not refused
    survey = suite_dir.runpytest_subprocess(
        "benchmarks", "--zoo-profile", "smoke", "--variants", "nomatch*", "-m", "slow",
        "--collect-only", "-q", "-p", "no:cacheprovider")
    assert survey.ret == pytest.ExitCode.OK, survey.stderr.str()


BROKEN_FIXTURE_CONFTEST = '''
import defectbench.zoo.catalog as catalog
from defectbench.errors import DataError

pytest_plugins = ["defectbench.plugin"]


def _broken(*args, **kwargs):
    raise DataError("fixture file fixtures/elpv/fixture.json is corrupt; restore it from git")


catalog.load_fixture = _broken
'''


def test_a_broken_fixture_is_said_once_before_anything_runs(suite_dir):
    # it was a collection error with a traceback under each of the three suite modules
    suite_dir.makeconftest(BROKEN_FIXTURE_CONFTEST)
    result = suite_dir.runpytest_subprocess("benchmarks", "--zoo-profile", "smoke",
                                            "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    said = result.stdout.str() + result.stderr.str()
    assert said.count("fixture.json is corrupt; restore it from git") == 1
    assert "Traceback" not in said


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this host has CUDA")
def test_a_selection_every_case_of_which_would_skip_is_refused(suite_dir, tmp_path):
    # `tox -e gpu` on a host whose CUDA does not load: every case skips, and the run would
    # pass (exit 0) having judged nothing, leaving an earlier run's JSON in place
    out = tmp_path / "out-gpu.json"
    out.write_text('{"an": "earlier run"}')
    os.utime(out, (time.time() - 3600, time.time() - 3600))
    result = suite_dir.runpytest_subprocess(
        "benchmarks", "--zoo-profile", "smoke", "--zoo-dir", str(tmp_path / "zoo"),
        "--variants", TEACHER, "--devices", "cuda", "-m", "gpu and not slow",
        "-p", "no:cacheprovider", "--benchmark-json", str(out))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: every one of the * selected benchmark cases would be "
                                 "skipped on this host (*CUDA*), so the run would pass having "
                                 "measured and judged nothing*"])
    assert not (tmp_path / "zoo").exists()  # refused before any build
    # and the file it was asked to write is said to be an earlier run's
    result.stdout.fnmatch_lines([f"defectbench: this run wrote nothing to {out}; the file "
                                 "there is an earlier run's"])
    assert out.read_text() == '{"an": "earlier run"}'
    # the default selection on this host (its CUDA cases skip, its CPU cases run) is accepted,
    # and so is listing the CUDA cases (nothing runs, nothing is written)
    for extra in ((), ("--devices", "cuda", "-m", "gpu and not slow", "--benchmark-json",
                       str(tmp_path / "new" / "out.json"))):
        fine = suite_dir.runpytest_subprocess(
            "benchmarks", "--zoo-profile", "smoke", "--zoo-dir", str(tmp_path / "zoo"),
            "--variants", TEACHER, "-p", "no:cacheprovider", "--collect-only", *extra)
        assert fine.ret == pytest.ExitCode.OK, fine.stderr.str()
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_an_unwritable_benchmark_json_path_is_refused_before_anything_runs(
    suite_dir, tmp_path, where
):
    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a folder")
    path = tmp_path if where == "a folder" else blocker / "out.json"
    result = suite_dir.runpytest_subprocess(
        "benchmarks", "--zoo-profile", "smoke", "--zoo-dir", str(tmp_path / "zoo"),
        "--variants", TEACHER, "-p", "no:cacheprovider", "--benchmark-json", str(path))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    expected = (f"ERROR: --benchmark-json {path} is a folder; name a file*" if where == "a folder"
                else f"ERROR: --benchmark-json {path} cannot be written (*); choose a writable*")
    result.stderr.fnmatch_lines([expected])
    assert not (tmp_path / "zoo").exists()


def test_an_empty_option_is_refused_not_read_as_the_default(suite_dir, tmp_path):
    result = suite_dir.runpytest_subprocess(
        "benchmarks", "--zoo-profile", "smoke", "--zoo-dir", str(tmp_path / "zoo"),
        "--budgets", "", "-p", "no:cacheprovider", "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --budgets is empty; give it a value, or leave it out "
                                 "for the default (or $DEFECTBENCH_BUDGETS)"])


def test_a_bad_selection_from_the_environment_names_its_variable(suite_dir, tmp_path,
                                                                  monkeypatch):
    # a variable exported long ago, not an option the user gave: said so, with its value
    monkeypatch.setenv("DEFECTBENCH_BATCH_SIZES", "1,,8")
    monkeypatch.setenv("DEFECTBENCH_PRECISIONS", "int9")
    common = ("benchmarks", "--zoo-profile", "smoke", "--zoo-dir", str(tmp_path / "zoo"),
              "-p", "no:cacheprovider", "--collect-only")
    result = suite_dir.runpytest_subprocess(*common, "--precisions", "fp32")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --batch-sizes '1,,8' has an empty item; * "
                                 "(from $DEFECTBENCH_BATCH_SIZES='1,,8')"])
    result = suite_dir.runpytest_subprocess(*common, "--batch-sizes", "1")
    result.stderr.fnmatch_lines(["ERROR: unknown precision 'int9'*(from "
                                 "$DEFECTBENCH_PRECISIONS='int9')"])
    # the command line's own value is not blamed on the variable
    result = suite_dir.runpytest_subprocess(*common, "--batch-sizes", "1", "--precisions", "fp33")
    result.stderr.fnmatch_lines(["ERROR: unknown precision 'fp33'*"])
    assert "DEFECTBENCH_PRECISIONS" not in result.stderr.str()


def test_speed_targets_come_from_the_file_the_option_names(suite_dir, tmp_path):
    targets = tmp_path / "targets.toml"
    targets.write_text((REPO / "fixtures" / "speed_targets-smoke.toml").read_text()
                       .replace(".int8_ort\"", ".int8_ortt\"", 1))
    result = suite_dir.runpytest_subprocess(
        "benchmarks", "--zoo-profile", "smoke", "--zoo-dir", str(tmp_path / "zoo"),
        "--speed-targets", str(targets), "-p", "no:cacheprovider", "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{targets}: speed target * which is not a variant*"])
    # a batch no default run measures is accepted when this run's --batch-sizes has it
    targets.write_text((REPO / "fixtures" / "speed_targets-smoke.toml").read_text()
                       .replace("batch = 1", "batch = 2"))
    at_two = suite_dir.runpytest_subprocess(
        "benchmarks", "--zoo-profile", "smoke", "--zoo-dir", str(tmp_path / "zoo"),
        "--speed-targets", str(targets), "--batch-sizes", "2", "-p", "no:cacheprovider",
        "--collect-only", "-q")
    assert at_two.ret == pytest.ExitCode.OK, at_two.stderr.str()
    assert "test_speed_target[smoke-teacher-ort-int8-not-slower]" in at_two.stdout.str()


def test_a_run_refused_or_broken_at_collection_did_not_stop_early(suite_dir, tmp_path):
    # a refusal (a speed target's id given alone) and a collection error ran nothing and
    # wrote nothing, yet the summary said the JSON held "only what ran"
    out = tmp_path / "x" / "out.json"
    target = ("benchmarks/test_speed_targets.py::"
              "test_speed_target[smoke-teacher-ort-int8-not-slower]")
    common = ("--zoo-profile", "smoke", "--zoo-dir", str(tmp_path / "zoo"), "--batch-sizes", "1",
              "--variants", TEACHER, "-p", "no:cacheprovider", "--benchmark-json", str(out))
    refused = suite_dir.runpytest_subprocess(target, *common)
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    suite_dir.makepyfile(test_broken="import no_such_module_here\n")
    broken = suite_dir.runpytest_subprocess("benchmarks", "test_broken.py", *common)
    assert broken.ret == pytest.ExitCode.INTERRUPTED
    broken.stdout.fnmatch_lines(["*1 error during collection*"])
    for result in (refused, broken):
        said = result.stdout.str() + result.stderr.str()
        assert "stopped early" not in said and "defectbench.stopped_early" not in said
    assert not out.exists() and not (tmp_path / "zoo").exists()


def test_a_run_without_suite_cases_gets_no_gates_section(pytester):
    # the plugin is loaded for every session: `pytest tests -x` must not repeat pytest's own
    # "stopping after 1 failures" under a "defectbench gates" heading
    pytester.makeconftest('pytest_plugins = ["defectbench.plugin"]')
    pytester.makepyfile(test_plain="""
        def test_one():
            assert False

        def test_two():
            assert False
    """)
    result = pytester.runpytest_subprocess("-x", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert "defectbench gates" not in result.stdout.str()
    assert "stopped early" not in result.stdout.str()


def test_a_gated_case_no_budget_applies_to_is_a_failure_in_the_summary():
    # all([]) is True: a case without verdicts was counted as passing its budgets, while
    # test_quality.py fails it ("no budget applies to this variant")
    from collections import namedtuple
    from types import SimpleNamespace

    from defectbench import plugin

    case = namedtuple("Case", "id variant")(f"{STUDENT}-fp32-cpu", STUDENT)
    suite = SimpleNamespace(quality={case: {"passed": True, "verdicts": []}},
                            budgets_path=Path("fixtures/budgets.toml"), speed_results=[])
    config = SimpleNamespace(stash=pytest.Stash())
    config.stash[plugin._SUITE] = suite
    config.stash[plugin._GATED] = {case}
    assert plugin._gate_summary(config) == [
        ("quality: 0 of 1 cases pass every budget of fixtures/budgets.toml", {"red": True}),
        (f"  FAIL {STUDENT}-fp32-cpu: no budget applies to this variant; check "
         "fixtures/budgets.toml", {"red": True}),
    ]


def test_the_gates_summary_counts_failing_speed_targets_and_failing_cases_no_gate_judged():
    # a failed speed target and a failing case that only test_inference scored must be said
    # where the CI log ends; a passing ungated case and an unmeasured target are not failures
    from collections import namedtuple
    from types import SimpleNamespace

    from defectbench import plugin

    Case = namedtuple("Case", "id variant")
    gated_fail = Case("a-fp32-cpu", "a")
    gated_pass = Case("b-fp32-cpu", "b")
    ungated_fail = Case("c-int8-cpu", "c")
    ungated_pass = Case("d-int8-cpu", "d")
    verdict = {"passed": False, "message": "a: recall 0.500 is below budget floor 0.900"}
    suite = SimpleNamespace(
        quality={
            gated_fail: {"passed": False, "verdicts": [{"passed": True, "message": "a: ok"},
                                                        verdict]},
            gated_pass: {"passed": True, "verdicts": [{"passed": True, "message": "b: ok"}]},
            ungated_fail: {"passed": False, "verdicts": [{"passed": False, "message": "c"}]},
            ungated_pass: {"passed": True, "verdicts": [{"passed": True, "message": "d"}]},
        },
        budgets_path=Path("b.toml"),
        speed_results=[
            {"name": "fast", "measured": True, "passed": True, "message": "fast ok"},
            {"name": "slow", "measured": True, "passed": False, "message": "1.10x < 1.50x"},
            {"name": "gone", "measured": False, "missing": ["x"]},
        ])
    config = SimpleNamespace(stash=pytest.Stash())
    config.stash[plugin._SUITE] = suite
    config.stash[plugin._GATED] = {gated_fail, gated_pass}
    red, green, yellow = {"red": True}, {"green": True}, {"yellow": True}
    assert plugin._gate_summary(config) == [
        ("quality: 1 of 2 cases pass every budget of b.toml", red),
        ("  FAIL a-fp32-cpu: recall 0.500 is below budget floor 0.900", red),
        ("not gated in this run (test_quality.py not selected), but failing their budgets in "
         "the JSON: c-int8-cpu", yellow),
        ("speed targets: 1 of 3 pass, 1 fail, 1 not measured", red),
        ("  FAIL 1.10x < 1.50x", red),
    ]
    suite.speed_results = suite.speed_results[:1]
    assert plugin._gate_summary(config)[-1] == ("speed targets: 1 of 1 pass", green)


def test_a_session_stopped_early_counts_the_tests_that_never_ran():
    from types import SimpleNamespace

    from defectbench import plugin

    def session(finished, selected=5, shouldfail="stopping after 1 failures", **option):
        config = SimpleNamespace(stash=pytest.Stash(),
                                 option=SimpleNamespace(collectonly=False, **option))
        config.stash[plugin._CASES_SELECTED] = True
        config.stash[plugin._FINISHED] = finished
        return SimpleNamespace(config=config, items=[object()] * selected,
                               shouldfail=shouldfail, shouldstop=False)

    failed = pytest.ExitCode.TESTS_FAILED
    assert plugin._stopped_early(session(2), failed) == {
        "reason": "stopping after 1 failures", "selected": 5, "not_run": 3}
    assert plugin._stopped_early(session(4), failed)["not_run"] == 1
    assert plugin._stopped_early(session(5), failed) is None  # the last test failed: all ran
    # stopped before any test ran (a collection error under -x): nothing was cut short
    assert plugin._stopped_early(session(0), failed) is None
    assert plugin._stopped_early(session(2, shouldfail=False), failed) is None  # deselected
    assert plugin._stopped_early(session(2), pytest.ExitCode.INTERRUPTED) is None
    stopped = session(2, shouldfail=True)  # session.shouldstop = True: no text of its own
    assert plugin._stopped_early(stopped, failed)["reason"] == "the session stopped early"
    unit_tests = session(2)
    unit_tests.config.stash[plugin._CASES_SELECTED] = False  # `pytest tests -x`
    assert plugin._stopped_early(unit_tests, failed) is None


def test_threads_above_what_a_zoo_build_takes_are_refused_up_front():
    # 2000 reached the zoo build the suite starts, which exited 2: a generic ZooBuildError
    from defectbench.plugin import _parse_threads
    from defectbench.zoo.cli import MAX_THREADS

    assert _parse_threads(str(MAX_THREADS)) == MAX_THREADS
    with pytest.raises(ConfigError, match=rf"--threads \(DEFECTBENCH_THREADS\) must be at most "
                       rf"{MAX_THREADS} \(what `defectbench zoo build --threads` takes; .*"
                       r"got '2000'"):
        _parse_threads("2000")
    with pytest.raises(ConfigError, match="must be a positive integer, got '²'"):
        _parse_threads("²")
    # 0 passed as "no thread count" and recorded 0 threads in every result
    with pytest.raises(ConfigError, match="must be a positive integer, got '0'"):
        _parse_threads("0")


def test_p_no_defectbench_turns_the_plugin_off(pytester, monkeypatch):
    # the root conftest listed the plugin in pytest_plugins, which registers it under its
    # module name: `-p no:defectbench` blocked nothing, and a stale variable the plugin
    # refuses at every session start still stopped the unit tests
    shutil.copy(REPO / "conftest.py", pytester.path / "conftest.py")
    pytester.makepyfile(test_plain="def test_one():\n    pass\n")
    monkeypatch.setenv("DEFECTBENCH_BATCH_SIZES", "0")
    on = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert on.ret == pytest.ExitCode.USAGE_ERROR
    on.stderr.fnmatch_lines(["ERROR: *batch sizes*(from $DEFECTBENCH_BATCH_SIZES='0')"])
    for off in ("no:defectbench", "no:defectbench.plugin"):
        result = pytester.runpytest_inprocess("-p", off, "-p", "no:cacheprovider")
        assert result.ret == pytest.ExitCode.OK, result.stderr.str()
        result.assert_outcomes(passed=1)
    # `-p defectbench` registers the package under the plugin's name: named, not a traceback
    # ("Plugin name already registered")
    monkeypatch.delenv("DEFECTBENCH_BATCH_SIZES")
    package = pytester.runpytest_inprocess("-p", "defectbench", "-p", "no:cacheprovider")
    assert package.ret == pytest.ExitCode.USAGE_ERROR
    package.stderr.fnmatch_lines(["ERROR: -p defectbench loads the 'defectbench' module, not "
                                  "the suite's plugin, which this conftest loads: drop the "
                                  "option (or give -p defectbench.plugin)"])
    # the suite cannot run without it, and says so once instead of "fixture not found" per test
    shutil.copytree(REPO / "benchmarks", pytester.path / "benchmarks")
    suite = pytester.runpytest_inprocess("benchmarks", "-p", "no:defectbench",
                                          "-p", "no:cacheprovider")
    assert suite.ret == pytest.ExitCode.USAGE_ERROR
    suite.stderr.fnmatch_lines(["ERROR: the benchmark suite needs the defectbench plugin, *"])
    assert "fixture" not in suite.stdout.str() + suite.stderr.str()


def test_a_batch_size_above_the_val_images_is_refused_before_anything_runs(
    suite_dir, tmp_path, monkeypatch
):
    # every timed batch is cut from val's 654 images: 100000 was accepted without a word, to
    # tile val into an input of 81 GB at 260 px once its case ran, after the zoo build
    import defectbench.data.fixture
    import defectbench.zoo.catalog

    # in process, so the fixture is verified once (seconds) for the three runs, not per run
    fixture = defectbench.data.fixture.load_fixture()
    for module in (defectbench.data.fixture, defectbench.zoo.catalog):
        monkeypatch.setattr(module, "load_fixture", lambda *args, **kwargs: fixture)
    common = ("benchmarks", "--zoo-profile", "smoke", "--zoo-dir", str(tmp_path / "zoo"),
              "--variants", TEACHER, "-p", "no:cacheprovider", "--collect-only")
    monkeypatch.setenv("DEFECTBENCH_BATCH_SIZES", "1,100000")
    result = suite_dir.runpytest_inprocess(*common)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: --batch-sizes '1,100000': 100000 is more than the 654 images of the `val` "
        "fixture, from which every timed batch is cut *; use sizes of at most 654, e.g. "
        "1,8,32 (from $DEFECTBENCH_BATCH_SIZES='1,100000')"])
    assert not (tmp_path / "zoo").exists()
    # the survey times random inputs, not val's images: the bound is not its own (and it
    # runs where the ELPV data is not installed)
    survey = suite_dir.runpytest_inprocess(*common, "-m", "slow", "--batch-sizes", "655")
    assert survey.ret == pytest.ExitCode.OK, survey.stderr.str()
    survey.stdout.fnmatch_lines(["*test_architecture_latency[[]*-b655[]]*"])
    # nor do quality cases take batches: a stray variable does not stop the gates alone
    quality = suite_dir.runpytest_inprocess(*common, "-m", "quality")
    assert quality.ret == pytest.ExitCode.OK, quality.stderr.str()
    quality.stdout.fnmatch_lines([f"*test_recall_budgets[[]{TEACHER}-fp32-cpu[]]*"])
    # the val set itself is a batch the suite can time
    fine = suite_dir.runpytest_inprocess(*common, "--batch-sizes", "654")
    assert fine.ret == pytest.ExitCode.OK, fine.stderr.str()
    fine.stdout.fnmatch_lines([f"*test_inference[[]{TEACHER}-fp32-cpu-b654[]]*"])


def test_batch_sizes_are_ascii_digits_so_a_lost_comma_is_not_read_as_one_number():
    # int() reads '1_8' as 18 and '٣' as 3: the run timed a batch nobody asked for
    assert suite_mod.parse_batches(" 8, 1,08") == (1, 8)
    for text, item in (("1_8", "1_8"), ("1,٣", "٣"), ("1,-8", "-8"), ("1,+8", "+8")):
        with pytest.raises(ConfigError, match=re.escape(
                f"--batch-sizes '{text}' must be comma-separated positive integers, e.g. 1,8,32 "
                f"('{item}' is not one)")):
            suite_mod.parse_batches(text)
    suite_mod.check_batches_fit((1, 654), 654, "1,654")
    with pytest.raises(ConfigError, match=r"--batch-sizes '8,1000,655': 1000 is more than the "
                       "654 images"):
        suite_mod.check_batches_fit((8, 655, 1000), 654, "8,1000,655")


def test_a_target_not_measured_under_benchmark_disable_says_why():
    # its cases ran (untimed), yet the skip sent the user to run them in the same session
    from types import SimpleNamespace

    from defectbench.plugin import not_measured_reason

    def config(**options):
        return SimpleNamespace(getoption=lambda name, default=None: options.get(name, default))

    missing = [f"{TEACHER}.int8_ort-int8-cpu-b1"]
    assert not_measured_reason(config(benchmark_disable=True), missing) == (
        f"not measured in this run: {missing[0]}; --benchmark-disable times nothing, so no "
        "target can be judged: run without it")
    assert not_measured_reason(config(), missing).endswith(
        "run test_latency.py for those cases in the same session")


@pytest.fixture
def one_test(pytester: pytest.Pytester) -> pytest.Pytester:
    """A session of one passing test with the plugin loaded: its session-start checks only."""
    pytester.makeconftest('pytest_plugins = ["defectbench.plugin"]')
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    return pytester


def test_a_benchmark_json_path_the_shell_did_not_expand_is_refused_before_anything_is_made(
    one_test,
):
    # `--benchmark-json=~/out.json`: no shell expands a ~ after `=`, and the session made a
    # folder literally named `~` in the working directory to write the file in
    result = one_test.runpytest_inprocess(
        "test_one.py", "-p", "no:cacheprovider", "--benchmark-json=~/out.json"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: --benchmark-json ~/out.json starts with `~`, which the shell did not expand (it "
        "does not after `=`); write `--benchmark-json ~/...` with a space, or use $HOME"])
    assert not (one_test.path / "~").exists()


@pytest.mark.parametrize("given_as", ["option", "variable"])
def test_a_zoo_dir_that_is_a_file_is_refused_at_session_start(
    one_test, tmp_path, monkeypatch, given_as
):
    # it was found only by the zoo build the suite starts: exit 2 there, then a ZooBuildError
    afile = tmp_path / "zoo.tar"
    afile.write_text("not a zoo folder")
    if given_as == "option":
        extra, source = ("--zoo-dir", str(afile)), f"--zoo-dir {afile}"
    else:
        monkeypatch.setenv("DEFECTBENCH_ZOO", str(afile))
        extra, source = (), f"--zoo-dir {afile} (from $DEFECTBENCH_ZOO='{afile}')"
    result = one_test.runpytest_inprocess("test_one.py", "-p", "no:cacheprovider", *extra)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        f"ERROR: {source} is a file, not a folder; give --zoo-dir (or DEFECTBENCH_ZOO) a "
        "folder for the zoo, or move the file away"])
    assert afile.read_text() == "not a zoo folder"


def test_a_home_relative_zoo_dir_is_the_folder_zoo_build_uses(monkeypatch, tmp_path):
    # `--zoo-dir=~/zoo` reaches the plugin unexpanded: the suite read a folder named `~`
    # while the `zoo build` it started (which expands it) built in the home folder
    from types import SimpleNamespace

    from defectbench import plugin
    from defectbench.zoo.cli import _zoo_root as zoo_build_root

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DEFECTBENCH_ZOO", raising=False)
    config = SimpleNamespace(getoption=lambda name, default=None: (
        "~/zoo" if name == "zoo_dir" else default))
    assert plugin._zoo_root(config) == tmp_path / "zoo"
    assert plugin._zoo_root(config) == zoo_build_root(SimpleNamespace(zoo="~/zoo"))
    # a user this machine does not know: named, not a RuntimeError from pathlib
    config = SimpleNamespace(getoption=lambda name, default=None: (
        "~no-such-user-here/zoo" if name == "zoo_dir" else default))
    with pytest.raises(ConfigError, match=r"--zoo-dir starts with the home folder of a user "
                       r"this machine does not know \(~no-such-user-here/zoo\); give the full "
                       "path"):
        plugin._zoo_root(config)


SURVEY_ROW_CONFTEST = '''
import pytest

pytest_plugins = ["defectbench.plugin"]


@pytest.fixture
def measure_survey_latency(survey_case):
    # stands in for the timing: the row a broken timer or clock would give
    row = {{"variant": "survey." + survey_case.arch, "batch": survey_case.batch,
            "latency_only": True, "quality": None, "latency_ms": {{"p50": {p50}}},
            "throughput_ips": {throughput}}}
    return lambda: row
'''


@pytest.mark.parametrize("p50, throughput, passes", [
    pytest.param(2.5, 400.0, True, id="timed"),
    pytest.param(0.0, "float('inf')", False, id="zero-latency"),
    pytest.param("float('nan')", "float('nan')", False, id="nan"),
    pytest.param("float('inf')", 0.0, False, id="infinite-latency"),
    pytest.param(2.5, "float('nan')", False, id="nan-throughput"),
    # each alone: above, every zero sits beside an inf or NaN that fails the row by itself
    pytest.param(0.0, 400.0, False, id="zero-latency-finite-throughput"),
    pytest.param(2.5, 0.0, False, id="zero-throughput"),
    pytest.param(-2.5, -400.0, False, id="negative"),
])
def test_the_survey_fails_a_row_whose_latency_is_not_a_measurement(
    pytester, p50, throughput, passes
):
    # it checked only the latency_only flags: a zero or NaN latency passed as a timing
    shutil.copytree(REPO / "benchmarks", pytester.path / "benchmarks")
    pytester.makeconftest(SURVEY_ROW_CONFTEST.format(p50=p50, throughput=throughput))
    pytester.makeini("[pytest]\nmarkers =\n  gpu: cuda\n  quality: q\n  perf: p\n  slow: s\n")
    result = pytester.runpytest_inprocess(
        "benchmarks/test_survey.py", "--precisions", "fp32", "--devices", "cpu",
        "--batch-sizes", "1", "-p", "no:cacheprovider", "-k", "convnext_tiny")
    if passes:
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines([
            "*survey.convnext_tiny at batch 1 was not timed: p50 latency * ms and throughput * "
            "images/s must both be positive, finite numbers"])


def test_an_empty_variable_is_unset_and_a_given_one_is_read(monkeypatch):
    # shells export a variable assigned nothing (`DEFECTBENCH_PROFILE=`): it means the default,
    # not a profile named ''
    from types import SimpleNamespace

    from defectbench.plugin import option

    config = SimpleNamespace(getoption=lambda name, default=None: default)
    monkeypatch.setenv("DEFECTBENCH_PROFILE", "")
    monkeypatch.setenv("DEFECTBENCH_BATCH_SIZES", "")
    assert option(config, "--zoo-profile") == "quick"
    assert option(config, "--batch-sizes") == "1,8,32"
    monkeypatch.setenv("DEFECTBENCH_PROFILE", "smoke")
    assert option(config, "--zoo-profile") == "smoke"


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "0"])
def test_latency_seconds_must_be_a_finite_positive_number(value):
    # `inf` made every latency case ask for an unbounded number of rounds (capped only at 200)
    from types import SimpleNamespace

    from defectbench.plugin import latency_seconds

    def config(given):
        return SimpleNamespace(getoption=lambda name, default=None: (
            given if name == "latency_seconds" else default))

    assert latency_seconds(config("0.25")) == 0.25
    with pytest.raises(ConfigError, match=rf"must be a positive number of seconds, e\.g\. 3, "
                       rf"got '{value}'"):
        latency_seconds(config(value))


def test_the_teacher_options_leave_the_environment_as_they_found_it(one_test, no_teacher_env):
    # they are exported for the processes the session starts; after it, a variable the
    # shell never had must be gone and one it had must be back, or the next in-process
    # session (and pytester's) reads a teacher nobody gave it
    result = one_test.runpytest_inprocess("test_one.py", "-p", "no:cacheprovider",
                                          "--teacher-size", "96")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    assert "DEFECTBENCH_TEACHER_SIZE" not in os.environ
    no_teacher_env.setenv("DEFECTBENCH_TEACHER_SIZE", "128")
    result = one_test.runpytest_inprocess("test_one.py", "-p", "no:cacheprovider",
                                          "--teacher-size", "96")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    assert os.environ["DEFECTBENCH_TEACHER_SIZE"] == "128"


def test_the_benchmark_json_write_check_leaves_no_probe_behind(one_test):
    # the session start tries a temporary file beside the JSON; it must not stay there
    out = one_test.path / "results" / "out.json"
    result = one_test.runpytest_inprocess("test_one.py", "-p", "no:cacheprovider",
                                          "--benchmark-disable", "--benchmark-json", str(out))
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    assert list(out.parent.iterdir()) == []  # nothing timed, no suite: nothing written


def test_the_gates_run_beside_benchmark_skip(suite_dir, smoke_zoo):
    # --benchmark-skip skips the timed cases only: a quality gate run with it is not refused
    # as "every case would be skipped"
    result = _run(suite_dir, smoke_zoo, "--variants", TEACHER, "--devices", "cpu", "-m",
                  "quality", "--benchmark-skip")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    result.assert_outcomes(passed=1)


def test_a_speed_target_whose_cases_skip_under_benchmark_skip_is_not_counted_as_timed(
    suite_dir, tmp_path
):
    # the target's two cases are selected, but --benchmark-skip skips both: the target
    # cannot be judged, so the whole selection only skips and is refused
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "smoke").write_text("a build started here fails at once")
    result = suite_dir.runpytest_subprocess(
        "benchmarks", "--zoo-profile", "smoke", "--zoo-dir", str(zoo), "--variants",
        f"{TEACHER}.int8_ort,{TEACHER}.onnx", "--devices", "cpu", "--batch-sizes", "1",
        "-m", "perf and not slow", "--benchmark-skip", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()[-2000:]
    result.stderr.fnmatch_lines(["ERROR: every one of the * selected benchmark cases would be "
                                 "skipped (--benchmark-skip skips every timed case)*"])


def test_a_glob_matching_nothing_gets_no_guess_at_a_name(tmp_path):
    # a glob is not a shortened or misspelt name: "did you mean" the closest name would
    # point at one variant where the user asked for a family
    names = Catalog(tmp_path, "smoke").names  # names only; nothing is built
    with pytest.raises(ConfigError, match="matches no variant; choose from") as raised:
        suite_mod.select_names(names, (f"{STUDENT}x*",))
    assert "did you mean" not in str(raised.value)


WANTED_BUILD_CONFTEST = '''
import pytest

import defectbench.zoo.build as build

pytest_plugins = ["defectbench.plugin"]


def variants_to_build(profile, root, patterns=None):
    pytest.exit("wanted: " + ",".join(patterns), returncode=3)


build.variants_to_build = variants_to_build
'''


def test_the_suite_builds_the_teacher_beside_variants_that_do_not_descend_from_it(
    suite_dir, tmp_path
):
    # every drop is measured against the FP32 teacher: a selected student trained without
    # it (lite0.base) must not leave the reference unbuilt
    suite_dir.makeconftest(WANTED_BUILD_CONFTEST)
    result = suite_dir.runpytest_subprocess(
        "benchmarks", "--zoo-profile", "smoke", "--zoo-dir", str(tmp_path / "zoo"),
        "--variants", "tf_efficientnet_lite0.base", "--precisions", "fp32", "--devices", "cpu",
        "-m", "quality", "--benchmark-disable", "-p", "no:cacheprovider")
    assert result.ret == 3, result.stdout.str()[-2000:]
    result.stdout.fnmatch_lines([f"*wanted: tf_efficientnet_lite0.base,{TEACHER}*"])


def test_the_zoo_build_the_suite_starts_trains_at_the_sessions_thread_count(monkeypatch,
                                                                            tmp_path):
    # a recipe's weights depend on the thread count (`built_on`): the child build must use
    # the session's --threads, not its own default (OMP_NUM_THREADS or every core)
    import subprocess
    from types import SimpleNamespace

    import torch

    import defectbench.zoo.build as build
    from defectbench import plugin

    commands = []
    monkeypatch.setattr(build, "variants_to_build", lambda profile, root, wanted: ["a.b"])
    monkeypatch.setattr(subprocess, "run", lambda command, check: (
        commands.append(command) or SimpleNamespace(returncode=0)))
    catalog = SimpleNamespace(profile=SimpleNamespace(name="smoke"),
                              store=SimpleNamespace(root=tmp_path))
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            plugin._build_missing(catalog, ["a.b"])
    finally:
        torch.set_num_threads(before)
    assert [c[c.index("--threads") + 1] for c in commands] == ["1", "2"]
    assert commands[0][-2:] == ["--variants", "a.b"]


def test_isolated_memory_is_measured_once_per_artifact_at_the_largest_batch(suite_dir,
                                                                            smoke_zoo):
    # the child runs the largest selected batch: the figure to provision RAM for
    out = suite_dir.path / "out.json"
    result = _run(suite_dir, smoke_zoo, "--variants", STUDENT, "--devices", "cpu",
                  "--batch-sizes", "1,2", "-m", "perf and not slow", "--memory-isolated", "1",
                  "--benchmark-json", str(out))
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-2000:]
    rows = {b["extra_info"]["batch"]: b["extra_info"]["memory"]
            for b in json.loads(out.read_text())["benchmarks"]}
    assert sorted(rows) == [1, 2]
    assert "isolated" not in rows[1] and rows[2]["isolated"]["batch"] == 2
