"""`defectbench report`: reading and merging benchmark JSON, tables, CSV, Pareto plots, errors.

Inputs are tests/data/report/cpu.json (a CPU host: teacher and an INT8 variant at batch 1 and 8,
a pruned variant that fails its budgets, a latency-only survey model, quality at a gated and an
ungated operating point) and gpu.json (a GPU host on the same fixture).
"""

import argparse
import copy
import json
import math
import re
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from report_data import (
    CPU,
    DATA,
    GPU,
    H100,
    INT8,
    PRUNED,
    SURVEY,
    TEACHER,
    XEON,
    without_recall_drops,
)
from report_data import dump as _dump
from report_data import load as _load

from defectbench.errors import ReportError
from defectbench.report import load_report, pareto_front, read_run, write_report
from defectbench.report.cli import add_report_command, main
from defectbench.report.plots import (
    FAIL_COLOUR,
    budget_levels,
    latency_figure,
    point_labels,
    short_label,
    short_variant,
    size_figure,
    write_plots,
)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    report, paths = write_report([CPU, GPU], out)
    return report, paths, out


# --- Pareto frontier ------------------------------------------------------------------------


def test_pareto_front_hand_made_example():
    #           0     1     2     3     4     5     6     7
    latency = [10.0, 20.0, 15.0, 40.0, 5.0, 20.0, 30.0, math.nan]
    recall = [0.90, 0.95, 0.85, 0.95, 0.70, 0.95, 0.99, 1.00]
    # 2 is slower and worse than 0; 3 is slower than 1 at the same recall; 1 and 5 are
    # identical and neither dominates the other; a NaN latency is never on the frontier
    assert pareto_front(latency, recall) == [4, 0, 1, 5, 6]


def test_pareto_front_equal_cost_keeps_only_the_best_recall():
    assert pareto_front([1.0, 1.0, 1.0], [0.8, 0.9, 0.85]) == [1]
    assert pareto_front([], []) == []


def test_pareto_front_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="differ in length: 2 != 1"):
        pareto_front([1.0, 2.0], [0.5])


@given(st.lists(st.tuples(st.integers(1, 20), st.integers(0, 20)), max_size=25))
def test_pareto_front_is_exactly_the_non_dominated_set(points):
    costs = [float(c) for c, _ in points]
    scores = [s / 20 for _, s in points]
    front = pareto_front(costs, scores)

    def dominates(j, i):
        return (costs[j] <= costs[i] and scores[j] >= scores[i]
                and (costs[j], scores[j]) != (costs[i], scores[i]))

    for i in range(len(points)):
        assert (i in front) == (not any(dominates(j, i) for j in range(len(points))))
    assert [costs[i] for i in front] == sorted(costs[i] for i in front)


# --- end to end -----------------------------------------------------------------------------


def _table_rows(markdown: str) -> list[list[str]]:
    lines = [ln for ln in markdown.splitlines() if ln.startswith("| ") and "---" not in ln]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[1:]]


def test_all_outputs_are_written_and_non_empty(written):
    _, paths, out = written
    names = sorted(p.name for p in paths)
    assert names == sorted([
        "table.md", "table.csv", "summary.json", "pareto_latency.png", "pareto_latency.svg",
        "pareto_size.png", "pareto_size.svg",
    ])
    for name in names:
        assert (out / name).stat().st_size > 0, name
    for stem in ("pareto_latency", "pareto_size"):
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (out / f"{stem}.svg").read_text()


def test_header_says_which_rows_borrow_a_threshold_or_were_scored_on_another_graph(tmp_path):
    from defectbench.report.table import header_markdown

    data = _load(CPU)
    assert "thresholds:" not in header_markdown(load_report([CPU]))  # files without the fields
    # the quality section is what the report reads (extra_info's copy is a fallback)
    for quality in data["defectbench"]["quality"]:
        if quality["variant"] == PRUNED:  # as if it were a bf16 case
            quality["threshold_from_this_case"] = False
        if quality["variant"] == INT8:
            quality["differs_from_build"] = "calibrating again at load gave other parameters"
    text = header_markdown(load_report([_dump(data, tmp_path / "cpu.json")]))
    assert ("- thresholds: each variant's own, chosen on dev with the artifact as built on CPU; "
            "rows at fp32 on cpu apply it at another precision or device") in text
    assert ("- scored on another graph than the build's (judged at the build's threshold): "
            f"`{INT8}`") in text


def test_table_header_names_inputs_fixture_machines_and_budgets(written):
    text = (written[2] / "table.md").read_text()
    fixture = _load(CPU)["defectbench"]["fixture"]
    for needle in (
        str(CPU), str(GPU), fixture["split_sha256"], fixture["content_sha256"],
        "654 validation images (204 defective)", "profile: quick",
        f"{XEON} (cpu, devbox)", f"{H100} (cuda, gpuhost)", f"reference: `{TEACHER}`",
        "operating point: `dev_recall_0.90`", "p0.5; pick with --operating-point",
        "`recall-drop`: recall_drop max_drop 0.03, judged on the point estimate",
        "`fnr-ceiling`: fnr ceiling 0.2, judged on the 95% upper bound",
    ):
        assert needle in text, needle


def test_table_rows_carry_the_numbers_and_verdicts(written):
    rows = _table_rows((written[2] / "table.md").read_text())
    by_key = {(r[0], r[2], r[3]): r for r in rows}
    int8_b1 = by_key[("cpu", "1", INT8)]
    assert int8_b1[1] == XEON
    assert int8_b1[6:] == [
        "0.897 [0.848, 0.934]", "+0.015 (<= +0.039)", "0.103 (<= 0.139)", "0.900",
        # memory: the CPU process's session-wide high-water mark (812 MB) is not the artifact's
        "8.70 / 9.22", "115", "-", "3.40", "4.79x", "PASS",
    ]
    pruned = by_key[("cpu", "1", PRUNED)]
    assert pruned[6] == "0.838 [0.780, 0.885]"
    assert pruned[-1] == "FAIL: recall-drop, recall-drop-upper-bound, fnr-ceiling"
    survey = by_key[("cpu", "1", SURVEY)]
    assert survey[6:10] == ["latency only"] * 4 and survey[-1] == "latency only"
    assert survey[10] == "123 / 130"
    gpu = by_key[("cuda", "8", INT8)]
    assert gpu[1] == H100 and gpu[10] == "1.70 / 1.80"


def test_table_is_sorted_by_device_batch_then_latency(written):
    rows = _table_rows((written[2] / "table.md").read_text())
    order = [(r[0], r[2], r[3]) for r in rows]
    assert order == [
        ("cpu", "1", INT8), ("cpu", "1", PRUNED), ("cpu", "1", TEACHER), ("cpu", "1", SURVEY),
        ("cpu", "8", INT8), ("cpu", "8", TEACHER), ("cuda", "8", INT8), ("cuda", "8", TEACHER),
    ]


def test_csv_loads_with_the_right_columns_and_types(written):
    frame = pd.read_csv(written[2] / "table.csv")
    assert len(frame) == 8
    for column in ("variant", "precision", "device", "batch", "machine", "host", "recall",
                   "recall_low", "recall_high", "recall_drop", "recall_drop_upper", "fnr",
                   "fnr_upper", "latency_p50_ms", "latency_p90_ms", "throughput_ips",
                   "peak_memory_mb", "size_mb", "speedup_vs_reference", "verdict",
                   "failed_budgets", "on_latency_frontier", "on_size_frontier"):
        assert column in frame.columns, column
    assert frame["batch"].dtype.kind == "i" and frame["n_defective"].dropna().eq(204).all()
    pruned = frame[frame["variant"] == PRUNED].iloc[0]
    assert pruned["failed_budgets"] == "recall-drop;recall-drop-upper-bound;fnr-ceiling"
    assert not pruned["passed"]
    survey = frame[frame["variant"] == SURVEY].iloc[0]
    assert math.isnan(survey["recall"]) and survey["verdict"] == "latency only"
    gpu = frame[frame["device"] == "cuda"]
    assert set(gpu["machine"]) == {H100} and set(gpu["host"]) == {"gpuhost"}
    assert frame.loc[(frame["variant"] == INT8) & (frame["batch"] == 8)
                     & (frame["device"] == "cpu"), "latency_p50_ms"].item() == 52.3


def test_summary_json_has_rows_and_frontier_membership(written):
    summary = json.loads((written[2] / "summary.json").read_text())
    rows = summary["rows"]
    on_front = {(r["device"], r["batch"], r["variant"]) for r in rows if r["on_latency_frontier"]}
    # the pruned variant is slower and worse than INT8; the survey model has no recall
    assert on_front == {
        ("cpu", 1, INT8), ("cpu", 1, TEACHER), ("cpu", 8, INT8), ("cpu", 8, TEACHER),
        ("cuda", 8, INT8), ("cuda", 8, TEACHER),
    }
    assert summary["frontiers"]["latency"] == [r["id"] for r in rows if r["on_latency_frontier"]]
    pruned = next(r for r in rows if r["variant"] == PRUNED)
    assert pruned["on_size_frontier"] is False and pruned["failed_budgets"][0] == "recall-drop"
    assert summary["operating_point"] == "dev_recall_0.90"
    ref = {(r["device"], r["machine"]): r["recall"] for r in summary["reference_recall"]}
    assert ref == {("cpu", XEON): pytest.approx(0.912), ("cuda", H100): pytest.approx(0.912)}
    assert [b["name"] for b in summary["budgets"]] == [
        "recall-drop", "recall-drop-upper-bound", "fnr-ceiling"]


def test_frontier_of_a_hand_made_panel(tmp_path):
    # one CPU batch-1 panel: A fast but worse, B slow and best, C slower than A and worse
    data = _load(CPU)
    data["benchmarks"] = [b for b in data["benchmarks"] if b["extra_info"]["batch"] == 1]
    lat = {INT8: 10.0, TEACHER: 50.0, PRUNED: 12.0, SURVEY: 1.0}
    rec = {INT8: 0.85, TEACHER: 0.92, PRUNED: 0.80}
    for b in data["benchmarks"]:
        b["extra_info"]["latency_ms"]["p50"] = lat[b["extra_info"]["variant"]]
    for q in data["defectbench"]["quality"]:
        q["recall"] = rec[q["variant"]]
    report = load_report([_dump(data, tmp_path / "a.json")])
    front = [report.rows[i].variant for i in report.latency_frontier()]
    assert front == [INT8, TEACHER]
    # the survey model is the fastest but has no recall: never a frontier point
    assert SURVEY not in front


def test_budget_lines_follow_the_teacher_and_the_fnr_ceiling(written):
    report = written[0]
    levels = {label.split(":")[0]: y for y, label, _ in budget_levels(report, "cpu", XEON)}
    assert levels["fnr-ceiling"] == pytest.approx(0.80)
    assert levels["recall-drop"] == pytest.approx(0.912 - 0.03)
    assert levels["recall-drop-upper-bound"] == pytest.approx(0.912 - 0.08)


def test_budget_lines_fall_back_to_the_teachers_own_recall(tmp_path):
    data = without_recall_drops(_load(CPU))
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    assert report.reference_recall == {("cpu", XEON): 0.912}


# --- plots ---------------------------------------------------------------------------------


def _hand_made_panel(tmp_path, latency, recall):
    """The CPU batch-1 panel with the given p50 latencies and recalls per variant."""
    data = _load(CPU)
    data["benchmarks"] = [b for b in data["benchmarks"] if b["extra_info"]["batch"] == 1]
    for b in data["benchmarks"]:
        b["extra_info"]["latency_ms"]["p50"] = latency[b["extra_info"]["variant"]]
    for q in data["defectbench"]["quality"]:
        q["recall"] = recall[q["variant"]]
    return load_report([_dump(data, tmp_path / "panel.json")])


@pytest.mark.parametrize("variant, short", [
    ("tf_efficientnet_lite2.teacher.int8_ort", "lite2.teacher.int8_ort"),
    ("tf_efficientnet_lite0.kd", "lite0.kd"),
    ("vit_tiny_patch16_224.kd.int8_ort_dyn", "vit_tiny.kd.int8_ort_dyn"),
    ("tf_efficientnet_b0.base", "efficientnet_b0.base"),
    ("resnet18", "resnet18"),
], ids=["lite2", "lite0", "vit", "b0", "bare"])
def test_short_variant_drops_only_the_arch_boilerplate(variant, short):
    assert short_variant(variant) == short


def test_short_label_names_the_precision_unless_the_recipe_does(written):
    rows = {(r.variant, r.precision): r for r in written[0].rows}
    assert short_label(rows[(INT8, "int8")]) == "lite0.kd.int8_ort"
    assert short_label(rows[(TEACHER, "fp32")]) == "lite2.teacher fp32"
    assert short_label(rows[(PRUNED, "fp32")]) == "lite0.kd.pruned50 fp32"


def test_only_frontier_points_and_the_reference_get_labels(tmp_path):
    # INT8 is fastest and best: the whole frontier. PRUNED is dominated, the teacher too but it
    # is the FP32 reference; the survey model has no recall
    report = _hand_made_panel(tmp_path, {INT8: 10.0, PRUNED: 12.0, TEACHER: 50.0, SURVEY: 1.0},
                              {INT8: 0.92, PRUNED: 0.80, TEACHER: 0.85})
    assert [report.rows[i].variant for i in report.latency_frontier()] == [INT8]
    assert point_labels(latency_figure(report)) == [
        ["lite0.kd.int8_ort", "lite2.teacher fp32 (reference)"]]


def test_labels_match_the_frontiers_of_every_panel(written):
    report = written[0]

    def expected(frontier, key):
        on = {key(report.rows[i]) for i in frontier}
        by_panel: dict = {}
        for r in report.rows:
            if r.has_quality and (key(r) in on or (r.variant == TEACHER and r.precision == "fp32")):
                text = short_label(r) + (" (reference)" if r.variant == TEACHER else "")
                by_panel.setdefault(key(r)[0], set()).add(text)
        return [by_panel[p] for p in sorted(by_panel)]

    latency = [set(labels) for labels in point_labels(latency_figure(report))]
    assert latency == expected(report.latency_frontier(), lambda r: (r.panel, id(r)))
    size = [set(labels) for labels in point_labels(size_figure(report))]
    assert size == expected(report.size_frontier(), lambda r: (r.panel[:2], r.variant))
    # the failing pruned variant is on no frontier, so no label names it (labels use short
    # names: lite0.kd.pruned50 fp32)
    pruned = {short_label(r) for r in report.rows if r.variant == PRUNED}
    assert pruned and all("pruned50" in p for p in pruned)
    assert not any(p in text for panel in latency + size for text in panel for p in pruned)


@pytest.mark.parametrize("twin, label", [
    # a recipe that extends INT8's name is named by what it adds
    (INT8 + ".cal1", "lite0.kd.int8_ort\n(same point: .cal1)"),
    (PRUNED, "lite0.kd.int8_ort\nlite0.kd.pruned50 fp32"),
    # a longer name that is no recipe step on INT8's (no '.', '_' or space follows it)
    (INT8 + "2", "lite0.kd.int8_ort\nlite0.kd.int8_ort2"),
], ids=["same-stem", "unrelated", "prefix-no-stem"])
def test_variants_on_the_same_point_share_one_label(tmp_path, twin, label):
    data = _load(CPU)
    data["benchmarks"] = [b for b in data["benchmarks"] if b["extra_info"]["batch"] == 1]
    extra = [b["extra_info"] for b in data["benchmarks"]]
    for entry in extra + data["defectbench"]["quality"]:
        if entry["variant"] == PRUNED and twin != PRUNED:
            entry["variant"], entry["precision"] = twin, "int8"
    for entry in extra:  # a tie: same latency, same recall
        if entry["variant"] in (INT8, twin):
            entry["latency_ms"]["p50"] = 10.0
    for entry in data["defectbench"]["quality"]:
        if entry["variant"] in (INT8, twin):
            entry["recall"] = 0.92
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    assert point_labels(latency_figure(report)) == [[label, "lite2.teacher fp32 (reference)"]]


def test_failing_variant_is_a_red_cross(written):
    ax = latency_figure(written[0]).axes[0]  # cpu, batch 1
    pruned = next(r for r in written[0].rows if r.variant == PRUNED)
    crosses = [line for line in ax.lines if line.get_marker() == "x"]
    assert len(crosses) == 1 and crosses[0].get_color() == FAIL_COLOUR
    xs, ys = crosses[0].get_data()
    assert (list(xs), list(ys)) == ([pruned.latency_p50_ms], [pruned.recall])


def test_log_axis_tick_labels_do_not_overlap(tmp_path):
    # four decades, as a real run spans from ORT INT8 to eager BF16 on a slow path
    report = _hand_made_panel(tmp_path, {INT8: 0.2, PRUNED: 9.0, TEACHER: 2000.0, SURVEY: 1.0},
                              {INT8: 0.92, PRUNED: 0.80, TEACHER: 0.85})
    fig = latency_figure(report)
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    lo, hi = ax.get_xlim()
    ticks = [t.label1 for t in ax.xaxis.get_major_ticks()
             if lo <= t.get_loc() <= hi and t.label1.get_text()]
    assert len(ticks) >= 4
    boxes = sorted((t.get_window_extent(renderer) for t in ticks), key=lambda b: b.x0)
    assert all(a.x1 < b.x0 for a, b in pairwise(boxes))
    assert "ms" in ax.get_xlabel() and ax.get_xscale() == "log"


def test_figure_is_1200_px_wide_and_grows_with_the_panels(written):
    cpu_only = latency_figure(load_report([CPU]))  # two panels: one row
    both = latency_figure(written[0])  # three panels: two rows
    assert [len(point_labels(f)) for f in (cpu_only, both)] == [2, 3]
    for fig in (cpu_only, both):
        assert fig.get_figwidth() * fig.dpi == pytest.approx(1200)
    assert both.get_figheight() > 1.5 * cpu_only.get_figheight()


def test_plots_are_byte_identical_when_regenerated(written, tmp_path):
    report, _, out = written
    for path in write_plots(report, tmp_path):
        assert path.read_bytes() == (out / path.name).read_bytes(), path.name


# --- operating points -----------------------------------------------------------------------


def test_default_operating_point_is_the_first_gated_one(tmp_path):
    data = _load(CPU)
    # put the ungated p0.5 entries first: the report must still pick the gated point
    data["defectbench"]["quality"].sort(key=lambda q: q["operating_point"]["name"] != "p0.5")
    for b in data["benchmarks"]:
        b["extra_info"]["quality"] = None if b["extra_info"]["latency_only"] else next(
            q for q in data["defectbench"]["quality"]
            if q["variant"] == b["extra_info"]["variant"]
            and q["operating_point"]["name"] == "p0.5")
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    assert report.operating_points == ("p0.5", "dev_recall_0.90")
    assert report.operating_point == "dev_recall_0.90"
    int8 = next(r for r in report.rows if r.variant == INT8)
    assert int8.recall == 0.897 and int8.verdict == "PASS"


def test_declared_gated_operating_point_wins(tmp_path):
    data = _load(CPU)
    data["defectbench"]["gated_operating_point"] = "p0.5"
    assert load_report([_dump(data, tmp_path / "cpu.json")]).operating_point == "p0.5"
    # a declared point without any quality at it is ignored, not reported empty
    data["defectbench"]["gated_operating_point"] = "dev_recall_0.95"
    assert load_report([_dump(data, tmp_path / "cpu.json")]).operating_point == "dev_recall_0.90"


def test_operating_point_option_selects_other_thresholds(tmp_path):
    report, _ = write_report([CPU], tmp_path, operating_point="p0.5", plots=False)
    int8 = next(r for r in report.rows if r.variant == INT8)
    assert int8.recall == pytest.approx(0.847) and int8.threshold == 0.5
    assert int8.verdict == "not gated" and int8.passed is None
    assert "operating point: `p0.5`" in (tmp_path / "table.md").read_text()


def test_unknown_operating_point_lists_the_available_ones():
    with pytest.raises(ReportError, match=r"operating point 'dev_0\.95' is not in the inputs; "
                       r"they have 'dev_recall_0\.90', 'p0\.5'"):
        load_report([CPU], operating_point="dev_0.95")


def test_benchmark_without_quality_at_the_operating_point_is_flagged(tmp_path):
    data = _load(CPU)
    data["defectbench"]["quality"] = [q for q in data["defectbench"]["quality"]
                                      if q["variant"] != PRUNED]
    for b in data["benchmarks"]:
        if b["extra_info"]["variant"] == PRUNED:
            b["extra_info"]["quality"] = None
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    pruned = next(r for r in report.rows if r.variant == PRUNED)
    assert pruned.verdict == "no quality" and pruned.passed is None
    assert any("no quality at operating point 'dev_recall_0.90'" in n and PRUNED in n
               for n in report.notes)


def test_verdict_column_never_shows_an_unjudged_or_contradicted_pass(tmp_path):
    data = _load(CPU)
    for q in data["defectbench"]["quality"]:
        if q["operating_point"]["name"] != "dev_recall_0.90":
            continue
        if q["variant"] == INT8:
            q["verdicts"] = []  # no budget applied; the plugin still writes passed = all([])
        if q["variant"] == TEACHER:
            q["verdicts"][0]["passed"] = False  # but "passed" says True
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    verdicts = {r.variant: (r.verdict, r.passed) for r in report.rows}
    assert verdicts[INT8] == ("not gated", None)
    assert verdicts[TEACHER] == ("FAIL: recall-drop", False)


def test_quality_falls_back_to_extra_info(tmp_path):
    data = _load(CPU)
    data["defectbench"]["quality"] = []
    report = load_report([_dump(data, tmp_path / "cpu.json")])
    int8 = next(r for r in report.rows if r.variant == INT8)
    assert int8.recall == 0.897 and int8.recall_drop_upper == 0.0392


# --- merging and errors ---------------------------------------------------------------------


def test_rows_keep_their_machine_when_files_merge(written):
    report = written[0]
    hosts = {(r.device, r.host, r.machine, r.source) for r in report.rows}
    assert hosts == {("cpu", "devbox", XEON, "cpu.json"), ("cuda", "gpuhost", H100, "gpu.json")}


def test_two_runs_on_one_machine_get_their_own_panels_and_reference(tmp_path):
    # two profiles (different teachers) measured on the same CPU must not share a Pareto
    # front, a "fastest passing" line or the recall the drop lines are drawn from
    other = _load(CPU)
    qualities = other["defectbench"]["quality"] + [
        b["extra_info"]["quality"] for b in other["benchmarks"] if b["extra_info"].get("quality")]
    for quality in qualities:
        if quality.get("recall") is not None:
            quality["recall"] = round(quality["recall"] - 0.05, 4)
    other["datetime"] = "2026-11-23T09:00:00.000000+00:00"
    second = _dump(other, tmp_path / "second.json")
    report = load_report([CPU, second])
    machines = {r.machine for r in report.rows}
    assert machines == {f"{XEON} [cpu.json]", f"{XEON} [second.json]"}
    alone = load_report([CPU]).rows
    assert len({r.panel for r in report.rows}) == 2 * len({r.panel for r in alone})
    first_ref = report.reference_recall[("cpu", f"{XEON} [cpu.json]")]
    second_ref = report.reference_recall[("cpu", f"{XEON} [second.json]")]
    assert first_ref == pytest.approx(second_ref + 0.05)
    assert {r.machine for r in load_report([CPU, GPU]).rows} == {XEON, H100}  # no clash, no tag


def test_the_header_says_at_what_confidence_the_shown_intervals_are(tmp_path):
    def header(data):
        return write_report([_dump(data, tmp_path / "in.json")], tmp_path / "out",
                            plots=False)[0], (tmp_path / "out" / "table.md").read_text()

    report, text = header(_load(CPU))  # written before the field: computed at 95%
    assert "- intervals in the table: recall two-sided 95% (Clopper-Pearson), the " \
        "recall-drop and FNR upper bounds one-sided 95% (" in text
    data = _load(CPU)
    for q in data["defectbench"]["quality"] + [b["extra_info"].get("quality") or {}
                                               for b in data["benchmarks"]]:
        if q:
            q["interval_confidence"] = 0.99
    report, text = header(data)
    assert "recall two-sided 99% (Clopper-Pearson), the recall-drop and FNR upper bounds " \
        "one-sided 99%" in text
    assert {r.interval_confidence for r in report.rows if r.has_quality} == {0.99}
    # the plots' error bars are those intervals, and their axis says so (it said 95%)
    for figure in (latency_figure(report), size_figure(report)):
        labels = {ax.get_ylabel() for ax in figure.axes if ax.get_ylabel()}
        assert labels == {"defect recall (bars: two-sided 99% interval;\n"
                          "bound-judged budgets use their own bound, see the table)"}


def test_the_header_names_tangos_bound_only_where_the_stored_bounds_are_tangos(tmp_path):
    # runs before 2026-11-23 stored a conditional drop bound that understates Tango's, and no
    # field says which: re-rendered, their header called those bounds Tango's
    from defectbench.metrics.paired import drop_interval

    def intervals_line(data):
        write_report([_dump(data, tmp_path / "in.json")], tmp_path / "out", plots=False)
        text = (tmp_path / "out" / "table.md").read_text()
        return next(line for line in text.splitlines() if line.startswith("- intervals"))

    data = _load(CPU)
    entries = [q for q in data["defectbench"]["quality"] + [
        b["extra_info"].get("quality") or {} for b in data["benchmarks"]] if q]
    gated = [q for q in entries if q.get("new_misses") is not None]
    assert gated
    for q in gated:
        q["recall_drop_upper"] = drop_interval(q["new_misses"], q["new_catches"],
                                               q["n_defective"], 0.95, "upper")[1]
    assert "one-sided 95% (Tango's asymptotic score bound, Clopper-Pearson)" in \
        intervals_line(data)
    variant = gated[0]["variant"]
    for q in gated:
        if q["variant"] == variant:  # the quality entry and its benchmarks' copies
            q["recall_drop_upper"] = (q["new_misses"] + q["new_catches"]) / q["n_defective"]
    line = intervals_line(data)
    assert "Tango's asymptotic score bound" not in line
    rows = len({(b["extra_info"]["variant"], b["extra_info"]["batch"])
                for b in data["benchmarks"] if b["extra_info"]["variant"] == variant})
    assert f"(as the inputs stored them: for {rows} row{'s' if rows > 1 else ''} they are " \
        "not Tango's score bound recomputed from the row's counts" in line


def test_each_budget_line_has_a_colour_of_its_own(written):
    # two bound-judged budgets share a line style: the colour tells them apart
    report = written[0]
    figure = latency_figure(report)
    (legend,) = figure.legends  # one legend for the figure, below the panels
    colours = {text.get_text(): handle.get_color()
               for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True)
               if text.get_text().startswith(("recall-drop", "fnr-ceiling"))}
    assert len(colours) >= 3 and len(set(colours.values())) == len(colours), colours


def test_one_file_given_twice_is_refused(tmp_path, monkeypatch):
    # every row would be doubled, and identical points never knock each other off a front
    with pytest.raises(ReportError, match=r"cpu.json is given twice .*pass each .*JSON once"):
        load_report([CPU, CPU])
    monkeypatch.chdir(DATA)
    with pytest.raises(ReportError, match="given twice"):
        load_report(["cpu.json", CPU.resolve()])


def test_a_copy_of_one_run_is_refused(tmp_path):
    copy_of_cpu = _dump(_load(CPU), tmp_path / "copy.json")
    with pytest.raises(ReportError, match=r"copy.json and .*cpu.json hold the same run"):
        load_report([CPU, copy_of_cpu])


def test_runs_started_at_one_moment_on_two_hosts_are_not_copies(tmp_path):
    # cpu.json run at the same second on another machine: two runs, not one passed twice
    data = _load(CPU)
    data["machine_info"]["node"] = "second-box"
    report = load_report([CPU, _dump(data, tmp_path / "second.json")])
    assert len({row.machine for row in report.rows}) == 2


def test_runs_without_a_start_time_are_not_taken_for_copies(tmp_path):
    # with no datetime nothing says two files are one run: two reruns on one host must merge
    paths = []
    for k, scale in enumerate((1.0, 1.5)):
        data = _load(CPU)
        del data["datetime"]
        for b in data["benchmarks"]:
            b["extra_info"]["latency_ms"]["p50"] *= scale
        paths.append(_dump(data, tmp_path / f"rerun{k}.json"))
    report = load_report(paths)
    assert len(report.rows) == 2 * len(load_report([CPU]).rows)


def test_a_third_file_on_another_fixture_is_refused_too(tmp_path):
    # not only the second file is compared with the first: any later one is
    data = _load(GPU)
    data["datetime"] = "2026-11-23T09:00:00+00:00"
    data["defectbench"]["fixture"]["split_sha256"] = "f" * 64
    third = _dump(data, tmp_path / "third.json")
    with pytest.raises(ReportError, match=rf"fixture mismatch: .* but {re.escape(str(third))} "):
        load_report([CPU, GPU, third])


def test_two_runs_in_files_of_one_name_stay_apart(tmp_path):
    # `--benchmark-json out.json` in two run folders: the file name alone does not tell the
    # runs apart, so panels, fronts and models (the size plot's points) would merge
    paths = []
    for k, stamp in enumerate(("2026-11-23T09:00:00+00:00", "2026-11-24T09:00:00+00:00")):
        data = _load(CPU)
        data["datetime"] = stamp
        (tmp_path / f"run{k}").mkdir()
        paths.append(_dump(data, tmp_path / f"run{k}" / "out.json"))
    report = load_report(paths)
    assert {r.machine for r in report.rows} == {f"{XEON} [run0/out.json]",
                                                f"{XEON} [run1/out.json]"}
    assert {r.source for r in report.rows} == {"run0/out.json", "run1/out.json"}
    alone = load_report([CPU])
    assert len(report.latency_frontier()) == 2 * len(alone.latency_frontier())
    assert len(report.size_frontier()) == 2 * len(alone.size_frontier())


def test_a_panel_without_its_own_reference_gets_no_reference_line(tmp_path):
    # drop the GPU file's drops and its teacher: its panel must not borrow the CPU's teacher
    data = _load(GPU)
    data["benchmarks"] = [b for b in data["benchmarks"] if b["extra_info"]["variant"] != TEACHER]
    for bench in data["benchmarks"]:
        quality = bench["extra_info"].get("quality") or {}
        for key in ("recall_drop", "recall_drop_interval"):
            quality.pop(key, None)
    data["defectbench"]["quality"] = [
        {k: v for k, v in q.items() if k not in ("recall_drop", "recall_drop_interval")}
        for q in data["defectbench"]["quality"] if q.get("variant") != TEACHER]
    gpu = _dump(data, tmp_path / "gpu.json")
    report = load_report([CPU, gpu])
    assert ("cpu", XEON) in report.reference_recall
    assert not any(device == "cuda" for device, _ in report.reference_recall)


@pytest.mark.parametrize("field, value, match", [
    ("memory", [1], r"memory must be an object, got \[1\]"),
    ("batch", 1.7, r"batch must be a whole number, got 1.7"),
])
def test_malformed_fields_are_refused_by_name(tmp_path, field, value, match):
    data = _load(CPU)
    data["benchmarks"][0]["extra_info"][field] = value
    with pytest.raises(ReportError, match=match):
        load_report([_dump(data, tmp_path / "bad.json")])


@pytest.mark.parametrize("key, value, match", [
    ("budgets", ["recall-drop"], r"'defectbench.budgets\[0\]' must be an object, got "
                                 r"'recall-drop'"),
    ("quality", [5], r"'defectbench.quality\[0\]' must be an object, got 5"),
    ("quality", [{"variant": "v", "verdicts": 5}],
     r"'defectbench.quality\[0\].verdicts' must be a list, got 5"),
])
def test_malformed_quality_and_budget_entries_are_refused_by_name(tmp_path, key, value, match):
    data = _load(CPU)
    data["defectbench"][key] = value
    with pytest.raises(ReportError, match=match):
        read_run(_dump(data, tmp_path / "bad.json"))


def test_an_unreadable_input_or_an_out_path_that_is_a_file_is_a_report_error(
    tmp_path, monkeypatch
):
    with pytest.raises(ReportError, match=r"a folder, not a file"):
        read_run(tmp_path)  # a directory

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    with monkeypatch.context() as patch:  # root reads every file, so the refusal is staged
        patch.setattr(Path, "read_text", denied)
        with pytest.raises(ReportError, match=r"cannot be read .*Permission denied"):
            read_run(CPU)
    taken = tmp_path / "afile"
    taken.write_text("")
    with pytest.raises(ReportError, match=r"--out .*afile is a file, not a directory"):
        write_report([CPU], taken, plots=False)
    assert taken.read_text() == ""


def test_an_out_folder_that_cannot_be_written_is_a_report_error(tmp_path):
    parent_is_a_file = tmp_path / "afile" / "report"
    (tmp_path / "afile").write_text("")
    with pytest.raises(ReportError, match=r"cannot write .*afile/report: Not a directory; .*--out"):
        write_report([CPU], parent_is_a_file, plots=False)


def test_no_plots_renders_no_plot_and_returns_only_what_it_wrote(tmp_path, monkeypatch):
    def broken(report):
        raise AssertionError("--no-plots rendered a plot")

    monkeypatch.setattr("defectbench.report.plots.plot_files", broken)
    _, written = write_report([CPU], tmp_path / "out", plots=False)
    assert sorted(p.name for p in written) == ["summary.json", "table.csv", "table.md"]
    assert all(p.is_file() for p in written)


def test_a_failed_plot_leaves_the_previous_report_whole(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_report([CPU], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(report):
        raise RuntimeError("matplotlib failed")

    monkeypatch.setattr("defectbench.report.plots.plot_files", broken)
    with pytest.raises(RuntimeError, match="matplotlib failed"):
        write_report([CPU, GPU], out)  # another report: new tables would not match old plots
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("value, text", [
    (1.183, "1.18"), (1.206, "1.21"), (0.0423, "0.0423"), (12.34, "12.3"), (845.3, "845"),
    (1197.4, "1,197"), (None, "-"), (6.0, "6.00"), (3.0, "3.00"), (13.0, "13.0"), (99.96, "100"),
])
def test_speeds_and_sizes_print_three_significant_figures(value, text):
    from defectbench.report.format import significant

    assert significant(value) == text


def test_not_json_is_refused(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("---------- benchmark: 3 tests ----------\n")
    with pytest.raises(ReportError, match=r"out\.json: not JSON .*not the terminal output"):
        read_run(path)


@pytest.mark.parametrize("content, why", [
    ([1, 2], "top level is an array, not an object"),
    (3, "top level is a number, not an object"),
    (None, "top level is null, not an object"),
    ({"machine_info": {}}, "no 'benchmarks' list"),
    ({"benchmarks": []}, "no 'machine_info' object"),
], ids=["list", "number", "null", "no-benchmarks", "no-machine-info"])
def test_json_that_is_not_pytest_benchmark_output_is_refused(tmp_path, content, why):
    path = _dump(content, tmp_path / "x.json")
    with pytest.raises(ReportError, match=rf"x\.json: not pytest-benchmark output \({why}\)"):
        read_run(path)


def test_plain_pytest_benchmark_output_is_not_defectbench_output(tmp_path):
    (tmp_path / "test_plain.py").write_text(
        "def test_sum(benchmark):\n    benchmark.pedantic(sum, args=([1, 2],), rounds=2)\n")
    out = tmp_path / "plain.json"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    str(tmp_path / "test_plain.py"), f"--benchmark-json={out}"],
                   cwd=tmp_path, check=True, capture_output=True)
    with pytest.raises(ReportError, match=re.escape(
            "not defectbench output (no 'defectbench' key); produce it with "
            "`pytest benchmarks --benchmark-json out.json`")):
        read_run(out)


def test_missing_file_is_named():
    with pytest.raises(ReportError, match=r"nope\.json: no such file"):
        read_run(DATA / "nope.json")


def test_a_folder_a_summary_or_a_zoo_listing_is_refused_with_the_right_fix(tmp_path):
    with pytest.raises(ReportError, match=r"a folder, not a file; pass the JSON inside it that "
                                          r"`pytest benchmarks --benchmark-json FILE` wrote, "):
        read_run(tmp_path)
    out = tmp_path / "report"
    write_report([CPU], out, plots=False)
    # it named "such as quick-cpu.json" of a report folder, which holds no run
    with pytest.raises(ReportError, match=r"report: a report's output folder .*not a benchmark "
                                          r"run; pass the JSON .*its table.md names it"):
        read_run(out)
    _dump(_load(CPU), tmp_path / "cpu.json")
    with pytest.raises(ReportError, match=r"pass the JSON inside it .* wrote \(cpu.json there\)"):
        read_run(tmp_path)
    with pytest.raises(ReportError, match=r"a report's own summary.json, not a benchmark run"):
        read_run(out / "summary.json")
    listing = [{"name": TEACHER, "built": True, "stale": False}]
    with pytest.raises(ReportError, match=r"a `defectbench zoo list --json` listing"):
        read_run(_dump(listing, tmp_path / "zoo.json"))


def test_no_plots_removes_an_earlier_reports_plots(tmp_path):
    out = tmp_path / "report"
    write_report([CPU], out)
    assert (out / "pareto_latency.png").exists()
    write_report([GPU], out, plots=False)  # tables of another run: its plots must not stay
    assert sorted(p.name for p in out.iterdir()) == ["summary.json", "table.csv", "table.md"]


def _survey_only(tmp_path) -> Path:
    from defectbench.suite import survey_section

    data = _load(CPU)
    data["benchmarks"] = [b for b in data["benchmarks"] if b["extra_info"].get("latency_only")]
    data["defectbench"] = survey_section()
    assert data["benchmarks"]
    return _dump(data, tmp_path / "survey.json")


def test_a_survey_only_run_is_reported_as_latency_only(tmp_path):
    # `pytest benchmarks -m slow` alone writes no fixture: the report must still be made
    report, paths = write_report([_survey_only(tmp_path)], tmp_path / "out")
    header = (tmp_path / "out" / "table.md").read_text()
    assert "- fixture: none (latency-only inputs" in header
    assert report.rows and all(row.verdict == "latency only" for row in report.rows)


def test_a_survey_only_run_merges_with_a_gated_run(tmp_path):
    report = load_report([CPU, _survey_only(tmp_path)])
    assert report.fixture == read_run(CPU).fixture
    # the survey has no profile: no "different profiles (None, quick)" note
    assert report.profiles == [read_run(CPU).profile]
    assert not any("different profiles" in n for n in report.notes)


def test_unknown_schema_is_refused(tmp_path):
    data = _load(CPU)
    data["defectbench"]["schema"] = 2
    with pytest.raises(ReportError, match="defectbench schema 2 is not supported; this version "
                       "reads schema 1. Upgrade defectbench to read it"):
        read_run(_dump(data, tmp_path / "new.json"))
    data["defectbench"]["schema"] = 0
    with pytest.raises(ReportError, match=r"schema 0 is not supported.*Re-run the benchmarks"):
        read_run(_dump(data, tmp_path / "old.json"))


@pytest.mark.parametrize("key", ["split_sha256", "content_sha256"])
def test_files_on_different_fixtures_do_not_merge(tmp_path, key):
    data = _load(GPU)
    theirs = "f" * 64
    ours = data["defectbench"]["fixture"][key]
    data["defectbench"]["fixture"][key] = theirs
    other = _dump(data, tmp_path / "other.json")
    with pytest.raises(ReportError, match=rf"fixture mismatch: {re.escape(str(CPU))} has {key} "
                       rf"{ours} but {re.escape(str(other))} has {key} {theirs}"):
        load_report([CPU, other])


def test_benchmark_without_variant_is_refused(tmp_path):
    data = _load(CPU)
    del data["benchmarks"][0]["extra_info"]["variant"]
    with pytest.raises(ReportError, match=r"benchmark .*test_latency.* has no 'variant'"):
        load_report([_dump(data, tmp_path / "cpu.json")])


def test_non_numeric_value_is_named(tmp_path):
    data = _load(CPU)
    data["benchmarks"][0]["extra_info"]["latency_ms"]["p50"] = "fast"
    with pytest.raises(ReportError, match=r"latency_ms\.p50 must be a number, got 'fast'"):
        load_report([_dump(data, tmp_path / "cpu.json")])


def test_quality_only_run_has_nothing_to_tabulate(tmp_path):
    data = _load(CPU)
    data["benchmarks"] = []
    with pytest.raises(ReportError, match="no defectbench benchmarks in .*cpu.json"):
        load_report([_dump(data, tmp_path / "cpu.json")])


def test_different_profiles_merge_with_a_note(tmp_path):
    data = copy.deepcopy(_load(GPU))
    data["defectbench"]["profile"] = "full"
    report = load_report([CPU, _dump(data, tmp_path / "full.json")])
    assert report.profiles == ["full", "quick"]
    assert any("different profiles (full, quick)" in n for n in report.notes)


# --- command line ---------------------------------------------------------------------------


def test_report_subcommand_parses_and_writes(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="defectbench")
    add_report_command(parser.add_subparsers(dest="command"))
    defaults = parser.parse_args(["report", str(CPU)])
    assert defaults.out == Path("report") and defaults.operating_point is None

    args = parser.parse_args(["report", str(CPU), str(GPU), "--out", str(tmp_path),
                              "--operating-point", "dev_recall_0.90", "--no-plots"])
    assert args.func(args) == 0
    assert "8 rows at operating point 'dev_recall_0.90' (1 failing a budget)" in \
        capsys.readouterr().out
    assert (tmp_path / "table.md").is_file() and not (tmp_path / "pareto_latency.png").exists()


def test_main_reports_errors_without_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main([str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "defectbench: error:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_defectbench_without_a_command_is_a_usage_error_not_a_traceback(capsys):
    from defectbench.cli import main as defectbench

    with pytest.raises(SystemExit) as exit_:
        defectbench([])
    assert exit_.value.code == 2
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err


def test_fastest_passing_variant_per_panel(written):
    report, _, out = written
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["rows"]
    chosen = [rows[i] for i in summary["fastest_passing"]]
    panels = {(r["device"], r["machine"], r["batch"]) for r in rows if r["passed"]}
    assert {(r["device"], r["machine"], r["batch"]) for r in chosen} == panels
    for pick in chosen:
        rivals = [r for r in rows if r["passed"] and (r["device"], r["machine"], r["batch"])
                  == (pick["device"], pick["machine"], pick["batch"])]
        assert pick["latency_p50_ms"] == min(r["latency_p50_ms"] for r in rivals)
    # the failing pruned variant and the latency-only survey model are never the answer
    assert not {r["variant"] for r in chosen} & {PRUNED, SURVEY}
    header = (out / "table.md").read_text().split("\n|")[0]
    assert "- fastest variant passing every budget:" in header
    cpu_b1 = next(r for r in chosen if (r["device"], r["batch"]) == ("cpu", 1))
    assert f"  - cpu b1 ({XEON}): `{cpu_b1['variant']}` {cpu_b1['precision']}, p50 " in header
    # each panel once: one with an answer gets no "none passes" line under it as well
    block = header.split("- fastest variant passing every budget:")[1].split("\n- ")[0]
    labels = [line.split(": ")[0] for line in block.splitlines() if line.startswith("  - ")]
    assert len(labels) == len(set(labels)) >= len(chosen), block


def test_no_passing_variant_is_said_plainly(tmp_path):
    data = _load(CPU)
    for q in data["defectbench"]["quality"]:
        q["passed"] = False
    report = load_report([_dump(data, tmp_path / "a.json")])
    assert report.fastest_passing() == []
    from defectbench.report.table import header_markdown

    assert "- fastest variant passing every budget: none passes" in header_markdown(report)


def test_each_panel_draws_the_budgets_its_own_file_was_judged_at(tmp_path):
    gpu = _load(GPU)
    for budget in gpu["defectbench"]["budgets"]:
        if budget["name"] == "fnr-ceiling":
            budget["value"] = 0.15
    report = load_report([CPU, _dump(gpu, tmp_path / "gpu.json")])
    cuda = next(r for r in report.rows if r.device == "cuda" and r.has_quality)
    cpu = next(r for r in report.rows if r.device == "cpu" and r.has_quality)

    def fnr_line(row):
        levels = budget_levels(report, row.device, row.machine, row.source)
        return next(y for y, label, _ in levels if label.startswith("fnr-ceiling"))

    assert fnr_line(cpu) == pytest.approx(0.80) and fnr_line(cuda) == pytest.approx(0.85)
    assert any("each panel's budget lines are its own file's" in n for n in report.notes)


def test_a_panel_without_an_answer_is_said_and_an_ungated_point_lists_no_budgets(tmp_path):
    from defectbench.report.table import header_markdown

    gpu = _load(GPU)
    for q in gpu["defectbench"]["quality"]:
        q["passed"] = False  # every CUDA case fails: its panels must not vanish from the list
    report = load_report([CPU, _dump(gpu, tmp_path / "gpu.json")])
    text = header_markdown(report)
    cuda_panels = sorted({r.panel for r in report.rows if r.device == "cuda" and r.has_quality})
    assert cuda_panels
    for device, machine, batch in cuda_panels:
        assert f"  - {device} b{batch} ({machine}): none passes" in text
    # at the fixed 0.5 point nothing was judged: no budget is listed as applying, none drawn
    fixed = load_report([CPU], "p0.5")
    assert fixed.budgets_at_operating_point() == []
    text = header_markdown(fixed)
    assert "- budgets: none judged at this operating point" in text
    assert "- fastest variant passing every budget: not gated at this operating point" in text
    assert latency_figure(fixed).legends[0].get_texts()  # drawn, without budget lines
    assert not any(t.get_text().startswith("fnr-ceiling")
                   for t in latency_figure(fixed).legends[0].get_texts())


@pytest.mark.parametrize("latency_only", [False, True])
def test_a_header_of_runs_that_scored_nothing_names_no_operating_point(tmp_path, latency_only):
    # was "budgets: none judged at this operating point", "not gated at this operating point"
    # and a note "no quality at operating point None for: ...", of a run that has no point
    from defectbench.report.table import header_markdown

    data = _load(CPU)
    data["defectbench"]["quality"] = []
    for bench in data["benchmarks"]:
        bench["extra_info"].pop("quality", None)
    if latency_only:  # the architecture survey alone
        data["benchmarks"] = [b for b in data["benchmarks"]
                              if b["extra_info"]["variant"] == SURVEY]
        data["defectbench"].update(fixture=None, latency_only=True, budgets=[])
    report = load_report([_dump(data, tmp_path / "run.json")])
    assert report.operating_point is None
    text = header_markdown(report)
    assert "operating point" not in text
    assert ("- fastest variant passing every budget: none (nothing in the inputs was scored "
            "for quality)") in text
    assert ("- budgets: none recorded" if latency_only else
            "- budgets: none judged (nothing in the inputs was scored for quality)") in text
    if not latency_only:
        assert (f"- note: no quality recorded in the inputs for: {INT8} int8 cpu, {PRUNED} fp32 "
                f"cpu, {TEACHER} fp32 cpu") in text


def test_memory_column_shows_only_memory_that_belongs_to_the_artifact(tmp_path):
    data = _load(CPU)
    chosen = next(b for b in data["benchmarks"]
                  if b["extra_info"]["variant"] == INT8 and b["extra_info"]["batch"] == 8)
    chosen["extra_info"]["memory"]["isolated"] = {
        "kind": "cpu_rss_isolated", "batch": 8, "load_mb": 45.2, "peak_delta_mb": 88.4}
    report, _ = write_report([_dump(data, tmp_path / "a.json"), GPU], tmp_path / "out",
                             plots=False)
    lines = (tmp_path / "out" / "table.md").read_text().splitlines()
    memory_note = "- memory MiB (2^20 bytes, as every `_mb` field): on CUDA"
    assert any(line.startswith(memory_note) for line in lines)

    def cell(variant, device, batch):
        row = next(line for line in lines if line.startswith(f"| {device} ")
                   and f"| {batch} " in line and f"| {variant} " in line)
        return [c.strip() for c in row.strip("|").split("|")][12]

    assert cell(INT8, "cpu", 8) == "88.4"
    assert cell(INT8, "cpu", 1) == "-"  # the session-wide RSS high-water mark is not shown
    cuda = next(r for r in report.rows if r.device == "cuda" and r.variant == INT8)
    assert cell(INT8, "cuda", 8) == f"{cuda.peak_memory_mb:,.0f}"
    frame = pd.read_csv(tmp_path / "out" / "table.csv")
    row = frame[(frame["variant"] == INT8) & (frame["batch"] == 8) & (frame["device"] == "cpu")]
    assert row["isolated_memory_mb"].item() == 88.4 and row["isolated_load_mb"].item() == 45.2


def test_a_peak_that_could_not_be_reset_is_not_reported_as_the_cases(tmp_path):
    # the session's peak so far: it only grows from row to row
    data = _load(CPU)
    for b in data["benchmarks"]:
        b["extra_info"]["memory"] = {"kind": "cpu_rss_high_water_not_reset", "peak_mb": 900.0,
                                     "delta_mb": None}
    report = load_report([_dump(data, tmp_path / "a.json")])
    assert {r.peak_memory_mb for r in report.rows if r.device == "cpu"} == {None}


# --- findings: the written analysis ---------------------------------------------------------


def _findings(tmp_path, cpu: dict | None = None, *others: Path) -> list[str]:
    from defectbench.report.findings import findings

    path = CPU if cpu is None else _dump(cpu, tmp_path / "cpu.json")
    return findings(load_report([path, *others]))


def _quality(data: dict, variant: str) -> list[dict]:
    """The variant's quality entries, top level and in its benchmarks' extra_info."""
    entries = [q for q in data["defectbench"]["quality"] if q["variant"] == variant]
    entries += [b["extra_info"]["quality"] for b in data["benchmarks"]
                if b["extra_info"]["variant"] == variant and "quality" in b["extra_info"]]
    return entries


def test_findings_are_written_into_the_table_and_the_summary(written):
    report, _, out = written
    table = (out / "table.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    findings = table.split("## Findings\n\n")[1].split("\n\n## Table")[0]
    assert findings.splitlines() == [f"- {line}" for line in summary["findings"]]
    assert table.index("## Findings") < table.index("| device")


def test_findings_name_the_reference_the_failures_and_the_fastest_passing_artifact(written):
    report, _, out = written
    lines = json.loads((out / "summary.json").read_text())["findings"]
    teacher = next(r for r in report.rows if r.variant == TEACHER and r.device == "cpu")
    assert (f"cpu ({XEON}): the reference `{TEACHER}` fp32 catches 186 of 204 defective cells, "
            f"recall 0.912 [0.866, 0.946], at specificity 0.900.") in lines
    assert teacher.recall == 0.912 and round(0.912 * 204) == 186
    assert (f"cpu ({XEON}): 2 of 3 gated artifacts pass every budget (the reference among them)"
            f"; 1 fails: `{PRUNED}` fp32 (recall-drop, recall-drop-upper-bound, "
            "fnr-ceiling).") in lines
    # p = 0.29: a failure whose recall loss the paired test does not show
    (open_,) = [ln for ln in lines if ln.startswith("Failing, with a recall loss against the "
                                                     "reference that is not statistically shown")]
    assert f"`{PRUNED}` fp32: drop +0.074, p = 0.29" in open_
    assert not any("is shown" in ln for ln in lines)
    int8_b1 = next(r for r in report.rows if (r.variant, r.device, r.batch) == (INT8, "cpu", 1))
    assert (f"cpu b1 ({XEON}): the fastest artifact passing every budget is `{INT8}` int8 "
            f"(onnxruntime) at p50 8.70 ms, {int8_b1.speedup_vs_reference:.1f}x the reference's "
            "throughput in the same run; recall 0.897 (drop +0.015), specificity 0.900.") in lines
    assert f"cuda ({H100}): 2 of 2 gated artifacts pass every budget." in lines
    assert lines[-1].endswith("no quality and no claim here: 1.")


def test_findings_say_when_a_loss_is_statistically_shown(tmp_path):
    data = _load(CPU)
    for q in _quality(data, PRUNED):
        q["mcnemar_p"] = 0.0021
    lines = _findings(tmp_path, data)
    (shown,) = [ln for ln in lines if ln.startswith("A recall loss against the reference is shown")]
    assert "not corrected for the 2 artifacts compared" in shown  # not the reference itself
    assert f"`{PRUNED}` fp32: drop +0.074, 17 new misses and 2 new catches, p = 0.0021" in shown
    assert not any(ln.startswith("Failing, with a recall loss") for ln in lines)
    # three figures: a p just under 0.05 never prints as 0.05 in a "p < 0.05" sentence, and
    # one new miss reads as one
    for q in _quality(data, PRUNED):
        q["mcnemar_p"], q["new_misses"], q["new_catches"] = 0.0498, 1, 0
    (shown,) = [ln for ln in _findings(tmp_path, data) if "is shown" in ln]
    assert "1 new miss and 0 new catches, p = 0.0498" in shown


def test_findings_name_passing_artifacts_that_pay_in_specificity(tmp_path):
    data = _load(CPU)
    for q in _quality(data, INT8):
        q["specificity"] = 0.70  # the reference's is 0.900: 0.20 below
    lines = _findings(tmp_path, data)
    (costly,) = [ln for ln in lines if ln.startswith("Passing at a specificity")]
    assert costly == ("Passing at a specificity more than 0.1 below the reference's 0.900, so "
                      f"flagging more good cells for review: `{INT8}` int8 0.700.")
    b1 = next(ln for ln in lines if ln.startswith(f"cpu b1 ({XEON})"))
    # the fastest passing one pays; the fastest that keeps specificity is the teacher itself
    assert f"passing every budget is `{INT8}` int8" in b1
    assert f"Within 0.1 of the reference's specificity, the fastest is `{TEACHER}` fp32" in b1

    for q in _quality(data, TEACHER):
        q["passed"] = False  # nothing left that passes and keeps specificity
        for v in q.get("verdicts", []):
            v["passed"] = False
    b1 = next(ln for ln in _findings(tmp_path, data) if ln.startswith(f"cpu b1 ({XEON})"))
    assert b1.endswith("No passing artifact keeps specificity within 0.1 of the reference's.")


def test_findings_name_the_fastest_artifact_the_gates_turned_down(tmp_path):
    data = _load(CPU)
    for bench in data["benchmarks"]:
        if bench["extra_info"]["variant"] == PRUNED:
            bench["extra_info"]["latency_ms"]["p50"] = 1.5  # faster than the INT8 student
    b1 = next(ln for ln in _findings(tmp_path, data) if ln.startswith(f"cpu b1 ({XEON})"))
    assert b1.endswith(f"The fastest gated artifact, `{PRUNED}` fp32 at 1.50 ms, fails "
                       "(recall-drop, recall-drop-upper-bound, fnr-ceiling).")


def test_findings_take_each_files_own_reference(tmp_path):
    # two profiles with different teachers: each file's drops are against its own teacher
    other = _load(CPU)
    other["machine_info"]["cpu"]["brand_raw"] = "AMD EPYC 9654"
    other["machine_info"]["node"] = "otherbox"
    other["datetime"] = "2026-11-23T10:00:00+00:00"
    other["defectbench"]["reference"] = PRUNED  # an FP32 model standing in for a teacher
    lines = _findings(tmp_path, None, _dump(other, tmp_path / "other.json"))
    assert any(ln.startswith(f"cpu ({XEON}): the reference `{TEACHER}` fp32") for ln in lines)
    assert any(ln.startswith(f"cpu (AMD EPYC 9654): the reference `{PRUNED}` fp32")
               for ln in lines)
    assert not any(ln.startswith(f"cpu (AMD EPYC 9654): the reference `{TEACHER}`")
                   for ln in lines)


@pytest.mark.parametrize("failing, expected", [
    ((TEACHER, INT8), "0 of 3 gated artifacts pass every budget (the reference itself fails its "
                      "budgets); 3 fail:"),
    ((TEACHER,), "1 of 3 gated artifacts passes every budget (the reference itself fails its "
                 "budgets); 2 fail:"),
])
def test_findings_say_whether_the_reference_passes_and_count_in_the_singular(
    tmp_path, failing, expected
):
    data = _load(CPU)
    for q in [q for variant in failing for q in _quality(data, variant)]:
        q["passed"] = False
        for v in q.get("verdicts", []):
            v["passed"] = False
    summary = next(ln for ln in _findings(tmp_path, data) if "gated artifacts" in ln)
    assert summary.startswith(f"cpu ({XEON}): {expected}")


def test_findings_name_a_shown_loss_on_an_artifact_that_passes(tmp_path):
    # a drop within its budget can still be a real one: the passing, recommended artifact
    data = _load(CPU)
    for q in _quality(data, INT8):
        q["mcnemar_p"], q["new_misses"], q["new_catches"] = 0.031, 6, 0
    lines = _findings(tmp_path, data)
    (shown,) = [ln for ln in lines if ln.startswith("A recall loss against the reference is shown")]
    assert f"`{INT8}` int8: drop +0.015, 6 new misses and 0 new catches, p = 0.031 (within " \
        "its budgets: it passes)" in shown
    assert not any(ln.startswith("Failing, with") and INT8 in ln for ln in lines)


def test_findings_of_a_file_without_a_cpu_reference_row_say_so(tmp_path):
    lines = _findings(tmp_path, _load(GPU))
    assert lines[0] == (f"cuda ({H100}): its file has no row of the reference (FP32 on CPU; a "
                        "`--devices cuda` run has none), so the reference's recall and "
                        "specificity are not stated here and no artifact's specificity is "
                        "compared with it; the drops are as the run recorded them.")


def test_findings_open_with_a_run_that_stopped_early(tmp_path):
    # `-x` leaves a JSON of what ran: without the sentence, its fastest passing artifact reads
    # as the fastest of the whole selection
    data = _load(CPU)
    complete = _findings(tmp_path, data)
    assert not any("stopped early" in ln for ln in complete)
    data["defectbench"]["stopped_early"] = {
        "reason": "stopping after 1 failures", "selected": 40, "not_run": 31}
    lines = _findings(tmp_path, data)
    assert lines[0].startswith("The run in `")
    assert lines[0].endswith("` stopped early (pytest: stopping after 1 failures); 31 of its "
                             "40 selected tests never ran, so this report covers only what did.")
    assert lines[1:] == complete


@pytest.mark.parametrize(
    "stopped, error",
    [
        # was "True of its 40 selected tests never ran"
        ({"selected": 40, "not_run": True}, r"stopped_early.not_run' must be a whole number of "
         r"tests, at least 1, or absent, got a boolean \(True\)"),
        ({"selected": True, "not_run": 1}, r"stopped_early.selected' must be a whole number"),
        ({"selected": 40, "not_run": -3}, r"stopped_early.not_run' .* got a number \(-3\)"),
        ({"selected": 40.0, "not_run": 3}, r"stopped_early.selected' .* got a number \(40.0\)"),
        ({"selected": 4, "not_run": 9}, r"stopped_early' says 9 of 4 selected tests never ran, "
         r"more than were selected"),
        ({"reason": 5, "selected": 4, "not_run": 2}, r"stopped_early.reason' must be a string"),
    ],
    ids=["bool-not-run", "bool-selected", "negative", "float", "more-than-selected", "reason"],
)
def test_a_stopped_early_marker_with_counts_that_are_no_counts_is_refused(
        tmp_path, stopped, error):
    data = _load(CPU)
    data["defectbench"]["stopped_early"] = stopped
    with pytest.raises(ReportError, match=error):
        load_report([_dump(data, tmp_path / "run.json")])


def test_a_stopped_early_marker_without_counts_says_part_of_the_selection(tmp_path):
    data = _load(CPU)
    data["defectbench"]["stopped_early"] = {"reason": "interrupted"}
    (first, *_) = _findings(tmp_path, data)
    assert first.endswith("stopped early (pytest: interrupted); part of its selection never "
                          "ran, so this report covers only what did.")


def test_an_exact_specificity_gap_of_a_tenth_is_not_more_than_a_tenth(tmp_path):
    # 0.731 - 0.631 is 0.1 in cells (45 of 450) but 0.10000000000000009 in floats
    data = _load(CPU)
    for q in _quality(data, TEACHER):
        q["specificity"] = 329 / 450
    for q in _quality(data, INT8):
        q["specificity"] = 284 / 450
    assert 329 / 450 - 284 / 450 > 0.1  # the trap
    lines = _findings(tmp_path, data)
    assert not any(ln.startswith("Passing at a specificity") for ln in lines)
    assert not any("Within 0.1 of the reference's specificity" in ln for ln in lines)


def test_findings_with_nothing_passing_or_nothing_gated(tmp_path):
    data = _load(CPU)
    for q in data["defectbench"]["quality"]:
        q["passed"] = False
    lines = _findings(tmp_path, data)
    assert f"cpu b1 ({XEON}): no timed artifact passes every budget." in lines
    from defectbench.report.findings import findings

    ungated = findings(load_report([CPU], "p0.5"))
    assert ungated[0].startswith("Nothing in the inputs is gated at this operating point")


# --- numbers no run writes, and one run's entries twice ---------------------------------------


@pytest.mark.parametrize("field, value, match", [
    ("p50", float("-inf"), r"latency_ms.p50 is -inf, which no measurement gives"),
    # not caught by "positive": only the infinity check stops it
    ("p50", float("inf"), r"latency_ms.p50 is inf, which no measurement gives"),
    ("p50", 0.0, r"latency_ms.p50 is 0.0, which no measurement gives"),
    ("p50", -3.0, r"latency_ms.p50 is -3.0"),
    ("specificity", float("inf"), r"defectbench.quality\[\d+\]\.specificity is inf"),
    ("recall", 1.5, r"defectbench.quality\[\d+\]\.recall is 1.5, outside \[0, 1\]"),
    ("recall_drop", -1.2, r"defectbench.quality\[\d+\]\.recall_drop is -1.2, outside \[-1, 1\]"),
    ("mcnemar_p", -0.1, r"defectbench.quality\[\d+\]\.mcnemar_p is -0.1, outside \[0, 1\]"),
])
def test_numbers_no_measurement_gives_are_refused_not_ranked(tmp_path, field, value, match):
    # an infinite or zero latency headed the findings as the fastest passing artifact
    data = _load(CPU)
    bench = next(b for b in data["benchmarks"] if b["extra_info"]["variant"] == INT8)
    if field == "p50":
        bench["extra_info"]["latency_ms"]["p50"] = value
    else:
        for q in _quality(data, INT8):
            q[field] = value
    with pytest.raises(ReportError, match=match):
        load_report([_dump(data, tmp_path / "odd.json")])


def test_one_benchmark_twice_in_a_file_is_refused(tmp_path):
    data = _load(CPU)
    twin = json.loads(json.dumps(data["benchmarks"][0]))
    twin["name"] += "-copy"
    twin["extra_info"]["latency_ms"]["p50"] = 0.5  # would have been the fastest row
    data["benchmarks"].append(twin)
    with pytest.raises(ReportError, match=r"both time .* at batch \d+; one run times each once"):
        load_report([_dump(data, tmp_path / "twice.json")])


def test_a_second_different_quality_result_is_refused_not_shadowed(tmp_path):
    data = _load(CPU)
    first = next(q for q in data["defectbench"]["quality"] if q["variant"] == INT8)
    second = json.loads(json.dumps(first))
    second["passed"] = False  # a FAIL behind the PASS read first
    data["defectbench"]["quality"].append(second)
    with pytest.raises(ReportError, match=r"a second, different quality result for "
                       rf"{INT8} int8 on cpu"):
        load_report([_dump(data, tmp_path / "conflict.json")])
    data["defectbench"]["quality"][-1] = first  # the same entry twice says nothing new
    assert load_report([_dump(data, tmp_path / "same.json")]).rows


def test_latency_only_must_be_a_boolean(tmp_path):
    data = _load(CPU)
    data["benchmarks"][0]["extra_info"]["latency_only"] = "no"  # truthy: read as yes
    with pytest.raises(ReportError, match=r"latency_only must be true or false, got 'no'"):
        load_report([_dump(data, tmp_path / "odd.json")])


def test_a_write_that_fails_part_way_leaves_the_earlier_report_whole(tmp_path, monkeypatch):
    import errno

    import defectbench.io

    out = tmp_path / "out"
    write_report([CPU], out, plots=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_fsync, calls = defectbench.io.os.fsync, []

    def disk_full_at_the_third_file(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(defectbench.io.os, "fsync", disk_full_at_the_third_file)
    with pytest.raises(ReportError, match="No space left on device"):
        write_report([CPU, GPU], out, plots=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temporaries either


def test_no_plots_removes_only_the_plots_a_report_writes(tmp_path):
    from defectbench.report import PLOT_FILES
    from defectbench.report.plots import plot_files

    out = tmp_path / "out"
    report, _ = write_report([CPU], out)
    assert set(plot_files(report)) == set(PLOT_FILES)  # the names --no-plots removes
    (out / "pareto_my_notes.png").write_bytes(b"the user's")
    write_report([CPU], out, plots=False)
    assert sorted(p.name for p in out.iterdir()) == ["pareto_my_notes.png", "summary.json",
                                                    "table.csv", "table.md"]


def test_a_reader_that_leaves_early_ends_the_command_quietly(tmp_path, monkeypatch):
    # `defectbench report ... | head -1`: printing the file list raised BrokenPipeError
    from defectbench.cli import main

    sink = open(tmp_path / "sink", "w")  # noqa: SIM115 - stands in for the closed pipe's fd

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

        def fileno(self):
            return sink.fileno()

    monkeypatch.setattr("sys.stdout", ClosedPipe())
    try:
        assert main(["report", str(CPU), "--out", str(tmp_path / "r"), "--no-plots"]) == 141
    finally:
        sink.close()
    assert (tmp_path / "r" / "table.md").is_file()  # written before anything was printed


def test_a_file_gated_at_another_operating_point_is_named_not_silently_ungated(tmp_path):
    other = _load(CPU)
    other["machine_info"]["node"], other["datetime"] = "otherbox", "2026-11-23T10:00:00+00:00"
    other["machine_info"]["cpu"]["brand_raw"] = "AMD EPYC 9654"
    for q in other["defectbench"]["quality"] + [b["extra_info"].get("quality") or {}
                                                for b in other["benchmarks"]]:
        if isinstance(q.get("operating_point"), dict) and \
                q["operating_point"]["name"] == "dev_recall_0.90":
            q["operating_point"]["name"] = "dev_recall_0.95"
    other["defectbench"]["gated_operating_point"] = "dev_recall_0.95"
    second = _dump(other, tmp_path / "op95.json")
    report = load_report([CPU, second])
    # the first file's gated point, though only the second declares one
    assert report.operating_point == "dev_recall_0.90"
    assert any("op95.json has no quality at operating point 'dev_recall_0.90': its results "
               "are at 'dev_recall_0.95'" in note for note in report.notes)
    assert load_report([second, CPU]).operating_point == "dev_recall_0.95"


def test_a_variant_that_is_not_a_name_is_refused(tmp_path):
    data = _load(CPU)
    data["benchmarks"][0]["extra_info"]["variant"] = 5
    with pytest.raises(ReportError, match=r"extra_info.variant must be a name on one line, got 5"):
        load_report([_dump(data, tmp_path / "odd.json")])


def test_budgets_recorded_in_odd_shapes_are_refused_not_a_traceback(tmp_path):
    # a judged_on of 5 was printed as the budget the rows were judged at ("the 95% 5")
    data = _load(CPU)
    data["defectbench"]["budgets"][0]["judged_on"] = 5
    with pytest.raises(ReportError, match=r"'defectbench.budgets\[0\].judged_on' must be a "
                                          r"name on one line, got a number \(5\)"):
        load_report([_dump(data, tmp_path / "a.json")])
    data["defectbench"]["budgets"] = ["recall-drop"]
    with pytest.raises(ReportError, match=r"'defectbench.budgets\[0\]' must be an object"):
        load_report([_dump(data, tmp_path / "b.json")])


def test_header_names_a_reference_fine_tuned_from_a_local_weights_file(tmp_path):
    # `--teacher-weights` makes another teacher under the profile's name pattern: a reader of
    # the report must be told which checkpoint the drops were measured against
    from defectbench.report.table import header_markdown

    assert "reference weights" not in header_markdown(load_report([CPU]))
    data = _load(CPU)
    data["defectbench"]["profile_settings"] = {"teacher_weights": "/ckpt/convnext_base.pth"}
    path = _dump(data, tmp_path / "cpu.json")
    text = header_markdown(load_report([path]))
    assert ("- reference weights: fine-tuned from a local file, not the profile's packaged "
            f"ImageNet weights: `/ckpt/convnext_base.pth` (in `{path}`)") in text
    data["defectbench"]["profile_settings"] = {"teacher_weights": None}
    assert "reference weights" not in header_markdown(
        load_report([_dump(data, tmp_path / "cpu.json")]))
    data["defectbench"]["profile_settings"] = {"teacher_weights": 5}
    with pytest.raises(ReportError, match=r"'defectbench.profile_settings.teacher_weights' must "
                       r"be a string or absent, got a number \(5\)"):
        load_report([_dump(data, tmp_path / "cpu.json")])
