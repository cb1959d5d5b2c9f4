"""The report's short written analysis: sentences computed from its rows, nothing hand-written.

Per device and machine: the reference's own recall and specificity; how many gated artifacts
pass; which fail, on which budgets, and whether their loss against the reference is shown
(exact McNemar) or within sampling error; which pass by flagging many more good cells than
the reference. Per panel (device, machine, batch): the fastest artifact that passes every
budget, its speedup measured in the same run; when it pays in specificity, the fastest that
does not; and the fastest gated one when the gates turned it down. Every number is a
row's; a reader can find each in the table below it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from defectbench.report.format import DASH, count, fixed, significant
from defectbench.report.load import BenchmarkRun, run_labels
from defectbench.report.rows import Report, ReportRow, model_key

# McNemar p-values are reported uncorrected: the sentence says so and how many were tested
SIGNIFICANCE = 0.05
# a passing artifact this far below the reference's specificity is named: recall budgets do
# not see a variant that keeps its recall by flagging more good cells for review
SPECIFICITY_GAP = 0.10


def _misses_and_catches(row: ReportRow) -> str:
    """"17 new misses and 4 new catches, "; nothing where the file did not record them (an
    unrecorded count is not a count of 0)."""
    if row.new_misses is None or row.new_catches is None:
        return ""
    return (f"{count(row.new_misses, 'new miss', 'new misses')} and "
            f"{count(row.new_catches, 'new catch', 'new catches')}, ")


def _failed_budgets(row: ReportRow) -> str:
    return ", ".join(row.failed_budgets) or "failed"


def _p(value: float) -> str:
    """Three figures, more where they would print as the significance level: 0.04996 must
    not read "p = 0.05" in a "p < 0.05" sentence."""
    digits = 3
    while (digits < 12 and value != SIGNIFICANCE
           and float(f"{value:.{digits}g}") == SIGNIFICANCE):
        digits += 1
    return f"{value:.{digits}g}"


def _name(row: ReportRow) -> str:
    return f"`{row.variant}` {row.precision}"


def _join(items: Sequence[str]) -> str:
    return "; ".join(items)


def _models(rows: Iterable[ReportRow]) -> list[ReportRow]:
    """One row per gated model (quality does not depend on the batch), sorted by name."""
    first: dict[tuple, ReportRow] = {}
    for row in rows:
        if row.passed is not None:
            first.setdefault(model_key(row), row)
    return sorted(first.values(), key=lambda r: (r.variant, r.precision, r.runtime or ""))


def _reference_row(report: Report, models: Sequence[ReportRow]) -> ReportRow | None:
    """The row every drop in ``models`` was measured against: their input file's reference
    (the FP32 teacher) on CPU at its own threshold (a CUDA group's is its file's CPU row, if
    that file ran one; the teacher's CUDA row applies the CPU threshold and is a variant like
    any). Files of two profiles may have different teachers: each group gets its own."""
    labels = run_labels(report.runs)
    references = {labels[run.path]: run.reference for run in report.runs}
    sources = {r.source for r in models}
    return next((r for r in report.rows if r.source in sources
                 and r.variant == references.get(r.source)
                 and r.precision == "fp32" and r.device == "cpu"
                 and r.has_quality and not r.threshold_from_other_case), None)


def _missing_reference(report: Report, device: str, machine: str,
                       models: Sequence[ReportRow]) -> str:
    """The opening sentence of a group whose file has no CPU FP32 row of its reference with
    quality: what the file holds of the reference instead (scored but not timed, timed but
    not scored at this operating point, scored only at others, or neither), so that a CPU
    run whose selection left the reference's benchmarks out does not read as a `--devices
    cuda` run."""
    labels = run_labels(report.runs)
    sources = {r.source for r in models}
    runs = [run for run in report.runs if labels[run.path] in sources]
    reference_of = {labels[run.path]: run.reference for run in runs}
    names = sorted({name for name in reference_of.values() if name is not None})
    if len(names) == 1:
        what_of = f"the reference `{names[0]}` fp32"
    else:  # no file names one (an edited file), or merged files of two teachers
        what_of = "the reference"

    scored_at = {str(_op_name(q)) for run in runs for q in run.quality
                 if q.get("variant") == run.reference and q.get("precision") == "fp32"
                 and q.get("device") == "cpu"}
    scored = report.operating_point in scored_at
    timed = any(r.source in sources and r.variant == reference_of[r.source]
                and r.precision == "fp32" and r.device == "cpu" for r in report.rows)
    ran_on_cpu = (any(r.source in sources and r.device == "cpu" for r in report.rows)
                  or any(q.get("device") == "cpu" for run in runs for q in run.quality))
    borrowed = any(r.source in sources and r.variant == reference_of[r.source]
                   and r.precision == "fp32" and r.device == "cpu" and r.has_quality
                   and r.threshold_from_other_case for r in report.rows)
    if borrowed:
        # scored, but at a threshold chosen for another case: not the teacher's own result
        what = (f"its file scored {what_of} on CPU at operating point "
                f"`{report.operating_point}` only at a threshold chosen for another case")
    elif timed:
        what = (f"its file timed {what_of} on CPU but holds no quality result for it at "
                f"operating point `{report.operating_point}`")
    elif scored:
        what = (f"its file scored {what_of} on CPU but did not time it (no row in the "
                "table; the header's notes name it)")
    elif scored_at:
        points = ", ".join(f"`{name}`" for name in sorted(scored_at))
        plural = "s" if len(scored_at) > 1 else ""
        what = (f"its file scored {what_of} on CPU only at operating point{plural} {points}, "
                f"not at `{report.operating_point}`, and did not time it")
    elif ran_on_cpu:
        what = f"its file has no result of {what_of} on CPU (the run's selection left it out)"
    else:
        what = "its file has no row of the reference (FP32 on CPU; a `--devices cuda` run has none)"
    return (f"{device} ({machine}): {what}, so the reference's recall and specificity are not "
            "stated here and no artifact's specificity is compared with it; the drops are as "
            "the run recorded them.")


def _op_name(quality: Mapping) -> object:
    operating_point = quality.get("operating_point")
    return (operating_point.get("name") if isinstance(operating_point, Mapping)
            else operating_point)


def _is_reference(row: ReportRow, reference: ReportRow | None) -> bool:
    return reference is not None and model_key(row) == model_key(reference)


def _far_below(specificity: float, reference_specificity: float) -> bool:
    """More than SPECIFICITY_GAP below the reference; the tolerance keeps an exact gap (45 of
    450 cells) from counting as more by its last bit of round-off, whatever the two values."""
    return specificity < reference_specificity - SPECIFICITY_GAP - 1e-9


def _quality_findings(report: Report, device: str, machine: str, models: Sequence[ReportRow],
                      reference: ReportRow | None) -> list[str]:
    out = []
    if reference is not None and reference.device == device:
        interval = (f" [{fixed(reference.recall_low)}, {fixed(reference.recall_high)}]"
                    if reference.recall_low is not None else "")
        specificity = (f", at specificity {fixed(reference.specificity)}"
                       if reference.specificity is not None else "")
        # a file without the count (edited, or older) still has its recall stated
        caught = (f"catches {round(reference.recall * reference.n_defective)} of "
                  f"{count(reference.n_defective, 'defective cell')}, recall"
                  if reference.n_defective else "has recall")
        out.append(f"{device} ({machine}): the reference {_name(reference)} {caught} "
                   f"{fixed(reference.recall)}{interval}{specificity}.")
    elif reference is None:
        out.append(_missing_reference(report, device, machine, models))
    passing = [r for r in models if r.passed]
    failing = [r for r in models if not r.passed]
    if len(models) == 1:
        # not "0 of 1 gated artifact pass" nor "(the reference among them)" of one
        (only,) = models
        who = (f"the reference {_name(only)}" if _is_reference(only, reference)
               else _name(only))
        summary = (f"{device} ({machine}): the one gated artifact, {who}, "
                   + ("passes every budget" if only.passed
                      else f"fails ({_failed_budgets(only)})"))
    else:
        verb = "passes" if len(passing) == 1 else "pass"
        summary = (f"{device} ({machine}): {len(passing)} of {len(models)} gated artifacts "
                   f"{verb} every budget")
        if any(_is_reference(r, reference) for r in passing):
            summary += (" (the reference among them)" if len(passing) > 1
                        else " (only the reference)")
        elif any(_is_reference(r, reference) for r in failing):
            summary += " (the reference itself fails its budgets)"
        if failing:
            summary += f"; {len(failing)} {'fails' if len(failing) == 1 else 'fail'}: " + _join(
                [f"{_name(r)} ({_failed_budgets(r)})" for r in failing])
    out.append(summary + ".")
    # every artifact compared: a loss shown on one that passes its budgets (a drop within
    # the budget, but real) is as much a finding as on one that fails
    losing = [r for r in models if r.recall_drop is not None and r.recall_drop > 0
              and r.mcnemar_p is not None and not _is_reference(r, reference)]
    shown = [r for r in losing if r.mcnemar_p < SIGNIFICANCE]
    open_ = [r for r in losing if r.mcnemar_p >= SIGNIFICANCE and not r.passed]
    # the reference against itself is no comparison
    tested = sum(r.mcnemar_p is not None and not _is_reference(r, reference) for r in models)
    if shown:
        out.append(
            f"A recall loss against the reference is shown (exact McNemar p < {SIGNIFICANCE:g}, "
            f"not corrected for the {count(tested, 'artifact')} compared) for "
            + _join([f"{_name(r)}: drop {fixed(r.recall_drop, signed=True)}, "
                     + _misses_and_catches(r)
                     + f"p = {_p(r.mcnemar_p)}"
                     + (" (within its budgets: it passes)" if r.passed else "")
                     for r in shown]) + ".")
    if open_:
        # not "no loss": these fail their budgets (an FNR ceiling says nothing of McNemar),
        # only the paired comparison cannot tell their recall from the reference's
        out.append(
            "Failing, with a recall loss against the reference that is not statistically "
            f"shown (exact McNemar p >= {SIGNIFICANCE:g}): "
            + _join([f"{_name(r)}: drop {fixed(r.recall_drop, signed=True)}, "
                     f"p = {_p(r.mcnemar_p)}" for r in open_]) + ".")
    if reference is not None and reference.specificity is not None:
        costly = [r for r in passing if r.specificity is not None
                  and _far_below(r.specificity, reference.specificity)]
        if costly:
            out.append(
                f"Passing at a specificity more than {SPECIFICITY_GAP:g} below the "
                f"reference's {fixed(reference.specificity)}, so flagging more good cells for "
                "review: " + _join([f"{_name(r)} {fixed(r.specificity)}"
                                    for r in sorted(costly, key=lambda r: r.specificity)]) + ".")
    return out


def _speed_line(row: ReportRow) -> str:
    speedup = (f", {row.speedup_vs_reference:.1f}x the reference's throughput in the same run"
               if row.speedup_vs_reference else "")
    return (f"{_name(row)} ({row.runtime or DASH}) at p50 "
            f"{significant(row.latency_p50_ms)} ms{speedup}; "
            f"recall {fixed(row.recall)} (drop {fixed(row.recall_drop, signed=True)}), "
            f"specificity {fixed(row.specificity)}")


def _timed_gated(rows: Iterable[ReportRow]) -> list[ReportRow]:
    return [r for r in rows if r.latency_p50_ms is not None and r.passed is not None]


def panel_label(rows: Sequence[ReportRow], device: str, machine: str, batch: int) -> str:
    """"cpu b32 (machine)", or "cpu b32 (machine; only 3 of the 43 gated artifacts timed at
    this batch)" where that batch timed fewer gated artifacts than its (device, machine) gated
    at any batch: its fastest is then the fastest of those, not of all. The header's fastest
    per panel is labelled by this too."""
    group = [r for r in rows if (r.device, r.machine) == (device, machine)]
    timed, gated = len(_timed_gated(r for r in group if r.batch == batch)), len(_models(group))
    partly = (f"; only {timed} of the {gated} gated artifacts timed at this batch"
              if 0 < timed < gated else "")
    return f"{device} b{batch} ({machine}{partly})"


def _speed_finding(rows: Sequence[ReportRow], device: str, machine: str, batch: int,
                   reference_specificity: float | None) -> str:
    """``rows``: the (device, machine) group's, at every batch."""
    timed = _timed_gated(r for r in rows if r.batch == batch)
    passing = [r for r in timed if r.passed]
    where = panel_label(rows, device, machine, batch)
    if not timed:
        return f"{where}: nothing gated was timed."
    fastest = min(timed, key=lambda r: r.latency_p50_ms)
    if not passing:
        return f"{where}: no timed artifact passes every budget."
    best = min(passing, key=lambda r: r.latency_p50_ms)
    text = f"{where}: the fastest artifact passing every budget is {_speed_line(best)}."
    if reference_specificity is not None and best.specificity is not None:
        if _far_below(best.specificity, reference_specificity):
            # the gates passed it, but a line paying for manual review may not: the fastest
            # that also keeps the reference's specificity within the gap
            keeping = [r for r in passing if r.specificity is not None
                       and not _far_below(r.specificity, reference_specificity)]
            if keeping:
                runner_up = min(keeping, key=lambda r: r.latency_p50_ms)
                text += (f" Within {SPECIFICITY_GAP:g} of the reference's specificity, the "
                         f"fastest is {_speed_line(runner_up)}.")
            else:
                text += (f" No passing artifact keeps specificity within {SPECIFICITY_GAP:g} of "
                         "the reference's.")
    if fastest is not best and fastest.latency_p50_ms < best.latency_p50_ms:
        text += (f" The fastest gated artifact, {_name(fastest)} at "
                 f"{significant(fastest.latency_p50_ms)} ms, fails "
                 f"({_failed_budgets(fastest)}).")
    return text


def _stopped_early(runs: Sequence[BenchmarkRun]) -> list[str]:
    """One sentence per run that `-x`, `--maxfail` or an exit cut short: its missing cases
    are not cases the run left out of its selection, and a fastest variant chosen among what
    did run may not be the fastest of the selection."""
    out = []
    labels = run_labels(runs)
    for run in runs:
        stopped = run.section.get("stopped_early")
        if not isinstance(stopped, Mapping):
            continue
        not_run, selected = stopped.get("not_run"), stopped.get("selected")
        counted = (f"{not_run} of its {count(selected, 'selected test')} never ran"
                   if isinstance(not_run, int) and isinstance(selected, int)
                   else "part of its selection never ran")
        reason = stopped.get("reason")
        out.append(f"The run in `{labels[run.path]}` stopped early"
                   + (f" (pytest: {reason})" if isinstance(reason, str) and reason else "")
                   + f"; {counted}, so this report covers only what did.")
    return out


def findings(report: Report) -> list[str]:
    """The written analysis, one sentence group per item, in a fixed order."""
    # first: every sentence below is about what ran, not about the whole selection
    out: list[str] = _stopped_early(report.runs)
    groups = sorted({(r.device, r.machine) for r in report.rows if r.passed is not None})
    for device, machine in groups:
        rows = [r for r in report.rows if (r.device, r.machine) == (device, machine)]
        models = _models(rows)
        reference = _reference_row(report, models)
        out += _quality_findings(report, device, machine, models, reference)
        specificity = reference.specificity if reference is not None else None
        for batch in sorted({r.batch for r in rows}):
            out.append(_speed_finding(rows, device, machine, batch, specificity))
    if not groups:
        out.append("Nothing in the inputs is gated at this operating point, so there is "
                   "nothing to conclude about recall." if report.operating_point is not None
                   else "Nothing in the inputs was scored for quality, so there is nothing to "
                   "conclude about recall.")
    latency_only = sorted({r.variant for r in report.rows if r.latency_only})
    if latency_only:
        out.append(f"Latency-only architectures (untrained weights), timed in the table with no "
                   f"quality and no claim here: {len(latency_only)}.")
    return out


def findings_markdown(report: Report) -> str:
    return "## Findings\n\n" + "\n".join(f"- {line}" for line in findings(report))
