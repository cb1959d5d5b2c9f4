"""Report edge cases that mutation testing of defectbench/report showed no other test pinned:
each test here failed under a small planted bug (a flipped comparison, a dropped check, a
wrong field) that left tests/test_report*.py passing.

Inputs are edited copies of tests/data/report/cpu.json and gpu.json (see tests/test_report.py):
on CPU the reference teacher, a passing INT8 student and a failing pruned one at batch 1 (and
8 for the first two), plus a latency-only survey model; on CUDA the teacher and the INT8
student at batch 8.
"""

import copy
import math

import pytest
from report_data import CPU, GPU, H100, INT8, PRUNED, SURVEY, TEACHER, XEON, without_recall_drops
from report_data import dump as _dump
from report_data import load as _load

from defectbench.report import load_report, pareto_front
from defectbench.report.findings import findings
from defectbench.report.plots import (
    FAIL_COLOUR,
    FRONTIER_GID,
    REFERENCE_COLOUR,
    SURVEY_COLOUR,
    budget_levels,
    latency_figure,
    plot_files,
    size_figure,
)
from defectbench.report.table import header_markdown, summary_dict

OP = "dev_recall_0.90"


def _op(q: dict) -> str:
    return q["operating_point"]["name"]


def _qualities(data: dict, variant: str, op: str = OP) -> list[dict]:
    """Every copy of ``variant``'s quality at ``op``: the run's list and the benchmarks' own."""
    found = [q for q in data["defectbench"]["quality"] if q["variant"] == variant and _op(q) == op]
    found += [b["extra_info"]["quality"] for b in data["benchmarks"]
              if b["extra_info"]["variant"] == variant and b["extra_info"].get("quality")
              and _op(b["extra_info"]["quality"]) == op]
    return found


def _set_p50(data: dict, variant: str, batch: int, p50: float) -> None:
    for b in data["benchmarks"]:
        if b["extra_info"]["variant"] == variant and b["extra_info"]["batch"] == batch:
            b["extra_info"]["latency_ms"]["p50"] = p50


# --- Pareto frontier ---------------------------------------------------------------------------


def test_pareto_front_leaves_out_a_nan_recall_or_cost():
    nan = float("nan")
    # a NaN recall compares false both ways: it must not stand on the front as undominated
    assert pareto_front([1.0, 2.0], [nan, 0.5]) == [1]
    assert pareto_front([nan, 2.0], [0.9, 0.5]) == [1]


def test_a_model_never_gated_is_not_on_the_passing_frontier(tmp_path):
    # the INT8 student, fastest and not gated (no budget applied): "passing" means passing
    data = _load(CPU)
    for q in _qualities(data, INT8):
        q["verdicts"], q["passed"] = [], True
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    passing = {report.rows[i].variant for i in report.passing_latency_frontier()}
    assert INT8 not in passing
    assert TEACHER in passing
    summary = summary_dict(report)
    assert all(report.rows[i].passed for i in summary["frontiers"]["latency_passing"])


def test_the_size_frontier_is_drawn_per_machine(tmp_path):
    # a second CPU, whose every model is smaller-recall than on the Xeon: still its own front
    other = _load(CPU)
    other["machine_info"]["node"] = "otherbox"
    other["machine_info"]["cpu"]["brand_raw"] = "AMD EPYC 9654"
    other["datetime"] = "2026-11-23T10:00:00+00:00"
    for variant in (TEACHER, INT8, PRUNED):
        for q in _qualities(other, variant) + _qualities(other, variant, "p0.5"):
            q["recall"] = round(q["recall"] - 0.2, 3)
            q["recall_interval"] = None
    report = load_report([CPU, _dump(other, tmp_path / "other.json")])
    machines = {report.rows[i].machine for i in report.size_frontier()}
    assert machines == {XEON, "AMD EPYC 9654"}


# --- verdicts, fastest passing, order ----------------------------------------------------------


def test_passed_false_without_verdicts_is_a_fail_not_ungated(tmp_path):
    data = _load(CPU)
    for q in _qualities(data, INT8):
        q["verdicts"], q["passed"] = [], False
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    int8 = [r for r in report.rows if r.variant == INT8]
    assert int8 and all((r.passed, r.verdict) == (False, "FAIL") for r in int8)


def test_a_tie_for_fastest_passing_is_named_alike_in_header_and_findings(tmp_path):
    data = _load(CPU)
    _set_p50(data, TEACHER, 1, 8.7)  # as fast as the INT8 student at batch 1
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    fastest = [report.rows[i] for i in report.fastest_passing() if report.rows[i].batch == 1]
    assert [r.variant for r in fastest] == [INT8]  # the first in the table's order
    line = next(f for f in findings(report) if f.startswith(f"cpu b1 ({XEON})"))
    assert f"the fastest artifact passing every budget is `{INT8}` int8" in line
    assert f"  - cpu b1 ({XEON}): `{INT8}` int8, p50 8.70 ms" in header_markdown(report)


def test_rows_of_a_panel_are_in_latency_order_not_name_order(tmp_path):
    data = _load(CPU)
    _set_p50(data, TEACHER, 1, 5.0)
    _set_p50(data, SURVEY, 1, 2.0)
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    batch1 = [(r.variant, r.latency_p50_ms) for r in report.rows if r.batch == 1]
    assert batch1 == [(SURVEY, 2.0), (TEACHER, 5.0), (INT8, 8.7), (PRUNED, 19.9)]


# --- reference recall, budgets, fallback quality -----------------------------------------------


def test_reference_recall_fallback_takes_the_teachers_fp32_entry(tmp_path):
    data = without_recall_drops(_load(CPU))
    # an INT8 copy of the teacher, scored (not timed) and listed first: not the reference
    int8_teacher = copy.deepcopy(_qualities(data, TEACHER)[0])
    int8_teacher.update(precision="int8", recall=0.5, recall_interval=None, verdicts=[],
                        passed=None)
    data["defectbench"]["quality"].insert(0, int8_teacher)
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    assert report.reference_recall == {("cpu", XEON): 0.912}


def test_a_cuda_panels_reference_line_is_what_its_drops_were_measured_against(tmp_path):
    # the teacher's own CUDA row applies the CPU threshold: recall 0.9, 0.012 below the CPU
    # reference every CUDA drop is measured against (0.897 + 0.015 = 0.912)
    data = _load(GPU)
    for q in _qualities(data, TEACHER):
        q["recall"], q["recall_drop"], q["recall_interval"] = 0.9, 0.012, None
    report = load_report([_dump(data, tmp_path / "gpu.json")])
    assert report.reference_recall[("cuda", H100)] == pytest.approx(0.912)


def test_the_header_shows_the_first_files_budget_when_files_differ(tmp_path):
    gpu = _load(GPU)
    for budget in gpu["defectbench"]["budgets"]:
        if budget["name"] == "fnr-ceiling":
            budget["value"] = 0.25
    report = load_report([CPU, _dump(gpu, tmp_path / "gpu.json")])
    ceiling = next(b for b in report.budgets if b["name"] == "fnr-ceiling")
    assert ceiling["value"] == 0.2
    header = header_markdown(report)
    assert "`fnr-ceiling`: fnr ceiling 0.2, judged on" in header
    assert "this header shows the first: " in header


def test_a_benchmarks_own_quality_at_another_operating_point_is_not_used(tmp_path):
    data = _load(CPU)
    other = next(q for q in data["defectbench"]["quality"]
                 if q["variant"] == INT8 and _op(q) == "p0.5")
    data["defectbench"]["quality"] = [q for q in data["defectbench"]["quality"]
                                      if not (q["variant"] == INT8 and _op(q) == OP)]
    for b in data["benchmarks"]:
        if b["extra_info"]["variant"] == INT8:
            b["extra_info"]["quality"] = copy.deepcopy(other)
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    assert report.operating_point == OP
    int8 = [r for r in report.rows if r.variant == INT8]
    assert int8 and all(r.recall is None and r.verdict == "no quality" for r in int8)


def test_an_older_files_seconds_are_read_as_milliseconds(tmp_path):
    data = _load(CPU)
    for b in data["benchmarks"]:
        del b["extra_info"]["latency_ms"]
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    teacher = next(r for r in report.rows if r.variant == TEACHER and r.batch == 1)
    assert math.isclose(teacher.latency_p50_ms, 41.7)


# --- header and summary.json -------------------------------------------------------------------


def test_a_stored_drop_bound_a_little_off_tangos_is_not_called_tangos(tmp_path):
    from defectbench.metrics.paired import drop_interval

    data = _load(CPU)
    entries = [q for q in data["defectbench"]["quality"]
               + [b["extra_info"].get("quality") or {} for b in data["benchmarks"]]
               if q.get("new_misses") is not None]
    assert entries
    for q in entries:
        tango = drop_interval(q["new_misses"], q["new_catches"], q["n_defective"], 0.95,
                              "upper")[1]
        # 0.004 off: the third decimal the table prints; the INT8 student's rows only
        q["recall_drop_upper"] = tango + (0.004 if q["variant"] == INT8 else 0.0)
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    line = next(x for x in header_markdown(report).splitlines() if x.startswith("- intervals"))
    assert "Tango's asymptotic score bound" not in line
    assert "as the inputs stored them: for 2 rows they are not Tango's score bound" in line


def test_summary_frontiers_are_each_their_own(tmp_path):
    # the failing pruned model made the smallest: on the size frontier, not on the latency one
    # (the INT8 student is faster and better at batch 1)
    data = _load(CPU)
    for b in data["benchmarks"]:
        if b["extra_info"]["variant"] == PRUNED:
            b["extra_info"]["size_mb"] = 0.5
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    summary = summary_dict(report)
    ids = {name: {summary["rows"][i]["variant"] for i in members}
           for name, members in summary["frontiers"].items()}
    assert PRUNED in ids["size"] and PRUNED not in ids["latency"]
    assert summary["frontiers"] == {"latency": report.latency_frontier(),
                                    "latency_passing": report.passing_latency_frontier(),
                                    "size": report.size_frontier()}


def test_a_panel_judged_nowhere_is_not_gated_though_another_panel_passes(tmp_path):
    gpu = _load(GPU)
    for q in gpu["defectbench"]["quality"] + [b["extra_info"].get("quality") or {}
                                               for b in gpu["benchmarks"]]:
        if q:
            q["verdicts"], q["passed"] = [], None
    report = load_report([CPU, _dump(gpu, tmp_path / "gpu.json")])
    header = header_markdown(report)
    assert f"  - cuda b8 ({H100}): not gated at this operating point" in header
    assert f"  - cuda b8 ({H100}): none passes" not in header


# --- findings ----------------------------------------------------------------------------------


def _pass(data: dict, variant: str) -> None:
    for q in _qualities(data, variant):
        q["passed"] = True
        for v in q["verdicts"]:
            v["passed"] = True


def _set_quality(data: dict, variant: str, **fields) -> None:
    for q in _qualities(data, variant):
        q.update(fields)


def _b1_line(lines: list[str]) -> str:
    return next(line for line in lines if line.startswith(f"cpu b1 ({XEON})"))


def test_the_references_catch_count_is_rounded_not_truncated(tmp_path):
    # 183 of 204 cells is recall 0.897 as stored; 0.897 * 204 = 182.988
    data = _load(CPU)
    _set_quality(data, TEACHER, recall=0.897, recall_interval=None)
    lines = findings(load_report([_dump(data, tmp_path / "cpu.json")]))
    assert any(f"the reference `{TEACHER}` fp32 catches 183 of 204 defective cells, recall "
               "0.897" in line for line in lines), lines


def test_a_failing_artifact_without_a_drop_is_not_said_to_lose_recall(tmp_path):
    # the pruned student fails its FNR ceiling, but misses as many cells as it newly catches
    data = _load(CPU)
    _set_quality(data, PRUNED, recall_drop=0.0, new_misses=3, new_catches=3, mcnemar_p=1.0)
    lines = findings(load_report([_dump(data, tmp_path / "cpu.json")]))
    assert not any("recall loss" in line for line in lines), lines


def test_a_p_value_of_exactly_the_level_does_not_show_a_loss(tmp_path):
    data = _load(CPU)
    _set_quality(data, PRUNED, mcnemar_p=0.05)
    lines = findings(load_report([_dump(data, tmp_path / "cpu.json")]))
    assert not any("is shown (exact McNemar" in line for line in lines), lines
    (open_,) = [line for line in lines if line.startswith("Failing, with a recall loss")]
    assert f"`{PRUNED}` fp32: drop +" in open_ and open_.endswith("p = 0.05.")


def test_costly_passing_artifacts_are_listed_by_specificity_and_skipped_for_the_runner_up(
        tmp_path):
    # the pruned student passes too, at a specificity further below the reference's 0.900
    # than the INT8 student's, and faster than the teacher
    data = _load(CPU)
    _pass(data, PRUNED)
    _set_quality(data, INT8, specificity=0.70)
    _set_quality(data, PRUNED, specificity=0.60)
    lines = findings(load_report([_dump(data, tmp_path / "cpu.json")]))
    (costly,) = [line for line in lines if line.startswith("Passing at a specificity")]
    assert costly.endswith(f"review: `{PRUNED}` fp32 0.600; `{INT8}` int8 0.700.")
    assert (f"Within 0.1 of the reference's specificity, the fastest is `{TEACHER}` fp32"
            in _b1_line(lines))


def test_the_runner_up_keeping_specificity_is_the_fastest_of_those(tmp_path):
    data = _load(CPU)
    _pass(data, PRUNED)  # 19.9 ms, faster than the teacher's 41.7, specificity kept
    _set_quality(data, INT8, specificity=0.70)
    _set_quality(data, PRUNED, specificity=0.85)
    lines = findings(load_report([_dump(data, tmp_path / "cpu.json")]))
    assert (f"Within 0.1 of the reference's specificity, the fastest is `{PRUNED}` fp32"
            in _b1_line(lines))


def test_a_failing_artifact_as_fast_as_the_passing_one_is_not_called_faster(tmp_path):
    data = _load(CPU)
    _pass(data, PRUNED)
    for q in _qualities(data, INT8):
        q["passed"] = False
        q["verdicts"][-1]["passed"] = False
    _set_p50(data, PRUNED, 1, 8.7)  # the INT8 student's p50: a tie, not a faster failure
    line = _b1_line(findings(load_report([_dump(data, tmp_path / "cpu.json")])))
    assert f"the fastest artifact passing every budget is `{PRUNED}` fp32" in line
    assert "The fastest gated artifact" not in line


def test_a_batch_that_timed_nothing_gated_says_so_once(tmp_path):
    data = _load(CPU)
    survey = next(b for b in data["benchmarks"] if b["extra_info"]["variant"] == SURVEY)
    extra = copy.deepcopy(survey)
    extra["name"] = extra["name"].replace("b1", "b4")
    extra["fullname"] = extra["fullname"].replace("b1", "b4")
    extra["extra_info"]["batch"] = 4
    data["benchmarks"].append(extra)
    lines = findings(load_report([_dump(data, tmp_path / "cpu.json")]))
    assert f"cpu b4 ({XEON}): nothing gated was timed." in lines, lines
    # one survey architecture, timed at two batches
    assert lines[-1].endswith("timed in the table with no quality and no claim here: 1.")


def test_an_ungated_artifact_is_not_the_fastest_gated_one(tmp_path):
    data = _load(CPU)
    for q in _qualities(data, INT8):  # the fastest at batch 1, and no budget applied to it
        q["verdicts"], q["passed"] = [], None
    line = _b1_line(findings(load_report([_dump(data, tmp_path / "cpu.json")])))
    assert f"the fastest artifact passing every budget is `{TEACHER}` fp32" in line
    # the pruned student, failing at 19.9 ms, is; the INT8 student at 8.70 ms was not gated
    assert f"The fastest gated artifact, `{PRUNED}` fp32 at 19.9 ms, fails" in line
    assert INT8 not in line


def test_a_failing_artifact_is_not_listed_as_passing_at_a_low_specificity(tmp_path):
    data = _load(CPU)
    _set_quality(data, PRUNED, specificity=0.60)  # it fails its budgets
    lines = findings(load_report([_dump(data, tmp_path / "cpu.json")]))
    assert not any(line.startswith("Passing at a specificity") for line in lines), lines


# --- inputs and rows ---------------------------------------------------------------------------


def test_a_numbered_cuda_device_runs_on_the_gpu_not_the_cpu(tmp_path):
    data = _load(GPU)
    for q in data["defectbench"]["quality"] + [b["extra_info"] for b in data["benchmarks"]] + [
            b["extra_info"].get("quality") or {} for b in data["benchmarks"]]:
        if q.get("device") == "cuda":
            q["device"] = "cuda:0"
    report = load_report([_dump(data, tmp_path / "gpu.json")])
    assert {(r.device, r.machine) for r in report.rows} == {("cuda:0", H100)}


def test_benchmarks_without_defectbench_extra_info_are_left_out_and_counted(tmp_path):
    data = _load(CPU)
    foreign = copy.deepcopy(data["benchmarks"][0])
    foreign["name"] = foreign["fullname"] = "test_something_else"
    foreign["extra_info"] = {}
    data["benchmarks"].append(foreign)
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    assert len(report.rows) == len(data["benchmarks"]) - 1
    assert "1 benchmark(s) without defectbench extra_info were left out" in report.notes


def test_a_row_without_quality_has_no_operating_point(tmp_path):
    report = load_report([CPU])
    survey = next(r for r in summary_dict(report)["rows"] if r["variant"] == SURVEY)
    assert survey["operating_point"] is None and survey["recall"] is None
    assert {r.operating_point for r in report.rows if r.has_quality} == {OP}


# --- plots -------------------------------------------------------------------------------------


def test_a_per_group_budget_is_no_line_on_the_overall_recall_axis(tmp_path):
    data = _load(CPU)
    data["defectbench"]["budgets"].append({
        "name": "per-type-floor", "metric": "recall", "kind": "floor", "value": 0.7,
        "judged_on": "point", "confidence": 0.95, "group": "cell_type", "variants": "*",
        "operating_point": "*"})
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    names = {label.split(":")[0] for _, label, _ in budget_levels(report, "cpu", XEON)}
    assert names == {"recall-drop", "recall-drop-upper-bound", "fnr-ceiling"}


def test_the_size_plots_frontier_is_the_size_frontier(tmp_path):
    data = _load(CPU)
    for b in data["benchmarks"]:
        if b["extra_info"]["variant"] == PRUNED:
            b["extra_info"]["size_mb"] = 0.5  # smallest: on the size front, off the latency one
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    ax = size_figure(report).axes[0]
    (front,) = [line for line in ax.lines if line.get_gid() == FRONTIER_GID]
    assert 0.5 in list(front.get_xdata())
    # drawn smallest first: the rows come in latency order, the faster INT8 student first
    assert list(front.get_xdata()) == [0.5, 3.4, 19.2]


def test_an_ungated_point_is_no_red_cross_and_the_reference_line_is_drawn(tmp_path):
    data = _load(CPU)
    for q in _qualities(data, INT8):
        q["verdicts"], q["passed"] = [], None
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    ax = latency_figure(report).axes[0]  # cpu, batch 1
    crosses = [line for line in ax.lines if line.get_marker() == "x"]
    assert len(crosses) == 1 and crosses[0].get_color() == FAIL_COLOUR
    assert list(crosses[0].get_xdata()) == [19.9]  # the failing pruned student only
    reference = [line for line in ax.lines if line.get_color() == REFERENCE_COLOUR]
    assert [list(line.get_ydata()) for line in reference] == [[0.912, 0.912]]


def test_the_first_row_missing_its_quality_is_named_too(tmp_path):
    data = _load(CPU)
    _set_p50(data, PRUNED, 1, 1.0)  # the table's first row
    data["defectbench"]["quality"] = [q for q in data["defectbench"]["quality"]
                                      if not (q["variant"] == PRUNED and _op(q) == OP)]
    for b in data["benchmarks"]:
        if b["extra_info"]["variant"] == PRUNED:
            b["extra_info"]["quality"] = None
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    assert report.rows[0].variant == PRUNED and report.rows[0].verdict == "no quality"
    assert f"no quality at operating point {OP!r} for: {PRUNED} fp32 cpu" in report.notes


# --- plot axes and panels (mutation-tested round 2) --------------------------------------------


def test_latency_is_on_a_log_x_axis_and_size_on_a_linear_one_from_zero():
    report = load_report([CPU])
    for ax in latency_figure(report).axes:
        if ax.get_visible():
            assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"
            assert "latency p50" in ax.get_xlabel() and "recall" in ax.get_ylabel()
    for ax in size_figure(report).axes:
        if ax.get_visible():
            assert ax.get_xscale() == "linear" and ax.get_xlim()[0] == 0.0
            assert ax.get_xlabel() == "model size (MiB)" and "recall" in ax.get_ylabel()


def test_a_budget_judged_on_its_bound_is_dotted_and_one_judged_on_the_point_dashed():
    report = load_report([CPU])
    styles = {label.split(":")[0]: style for _, label, style in budget_levels(report, "cpu", XEON)}
    assert styles == {"recall-drop": "--", "recall-drop-upper-bound": ":", "fnr-ceiling": ":"}


# --- plot points (mutation-tested round 3) -----------------------------------------------------


def _points(ax) -> list[tuple[float, float, str]]:
    """Each model point drawn in ``ax``: (cost, recall, face colour), not crosses or marks."""
    return [(x, y, line.get_markerfacecolor())
            for line in ax.lines if line.get_linestyle() == "None"
            and line.get_marker() != "x" and line.get_color() != SURVEY_COLOUR
            for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True)]


def test_the_size_plot_shows_a_model_timed_at_two_batches_once():
    # the teacher and the INT8 student ran at batch 1 and 8: one model, one size, one point
    ax = size_figure(load_report([CPU])).axes[0]
    assert sorted(x for x, _, _ in _points(ax)) == [3.4, 6.1, 19.2]


def test_a_latency_only_model_is_a_mark_on_the_x_axis_of_both_plots():
    report = load_report([CPU])
    for figure, cost in ((latency_figure, 123.0), (size_figure, 330.2)):
        ax = figure(report).axes[0]  # cpu (batch 1): where the survey model ran
        (mark,) = [line for line in ax.lines if line.get_color() == SURVEY_COLOUR]
        assert list(mark.get_xdata()) == [cost] and mark.get_marker() == "^"
        assert ax.get_xlim()[1] > cost
        assert ax.get_ylim()[0] > 0.5  # at the foot of the axes: recall 0.02 would squash it
        assert "latency only (no recall)" in [t.get_text() for t in ax.figure.legends[0].texts]


def test_an_ungated_point_is_hollow_and_a_gated_one_filled(tmp_path):
    data = _load(CPU)
    for q in _qualities(data, INT8):
        q["verdicts"], q["passed"] = [], None
    ax = latency_figure(load_report([_dump(data, tmp_path / "cpu.json")])).axes[0]
    faces = {x: face for x, _, face in _points(ax)}
    assert faces[8.7] == "white"  # the ungated INT8 student
    assert faces[41.7] != "white" and faces[19.9] != "white"  # the gated teacher and pruned


def test_a_model_without_a_size_is_left_off_the_size_plot_only(tmp_path):
    data = _load(CPU)
    for b in data["benchmarks"]:
        if b["extra_info"]["variant"] == PRUNED:
            b["extra_info"]["size_mb"] = None
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    assert sorted(x for x, _, _ in _points(size_figure(report).axes[0])) == [3.4, 19.2]
    assert 19.9 in [x for x, _, _ in _points(latency_figure(report).axes[0])]


def test_each_panel_draws_the_budgets_its_own_file_judged_at(tmp_path):
    # merged files may hold one budget name at two values: the CUDA panel's rows were judged
    # at gpu.json's ceiling, not at cpu.json's
    data = _load(GPU)
    (ceiling,) = [b for b in data["defectbench"]["budgets"] if b["name"] == "fnr-ceiling"]
    ceiling["value"] = 0.25
    report = load_report([CPU, _dump(data, tmp_path / "gpu.json")])
    fig = latency_figure(report)
    cuda = next(ax for ax in fig.axes if ax.get_visible() and ax.get_title().startswith("cuda"))
    levels = [round(line.get_ydata()[0], 6) for line in cuda.lines if line.get_linestyle() == ":"]
    assert 0.75 in levels and 0.8 not in levels
    cpu = fig.axes[0]
    assert 0.8 in [round(line.get_ydata()[0], 6) for line in cpu.lines
                   if line.get_linestyle() == ":"]


def test_the_size_plot_file_holds_the_size_figure():
    files = plot_files(load_report([CPU]))
    # the latency plot has a panel per batch (1 and 8), the size plot one per machine
    assert files["pareto_latency.svg"].count(b'id="axes_') == 2
    assert files["pareto_size.svg"].count(b'id="axes_') == 1


def test_latency_panels_are_titled_by_batch_in_two_columns():
    fig = latency_figure(load_report([CPU, GPU]))
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == [
        f"cpu, batch 1: {XEON}", f"cpu, batch 8: {XEON}", f"cuda, batch 8: {H100}"]
    first, second = (ax.get_position() for ax in shown[:2])
    assert first.y0 == second.y0 and first.x1 < second.x0  # side by side, not stacked



def test_two_runtimes_without_a_colour_of_their_own_get_different_colours(tmp_path):
    data = _load(CPU)
    for variant, runtime in ((INT8, "openvino"), (PRUNED, "tensorrt")):
        for b in data["benchmarks"]:
            if b["extra_info"]["variant"] == variant:
                b["extra_info"]["runtime"] = runtime
        for q in _qualities(data, variant) + _qualities(data, variant, "p0.5"):
            q["runtime"] = runtime
    ax = latency_figure(load_report([_dump(data, tmp_path / "cpu.json")])).axes[0]
    colours = {x: line.get_color() for line in ax.lines if line.get_linestyle() == "None"
               and line.get_marker() != "x" and line.get_color() != SURVEY_COLOUR
               for x in line.get_xdata()}
    assert colours[8.7] != colours[19.9]


# --- found by a second mutation pass (2026-12-01) ----------------------------------------------


def _every_quality(data: dict) -> list[dict]:
    return data["defectbench"]["quality"] + [
        b["extra_info"]["quality"] for b in data["benchmarks"] if b["extra_info"].get("quality")
    ]


def test_the_plugins_gated_flag_picks_the_default_operating_point(tmp_path):
    # both points carry verdicts and the ungated one comes first: the flag decides
    data = _load(CPU)
    entries = data["defectbench"]["quality"]
    for q in _every_quality(data):
        q["operating_point"]["gated"] = _op(q) == OP
        if _op(q) == "p0.5":
            q["verdicts"] = [dict(v, passed=True) for v in entries[0]["verdicts"]]
    data["defectbench"]["quality"] = sorted(entries, key=lambda q: _op(q) != "p0.5")
    for b in data["benchmarks"]:
        b["extra_info"]["quality"] = None
    assert load_report([_dump(data, tmp_path / "cpu.json")]).operating_point == OP


def test_a_budget_with_one_verdict_per_group_value_is_named_once_in_the_gate(tmp_path):
    data = _load(CPU)
    for q in _qualities(data, PRUNED):
        q["verdicts"].append(dict(q["verdicts"][-1]))  # fnr-ceiling judged per group value
    rows = load_report([_dump(data, tmp_path / "cpu.json")]).rows
    assert {r.verdict for r in rows if r.variant == PRUNED} == {
        "FAIL: recall-drop, recall-drop-upper-bound, fnr-ceiling"}


def test_two_cpu_machines_count_their_own_gated_artifacts(tmp_path):
    # the header counted the gated artifacts of every CPU file in one machine's panel
    other = _load(CPU)
    other["machine_info"]["cpu"]["brand_raw"] = "AMD EPYC 9654"
    other["datetime"] = "2026-11-23T00:00:00"
    other["benchmarks"] = [b for b in other["benchmarks"]
                           if b["extra_info"]["variant"] != PRUNED]
    other["defectbench"]["quality"] = [q for q in other["defectbench"]["quality"]
                                       if q["variant"] != PRUNED]
    report = load_report([CPU, _dump(other, tmp_path / "amd.json")])
    lines = [line for line in header_markdown(report).splitlines() if line.startswith("  - cpu")]
    assert len(lines) == 4, lines
    assert not any("AMD" in line and "only" in line for line in lines), lines
    assert any(line.startswith(f"  - cpu b8 ({XEON}; only 2 of the 3 gated artifacts timed")
               for line in lines), lines


def test_the_summary_lists_only_the_budgets_applied_at_its_operating_point(tmp_path):
    data = _load(CPU)
    data["defectbench"]["budgets"][0]["operating_point"] = "p0.5"
    summary = summary_dict(load_report([_dump(data, tmp_path / "cpu.json")]))
    assert [b["name"] for b in summary["budgets"]] == ["recall-drop-upper-bound", "fnr-ceiling"]


def test_a_file_without_recall_drops_still_shows_its_quality(tmp_path):
    from defectbench.report.table import table_markdown

    report = load_report([_dump(without_recall_drops(_load(CPU)), tmp_path / "cpu.json")])
    table = table_markdown(report).split("## Table")[1]
    assert "| 0.897 [0.848, 0.934] | - (<= +0.039)" in table
    assert "no quality" not in table.split(SURVEY)[0]


def test_the_machine_is_named_by_its_cpu_brand_not_its_architecture(tmp_path):
    data = _load(CPU)
    data["machine_info"]["processor"] = "x86_64"  # what Linux reports there
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    assert {r.machine for r in report.rows if r.device == "cpu"} == {XEON}


def test_the_reference_recall_fallback_reads_the_reports_operating_point(tmp_path):
    # without stored drops the report falls back on the teacher's own recall: the entry at
    # its operating point (0.912), not whichever comes first (p0.5's 0.862)
    data = without_recall_drops(_load(CPU))
    entries = data["defectbench"]["quality"]
    at = [k for k, q in enumerate(entries) if q["variant"] == TEACHER]
    entries[at[0]], entries[at[1]] = entries[at[1]], entries[at[0]]
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    assert report.operating_point == OP
    assert list(report.reference_recall.values()) == [0.912]


def test_a_row_without_quality_is_on_no_size_frontier(tmp_path):
    data = _load(CPU)
    data["defectbench"]["quality"] = []
    for b in data["benchmarks"]:
        if (b["extra_info"]["variant"], b["extra_info"]["batch"]) == (INT8, 8):
            b["extra_info"]["quality"] = None
    rows = summary_dict(load_report([_dump(data, tmp_path / "cpu.json")]))["rows"]
    (unscored,) = [r for r in rows if (r["variant"], r["batch"]) == (INT8, 8)]
    assert unscored["recall"] is None and not unscored["on_size_frontier"]


def test_a_stop_without_a_selected_count_says_no_none(tmp_path):
    data = _load(CPU)
    data["defectbench"]["stopped_early"] = {"not_run": 3, "reason": "-x"}
    first = findings(load_report([_dump(data, tmp_path / "cpu.json")]))[0]
    assert first.startswith("The run in `cpu.json` stopped early (pytest: -x); part of its "
                            "selection never ran"), first
    assert "None" not in first


def test_csv_integers_print_as_integers_beside_a_missing_one(tmp_path):
    from defectbench.report.table import table_csv

    data = _load(CPU)
    data["benchmarks"][0]["extra_info"]["threads"] = None
    lines = table_csv(load_report([_dump(data, tmp_path / "cpu.json")])).splitlines()
    column = lines[0].split(",").index("threads")
    assert sorted({line.split(",")[column] for line in lines[1:]}) == ["", "2"]


def test_a_missing_upper_bound_is_left_out_of_its_cell(tmp_path):
    from defectbench.report.table import table_cells

    data = _load(CPU)
    for q in _every_quality(data):
        q["recall_drop_upper"] = None
        q["fnr_upper"] = None
    row = load_report([_dump(data, tmp_path / "cpu.json")]).rows[0]
    assert table_cells(row)[7:9] == ["+0.015", "0.103"]


def test_the_header_names_only_other_operating_points_and_no_match_all_scope(tmp_path):
    header = header_markdown(load_report([CPU]))
    assert f"- operating point: `{OP}` (also in the inputs: p0.5; pick with" in header
    data = _load(CPU)
    data["defectbench"]["budgets"][0]["variants"] = "*"
    header = header_markdown(load_report([_dump(data, tmp_path / "cpu.json")]))
    assert "variants *" not in header


def test_a_latency_only_row_takes_no_quality_even_one_filed_under_its_name(tmp_path):
    # an untrained survey model is timed, never judged: a quality entry under its name (an
    # edited or merged file) must not give its row a recall or a place on a frontier
    data = _load(CPU)
    stray = copy.deepcopy(data["defectbench"]["quality"][0])
    stray["variant"] = SURVEY
    data["defectbench"]["quality"].append(stray)
    rows = summary_dict(load_report([_dump(data, tmp_path / "cpu.json")]))["rows"]
    (survey,) = [r for r in rows if r["variant"] == SURVEY]
    assert survey["recall"] is None and not survey["on_latency_frontier"]


@pytest.mark.parametrize("interval", [[0.8], [0.8, 0.9, 0.95], 0.8])
def test_an_interval_that_is_no_pair_is_refused(tmp_path, interval):
    from defectbench.errors import ReportError

    data = _load(CPU)
    for q in _qualities(data, INT8):
        q["recall_interval"] = interval
    with pytest.raises(ReportError, match=r"recall_interval must be \[low, high\], got "):
        load_report([_dump(data, tmp_path / "cpu.json")])
