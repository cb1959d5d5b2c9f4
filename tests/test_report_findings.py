"""The written analysis ("Findings" in table.md) on runs that leave things out: every sentence
must say what the rows show, in the right number, and name what happened to a missing reference.

Inputs are copies of tests/data/report/cpu.json (see tests/test_report.py): the reference
teacher, a passing INT8 student and a failing pruned one, timed at batch 1 (and 8 for the
first two), plus one latency-only survey model.
"""

import json
from pathlib import Path

import pytest
from report_data import CPU, GPU, H100, INT8, PRUNED, SURVEY, TEACHER, XEON
from report_data import load as _load_file

from defectbench.report import load_report
from defectbench.report.findings import findings
from defectbench.report.table import header_markdown

NOT_STATED = (
    "so the reference's recall and specificity are not stated here and no "
    "artifact's specificity is compared with it; the drops are as the run recorded "
    "them."
)


def _load() -> dict:
    return _load_file(CPU)


def _findings(tmp_path: Path, data: dict) -> list[str]:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    return findings(load_report([path]))


def _keep_only(data: dict, variants: set[str]) -> None:
    """The run as a `--variants` selection of ``variants`` (and the survey) would write it."""
    data["benchmarks"] = [
        b for b in data["benchmarks"] if b["extra_info"]["variant"] in variants | {SURVEY}
    ]
    data["defectbench"]["quality"] = [
        q for q in data["defectbench"]["quality"] if q["variant"] in variants
    ]


def _fail(data: dict, variant: str) -> None:
    for q in data["defectbench"]["quality"]:
        if q["variant"] == variant and q.get("verdicts"):
            q["passed"] = False
            q["verdicts"][-1]["passed"] = False  # the FNR ceiling


def _untimed(data: dict, variant: str) -> None:
    """Its quality tests ran, its latency benchmarks did not (`-k`, a `--variants` glob)."""
    data["benchmarks"] = [b for b in data["benchmarks"] if b["extra_info"]["variant"] != variant]


# --- one gated artifact ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variants, failing, expected",
    [
        (
            {TEACHER},
            None,
            f"the one gated artifact, the reference `{TEACHER}` fp32, passes every budget.",
        ),
        # was "0 of 1 gated artifact pass every budget (the reference itself fails its budgets);
        # 1 fails: ..."
        (
            {TEACHER},
            TEACHER,
            f"the one gated artifact, the reference `{TEACHER}` fp32, fails (fnr-ceiling).",
        ),
        (
            {PRUNED},
            None,
            f"the one gated artifact, `{PRUNED}` fp32, fails (recall-drop, "
            "recall-drop-upper-bound, fnr-ceiling).",
        ),
    ],
)
def test_one_gated_artifact_is_not_counted_as_a_plural(tmp_path, variants, failing, expected):
    data = _load()
    _keep_only(data, variants | ({TEACHER} if PRUNED in variants else set()))
    if PRUNED in variants:
        _untimed(data, TEACHER)  # its quality stays: what the drops were measured against
    if failing:
        _fail(data, failing)
    lines = _findings(tmp_path, data)
    assert f"cpu ({XEON}): {expected}" in lines, lines
    assert not any(" of 1 gated artifact" in line for line in lines)


def test_a_reference_that_alone_passes_is_not_among_them(tmp_path):
    # "1 of 3 gated artifacts passes every budget (the reference among them)": among one
    data = _load()
    _fail(data, INT8)
    lines = _findings(tmp_path, data)
    assert any(
        line.startswith(
            f"cpu ({XEON}): 1 of 3 gated artifacts passes every budget "
            "(only the reference); 2 fail:"
        )
        for line in lines
    ), lines


def test_counts_of_one_take_the_singular(tmp_path):
    data = _load()
    for q in data["defectbench"]["quality"]:
        if q["variant"] == TEACHER:
            q["n_defective"], q["recall"] = 1, 1.0
    data["defectbench"]["stopped_early"] = {"reason": "interrupted", "selected": 1, "not_run": 1}
    lines = _findings(tmp_path, data)
    assert any(
        f"the reference `{TEACHER}` fp32 catches 1 of 1 defective cell, recall 1.000" in line
        for line in lines
    ), lines
    assert "1 of its 1 selected test never ran" in lines[0]
    # the header's input line: was "1 benchmarks, 1 quality entries"
    _keep_only(data, {TEACHER})
    data["benchmarks"] = [
        b
        for b in data["benchmarks"]
        if b["extra_info"]["variant"] == TEACHER and b["extra_info"]["batch"] == 1
    ]
    data["defectbench"]["quality"] = data["defectbench"]["quality"][:1]
    path = tmp_path / "one.json"
    path.write_text(json.dumps(data))
    assert "1 benchmark, 1 quality entry" in header_markdown(load_report([path]))


# --- a reference without a row -----------------------------------------------------------------


def test_a_reference_scored_but_not_timed_is_said_so(tmp_path):
    # was "its file has no row of the reference (FP32 on CPU; a `--devices cuda` run has
    # none)" of a CPU run that scored the reference but deselected its latency benchmarks
    data = _load()
    _untimed(data, TEACHER)
    lines = _findings(tmp_path, data)
    assert lines[0] == (
        f"cpu ({XEON}): its file scored the reference `{TEACHER}` fp32 on CPU "
        "but did not time it (no row in the table; the header's notes name "
        f"it), {NOT_STATED}"
    )
    assert not any("--devices cuda" in line for line in lines)


def test_a_reference_timed_but_not_scored_is_said_so(tmp_path):
    data = _load()
    data["defectbench"]["quality"] = [
        q for q in data["defectbench"]["quality"] if q["variant"] != TEACHER
    ]
    for bench in data["benchmarks"]:
        if bench["extra_info"]["variant"] == TEACHER:
            bench["extra_info"].pop("quality", None)
    lines = _findings(tmp_path, data)
    assert lines[0] == (
        f"cpu ({XEON}): its file timed the reference `{TEACHER}` fp32 on CPU "
        "but holds no quality result for it at operating point "
        f"`dev_recall_0.90`, {NOT_STATED}"
    )


def test_a_reference_scored_only_at_another_operating_point_is_said_so(tmp_path):
    # was "(the run's selection left it out)": the file holds the reference's result, only
    # not at the operating point the report was asked for
    data = _load()
    _untimed(data, TEACHER)
    data["defectbench"]["quality"] = [
        q
        for q in data["defectbench"]["quality"]
        if q["variant"] != TEACHER or q["operating_point"]["name"] == "p0.5"
    ]
    lines = _findings(tmp_path, data)
    assert lines[0] == (
        f"cpu ({XEON}): its file scored the reference `{TEACHER}` fp32 on CPU "
        "only at operating point `p0.5`, not at `dev_recall_0.90`, and did not time it, "
        f"{NOT_STATED}"
    )


def test_a_reference_scored_at_a_borrowed_threshold_is_not_called_unscored(tmp_path):
    # was "holds no quality result for it": it holds one, at another case's threshold
    data = _load()
    for q in data["defectbench"]["quality"]:
        if q["variant"] == TEACHER:
            q["threshold_from_this_case"] = False
    for bench in data["benchmarks"]:
        if bench["extra_info"]["variant"] == TEACHER and bench["extra_info"].get("quality"):
            bench["extra_info"]["quality"]["threshold_from_this_case"] = False
    lines = _findings(tmp_path, data)
    assert lines[0] == (
        f"cpu ({XEON}): its file scored the reference `{TEACHER}` fp32 on CPU at operating "
        "point `dev_recall_0.90` only at a threshold chosen for another case, "
        f"{NOT_STATED}"
    )


def test_a_cpu_run_without_the_reference_is_not_called_a_cuda_run(tmp_path):
    data = _load()
    _keep_only(data, {INT8, PRUNED})
    lines = _findings(tmp_path, data)
    assert lines[0] == (
        f"cpu ({XEON}): its file has no result of the reference `{TEACHER}` "
        f"fp32 on CPU (the run's selection left it out), {NOT_STATED}"
    )


# --- numbers a file did not record, batches only some ran at ---------------------------------


def test_unrecorded_new_misses_are_not_printed_as_zero(tmp_path):
    data = _load()
    for q in data["defectbench"]["quality"]:
        if q["variant"] == PRUNED:
            q["mcnemar_p"] = 0.002
            q.pop("new_misses", None)
            q.pop("new_catches", None)
    for bench in data["benchmarks"]:
        bench["extra_info"].pop("quality", None)
    (shown,) = [line for line in _findings(tmp_path, data) if "is shown" in line]
    assert f"`{PRUNED}` fp32: drop +0.074, p = 0.002" in shown
    assert "0 new misses" not in shown


def test_a_batch_only_some_artifacts_ran_at_says_so(tmp_path):
    # the pruned student was timed at batch 1 only: at batch 8 "the fastest artifact passing
    # every budget" is the fastest of two, not of the three the gates judged
    lines = _findings(tmp_path, _load())
    b1 = next(line for line in lines if line.startswith("cpu b1 "))
    b8 = next(line for line in lines if line.startswith("cpu b8 "))
    assert b1.startswith(f"cpu b1 ({XEON}): the fastest")
    assert b8.startswith(
        f"cpu b8 ({XEON}; only 2 of the 3 gated artifacts timed at this batch): the fastest"
    )


def test_the_header_says_a_batch_only_some_artifacts_ran_at_as_the_findings_do(tmp_path):
    # the header's "fastest variant passing every budget" at batch 8 was the fastest of two
    # timed there, printed as if of all three
    data = _load()
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    report = load_report([path])
    partly = f"cpu b8 ({XEON}; only 2 of the 3 gated artifacts timed at this batch)"
    header = header_markdown(report).splitlines()
    assert (
        f"  - cpu b1 ({XEON}): `{INT8}` int8, p50 8.70 ms, 4.79x the reference's "
        "throughput" in header
    )
    assert f"  - {partly}: `{INT8}` int8, p50 52.3 ms, 5.55x the reference's throughput" in header
    assert any(line.startswith(f"{partly}: the fastest") for line in findings(report))
    # a panel where none passes is labelled the same way: only the pruned student, timed at
    # batch 1 alone, passes
    _fail(data, INT8)
    _fail(data, TEACHER)
    for q in data["defectbench"]["quality"]:
        if q["variant"] == PRUNED:
            q["passed"] = True
            for verdict in q["verdicts"]:
                verdict["passed"] = True
    path.write_text(json.dumps(data))
    header = header_markdown(load_report([path])).splitlines()
    assert f"  - {partly}: none passes" in header


def test_a_run_without_quality_is_not_said_to_be_ungated_at_a_point(tmp_path):
    # "at this operating point" of a run that has none
    data = _load()
    data["defectbench"]["quality"] = []
    for bench in data["benchmarks"]:
        bench["extra_info"].pop("quality", None)
    lines = _findings(tmp_path, data)
    assert lines[0] == (
        "Nothing in the inputs was scored for quality, so there is nothing to "
        "conclude about recall."
    )


def test_one_recorded_count_of_two_is_not_printed(tmp_path):
    # new misses recorded, new catches not: "17 new misses and None new catches" is no count
    data = _load()
    for q in data["defectbench"]["quality"]:
        if q["variant"] == PRUNED:
            q["mcnemar_p"] = 0.002
            q.pop("new_catches", None)
    for bench in data["benchmarks"]:
        bench["extra_info"].pop("quality", None)
    (shown,) = [line for line in _findings(tmp_path, data) if "is shown" in line]
    assert f"`{PRUNED}` fp32: drop +0.074, p = 0.002" in shown
    assert "new catch" not in shown and "new miss" not in shown and "None" not in shown


def test_the_count_compared_includes_artifacts_that_lost_nothing(tmp_path):
    # "not corrected for the N artifacts compared": every McNemar test run, not only the losses
    data = _load()
    for q in data["defectbench"]["quality"]:
        if q["variant"] == PRUNED:
            q["mcnemar_p"] = 0.002
        if q["variant"] == INT8:
            q["recall_drop"] = -0.01  # a gain: tested, but no loss
    for bench in data["benchmarks"]:
        bench["extra_info"].pop("quality", None)
    (shown,) = [line for line in _findings(tmp_path, data) if "is shown" in line]
    assert "not corrected for the 2 artifacts compared" in shown
    assert INT8 not in shown


def test_a_file_that_ran_both_devices_states_its_cpu_reference_once(tmp_path):
    # one `--devices cpu,cuda` run: the CUDA group's drops are against the CPU reference, whose
    # recall is stated under CPU only; the teacher's CUDA row is a variant like any, not "the
    # reference among them"
    data = _load()
    gpu = _load_file(GPU)
    data["machine_info"]["gpu"] = gpu["machine_info"]["gpu"]
    data["benchmarks"] += gpu["benchmarks"]
    data["defectbench"]["quality"] += gpu["defectbench"]["quality"]
    lines = _findings(tmp_path, data)
    assert [line for line in lines if ": the reference `" in line] == [
        f"cpu ({XEON}): the reference `{TEACHER}` fp32 catches 186 of 204 defective cells, "
        "recall 0.912 [0.866, 0.946], at specificity 0.900."
    ]
    assert f"cuda ({H100}): 2 of 2 gated artifacts pass every budget." in lines


def test_the_reference_is_the_teachers_fp32_row_not_another_precision(tmp_path):
    # a BF16 build of the teacher on CPU is a variant measured against the FP32 one
    data = _load()
    for entries in (data["defectbench"]["quality"], data["benchmarks"]):
        for item in [i for i in entries if (i.get("extra_info") or i)["variant"] == TEACHER]:
            twin = json.loads(json.dumps(item))
            for q in (twin, twin.get("extra_info"), (twin.get("extra_info") or {}).get("quality")):
                if q:
                    q["precision"] = "bf16"
                    if "recall" in q:
                        q["recall"], q["recall_drop"] = 0.85, 0.062
            entries.insert(0, twin)
    lines = _findings(tmp_path, data)
    assert any(
        line.startswith(
            f"cpu ({XEON}): the reference `{TEACHER}` fp32 catches 186 of 204 defective cells"
        )
        for line in lines
    ), lines
    assert any(line.startswith(f"cpu ({XEON}): 3 of 4 gated artifacts pass") for line in lines)
    assert not any(f"`{TEACHER}` bf16 catches" in line for line in lines)


def test_the_fastest_is_chosen_by_latency_not_by_the_recorded_speedup(tmp_path):
    # a speedup is against its own file's reference: the panel's fastest is its lowest p50
    data = _load()
    for bench in data["benchmarks"]:
        if bench["extra_info"]["variant"] == INT8:
            bench["extra_info"]["speedup_vs_reference"] = 0.5
        elif bench["extra_info"]["variant"] == TEACHER:
            bench["extra_info"]["speedup_vs_reference"] = 2.0
    b1 = next(line for line in _findings(tmp_path, data) if line.startswith("cpu b1 "))
    assert b1.startswith(
        f"cpu b1 ({XEON}): the fastest artifact passing every budget is `{INT8}` int8 "
        "(onnxruntime) at p50 8.70 ms, 0.5x"
    ), b1


def test_the_cli_reports_at_the_operating_point_asked_for(tmp_path, capsys, monkeypatch):
    from defectbench.report.cli import main

    out = tmp_path / "r"
    assert main([str(CPU), "--out", str(out), "--no-plots", "--operating-point", "p0.5"]) == 0
    assert "at operating point 'p0.5'" in capsys.readouterr().out
    # a blank --out (an unset variable in quotes) is refused, not made a folder named " "
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main([str(CPU), "--out", "  ", "--no-plots"])
    assert exit_.value.code == 2
    assert not (tmp_path / "  ").exists()


@pytest.mark.parametrize("p_value, printed", [(0.04996, "0.04996"), (0.0498, "0.0498"),
                                              (0.050004, "0.050004"), (0.002, "0.002")])
def test_a_p_value_next_to_the_level_does_not_print_as_the_level(tmp_path, p_value, printed):
    # 0.04996 printed "p = 0.05" in a "p < 0.05" sentence
    data = _load()
    for q in data["defectbench"]["quality"]:
        if q["variant"] == PRUNED:
            q["mcnemar_p"] = p_value
    for bench in data["benchmarks"]:
        bench["extra_info"].pop("quality", None)
    lines = _findings(tmp_path, data)
    assert any(f"`{PRUNED}` fp32: drop +0.074, " in line and f"p = {printed}" in line
               for line in lines), lines
    assert not any("p = 0.05." in line or "p = 0.05;" in line for line in lines), lines


def test_fields_an_older_or_edited_file_lacks_are_left_out_not_a_traceback(tmp_path):
    # a reference without its count of defective cells, and a drop without its McNemar p,
    # are what older files hold: the sentences that need them say less, they do not fail
    data = _load()
    entries = data["defectbench"]["quality"] + [
        b["extra_info"]["quality"] for b in data["benchmarks"] if b["extra_info"].get("quality")
    ]
    for q in entries:
        if q["variant"] == TEACHER:
            q.pop("n_defective", None)
        if q["variant"] == PRUNED:
            q.pop("mcnemar_p", None)
    lines = _findings(tmp_path, data)
    assert lines[0].startswith(f"cpu ({XEON}): the reference `{TEACHER}` fp32 has recall "), lines
    assert not any("McNemar" in line and PRUNED in line for line in lines), lines
