"""Merging benchmark runs into report rows: one per (machine, variant, precision, device, batch).

Each pytest-benchmark entry gives the speed columns; its quality (recall, drop, FNR, verdicts)
comes from the run's ``defectbench.quality`` entry at the chosen operating point, falling back to
the entry's own ``extra_info["quality"]``. Quality does not depend on the batch size, so every
batch of a variant shows the same recall.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from defectbench.errors import ReportError
from defectbench.report.load import BenchmarkRun, read_runs, run_labels
from defectbench.report.pareto import pareto_front

# runs written before quality results recorded `interval_confidence` computed every interval
# they show at 95%
UNRECORDED_CONFIDENCE = 0.95

# verdict column values besides "PASS" / "FAIL"
LATENCY_ONLY = "latency only"
NO_QUALITY = "no quality"
NOT_GATED = "not gated"


INT_FIELDS = ("batch", "threads", "n_defective", "n", "new_misses", "new_catches", "rounds",
              "params", "macs")


@dataclass(frozen=True)
class ReportRow:
    """One benchmark with its quality at the report's operating point. None = not measured."""

    source: str
    host: str
    machine: str
    benchmark: str
    variant: str
    precision: str
    device: str
    batch: int
    runtime: str | None
    threads: int | None
    latency_only: bool
    operating_point: str | None
    threshold: float | None
    recall: float | None
    recall_low: float | None
    recall_high: float | None
    recall_drop: float | None
    recall_drop_low: float | None
    recall_drop_high: float | None
    recall_drop_upper: float | None
    fnr: float | None
    fnr_upper: float | None
    interval_confidence: float | None  # of recall_low/high and the two upper bounds
    precision_score: float | None
    specificity: float | None
    accuracy: float | None
    f1: float | None
    n_defective: int | None
    n: int | None
    new_misses: int | None
    new_catches: int | None
    mcnemar_p: float | None
    passed: bool | None
    failed_budgets: tuple[str, ...]
    verdict: str
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    latency_p99_ms: float | None
    latency_mean_ms: float | None
    rounds: int | None
    throughput_ips: float | None
    peak_memory_mb: float | None
    memory_kind: str | None
    # RAM the artifact alone adds at load + first call (forked child, --memory-isolated)
    isolated_memory_mb: float | None
    isolated_load_mb: float | None
    size_mb: float | None
    params: int | None
    macs: int | None
    gflops_per_s: float | None
    speedup_vs_reference: float | None
    cost_core_hours_per_million: float | None  # CPU cases
    cost_gpu_hours_per_million: float | None = None  # CUDA cases (files from before: none)
    # the threshold was chosen on dev for another precision/device of the variant (its build's)
    threshold_from_other_case: bool = False
    # why the scored artifact computes another function than its build did (PT2E recalibrated
    # into other parameters), or None
    differs_from_build: str | None = None

    @property
    def has_quality(self) -> bool:
        return self.recall is not None

    @property
    def panel(self) -> tuple[str, str, int]:
        """(device, machine, batch): latencies are comparable only inside one panel."""
        return (self.device, self.machine, self.batch)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed_budgets"] = list(self.failed_budgets)
        return data


@dataclass(frozen=True)
class Report:
    """Merged rows plus everything the header, plots and summary need."""

    runs: tuple[BenchmarkRun, ...]
    rows: tuple[ReportRow, ...]
    operating_point: str | None
    operating_points: tuple[str, ...]
    budgets: tuple[Mapping[str, Any], ...]
    reference: str | None
    notes: tuple[str, ...] = ()
    # teacher recall at the operating point, per (device, machine); where budget lines start
    reference_recall: Mapping[tuple[str, str], float] = field(default_factory=dict)

    @property
    def fixture(self) -> Mapping[str, Any]:
        return next((run.fixture for run in self.runs if run.fixture), {})

    @property
    def profiles(self) -> list[str]:
        return sorted({str(r.profile) for r in self.runs if r.profile is not None})

    @property
    def machines(self) -> list[str]:
        return sorted({f"{row.machine} ({row.device}, {row.host})" for row in self.rows})

    def budgets_at_operating_point(self) -> list[Mapping[str, Any]]:
        """Budgets whose ``operating_point`` glob matches the report's operating point; none
        where no verdict was recorded there (the suite judges only its gated point, so at
        another point a matching glob listed or drawn would read as applied)."""
        return self._matching(self.budgets)

    def budgets_of(self, source: str) -> list[Mapping[str, Any]]:
        """As :meth:`budgets_at_operating_point`, from the one input file labelled ``source``
        (a row's): merged inputs may hold one budget name at different values, and each
        file's rows were judged at its own."""
        labels = run_labels(self.runs)
        budgets = next((run.budgets for run in self.runs if labels[run.path] == source), ())
        return self._matching(budgets)

    def _matching(self, budgets: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        if not any(r.passed is not None for r in self.rows):
            return []
        op = self.operating_point
        return [b for b in budgets
                if op is None or fnmatch.fnmatchcase(op, str(b.get("operating_point") or "*"))]

    def latency_frontier(self) -> list[int]:
        """Row indices on the recall / latency-p50 frontier of their panel."""
        return _frontier_by_panel(self.rows, range(len(self.rows)), "latency_p50_ms")

    def passing_latency_frontier(self) -> list[int]:
        """As :meth:`latency_frontier`, among rows that pass every budget only."""
        passing = [i for i, r in enumerate(self.rows) if r.passed]
        return _frontier_by_panel(self.rows, passing, "latency_p50_ms")

    def fastest_passing(self) -> list[int]:
        """Per panel, the index of the row with the lowest p50 latency among those passing
        every budget: the fastest model we may ship there, whose speedup over the FP32
        reference was measured in the same run."""
        best: dict[tuple[str, str, int], int] = {}
        for i, row in enumerate(self.rows):
            if not row.passed or row.latency_p50_ms is None:
                continue
            current = best.get(row.panel)
            if current is None or row.latency_p50_ms < self.rows[current].latency_p50_ms:
                best[row.panel] = i
        return [best[panel] for panel in sorted(best)]

    def size_frontier(self) -> list[int]:
        """Row indices on the recall / size frontier of their device (every batch of a model)."""
        return _size_frontier(self.rows)


def _frontier_by_panel(
    rows: Sequence[ReportRow], candidates: Iterable[int], cost: str
) -> list[int]:
    panels: dict[tuple[str, str, int], list[int]] = {}
    for i in candidates:
        if rows[i].has_quality and getattr(rows[i], cost) is not None:
            panels.setdefault(rows[i].panel, []).append(i)
    front: list[int] = []
    for members in panels.values():
        idx = pareto_front([getattr(rows[i], cost) for i in members],
                           [rows[i].recall for i in members])
        front.extend(members[k] for k in idx)
    return sorted(front)


def model_key(row: ReportRow) -> tuple[str, str, str, str, str | None, str]:
    """Rows that differ only in batch size: the same model on the same machine."""
    return (row.device, row.machine, row.variant, row.precision, row.runtime, row.source)


def _size_frontier(rows: Sequence[ReportRow]) -> list[int]:
    # one point per model (size and recall do not depend on the batch), per device and machine
    first_of_model: dict[tuple, int] = {}
    for i, row in enumerate(rows):
        if row.has_quality and row.size_mb is not None:
            first_of_model.setdefault(model_key(row), i)
    by_device: dict[tuple[str, str], list[int]] = {}
    for i in first_of_model.values():
        by_device.setdefault((rows[i].device, rows[i].machine), []).append(i)
    on_front = set()
    for members in by_device.values():
        idx = pareto_front([rows[i].size_mb for i in members], [rows[i].recall for i in members])
        on_front.update(model_key(rows[members[k]]) for k in idx)
    return [i for i, row in enumerate(rows) if row.has_quality and model_key(row) in on_front]


# --- reading values -------------------------------------------------------------------------


def _where(run: BenchmarkRun, what: str) -> str:
    return f"{run.path}: {what}"


def _fraction(value: Any, where: str, low: float = 0.0) -> float | None:
    """A proportion (or, with low=-1, a difference of two), refused outside its range."""
    number = _number(value, where)
    if number is not None and not low <= number <= 1.0:
        raise ReportError(f"{where} is {value!r}, outside [{low:g}, 1]; the file was edited or "
                          "written by a broken run; re-run the benchmarks")
    return number


def _number(value: Any, where: str, integer: bool = False, positive: bool = False) -> Any:
    """A finite number (None for null or NaN: not measured). An infinite value, or a latency
    of zero or less, is no measurement: ranked as the fastest, it would head the findings."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReportError(f"{where} must be a number, got {value!r}; the file was edited or "
                          "written by an incompatible plugin")
    if math.isinf(value) or (positive and value <= 0):
        raise ReportError(f"{where} is {value!r}, which no measurement gives; the file was "
                          "edited or written by a broken run; re-run the benchmarks")
    if integer:
        if not float(value).is_integer():
            raise ReportError(f"{where} must be a whole number, got {value!r}")
        return int(value)
    return None if math.isnan(value) else float(value)


def _confidence(value: Any, where: str) -> float | None:
    """A confidence level, 0.95 for 95%: the header prints it as a percentage (95 would read
    "9500%"), and 0 or 1 is no interval at all."""
    number = _number(value, where)
    if number is not None and not 0.0 < number < 1.0:
        raise ReportError(f"{where} is {value!r}, outside (0, 1) (write 0.95, not 95); the file "
                          "was edited or written by a broken run; re-run the benchmarks")
    return number


def _interval(value: Any, where: str, low: float = 0.0) -> tuple[float | None, float | None]:
    if value is None:
        return None, None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ReportError(f"{where} must be [low, high], got {value!r}")
    return _fraction(value[0], where, low), _fraction(value[1], where, low)


def _required(entry: Mapping[str, Any], key: str, where: str) -> Any:
    value = entry.get(key)
    if value is None or value == "":
        raise ReportError(f"{where} has no {key!r}; every defectbench entry records variant, "
                          "precision, device (and batch for benchmarks); re-run the benchmarks")
    if key in ("variant", "precision", "device") and (
        not isinstance(value, str) or not value.isprintable()
    ):
        # a line break in a name would end its Markdown table row and findings item part-way
        raise ReportError(f"{where}.{key} must be a name on one line, got {value!r}; the file "
                          "was edited or written by an incompatible plugin")
    return value


def _text(value: Any, where: str) -> str | None:
    """An optional name (a runtime, a memory kind): a list or a number is no name, and would
    end in a traceback where rows are grouped by it, or print as one."""
    if value is None or isinstance(value, str):
        return value
    raise ReportError(f"{where} must be a name or null, got {value!r}; the file was edited or "
                      "written by an incompatible plugin")


def _op_name(quality: Mapping[str, Any], where: str) -> str:
    op = quality.get("operating_point")
    name = op.get("name") if isinstance(op, Mapping) else op
    if not isinstance(name, str) or not name:
        raise ReportError(f"{where} has no operating_point name; a recall means nothing "
                          "without its threshold; re-run the quality tests")
    return name


def _is_gated(quality: Mapping[str, Any]) -> bool:
    op = quality.get("operating_point")
    if isinstance(op, Mapping) and isinstance(op.get("gated"), bool):
        return op["gated"]
    return bool(quality.get("verdicts"))


def _all_quality(runs: Sequence[BenchmarkRun]) -> Iterable[tuple[BenchmarkRun, Mapping, str]]:
    for run in runs:
        for k, q in enumerate(run.quality):
            if not isinstance(q, Mapping):
                raise ReportError(_where(run, f"defectbench.quality[{k}] is not an object"))
            yield run, q, f"{run.path}: defectbench.quality[{k}]"
        for b in run.benchmarks:
            q = b["extra_info"].get("quality")
            if isinstance(q, Mapping):
                yield run, q, f"{run.path}: benchmark {b.get('name')!r} extra_info.quality"


def operating_points(runs: Sequence[BenchmarkRun]) -> tuple[list[str], list[str]]:
    """(all operating point names, the gated ones), each in order of first appearance.

    Gated: named by a run's ``gated_operating_point``, or with budget verdicts recorded.
    """
    seen: list[str] = []
    gated: list[str] = []
    for run in runs:  # file by file: "the first gated one" is the first file's
        declared = run.section.get("gated_operating_point")
        if isinstance(declared, str) and declared and declared not in gated:
            gated.append(declared)
        for _, q, where in _all_quality([run]):
            name = _op_name(q, where)
            if name not in seen:
                seen.append(name)
            if _is_gated(q) and name not in gated:
                gated.append(name)
    return seen, gated


def choose_operating_point(runs: Sequence[BenchmarkRun], name: str | None = None) -> str | None:
    """``name`` if the runs have it, else the first gated operating point (or the first one)."""
    seen, gated = operating_points(runs)
    if name is not None:
        if name not in seen:
            available = ", ".join(map(repr, seen)) or "none (latency-only runs)"
            raise ReportError(
                f"operating point {name!r} is not in the inputs; they have {available}. "
                "Leave --operating-point out to use the first gated one"
            )
        return name
    gated = [name for name in gated if name in seen]  # a declared point with no results
    if gated:
        return gated[0]
    return seen[0] if seen else None


def _quality_index(
    runs: Sequence[BenchmarkRun], operating_point: str | None
) -> dict[tuple[str, str, str, str], tuple[Mapping[str, Any], str]]:
    """(entry, where it is in its file) per (file, variant, precision, device) at the point."""
    index: dict[tuple[str, str, str, str], tuple[Mapping[str, Any], str]] = {}
    for run in runs:
        for k, q in enumerate(run.quality):
            where = f"{run.path}: defectbench.quality[{k}]"
            if _op_name(q, where) != operating_point:
                continue
            key = (str(run.path), str(_required(q, "variant", where)),
                   str(_required(q, "precision", where)), str(_required(q, "device", where)))
            if key in index and index[key][0] != q:
                # which one is the verdict? a FAIL silently shadowed would read as a PASS
                raise ReportError(
                    f"{where} is a second, different quality result for {key[1]} {key[2]} on "
                    f"{key[3]} at operating point {operating_point!r}; one run records each "
                    "once: the file was edited or concatenated; report the runs as separate files"
                )
            index.setdefault(key, (q, where))
    return index


def _check_unique_benchmarks(run: BenchmarkRun) -> None:
    """One row per (variant, precision, device, batch) and file: a repeated entry would be a
    second row of one measurement, and could stand as the fastest of the panel."""
    seen: dict[tuple, str] = {}
    for bench in run.benchmarks:
        extra = bench["extra_info"]
        key = tuple(str(extra.get(k)) for k in ("variant", "precision", "device", "batch"))
        name = str(bench.get("fullname") or bench.get("name"))
        if key in seen:
            raise ReportError(
                f"{run.path}: benchmarks {seen[key]!r} and {name!r} both time {key[0]} "
                f"{key[1]} on {key[2]} at batch {key[3]}; one run times each once: the file "
                "was edited or concatenated; report the runs as separate files"
            )
        seen[key] = name


def _verdict(quality: Mapping[str, Any] | None, latency_only: bool, where: str) -> tuple:
    """(passed, failed budget names, verdict text); ``where`` names the quality entry."""
    if latency_only:
        return None, (), LATENCY_ONLY
    if quality is None:
        return None, (), NO_QUALITY
    verdicts = quality.get("verdicts") or []
    if not isinstance(verdicts, list):
        raise ReportError(f"{where}.verdicts must be a list, got {verdicts!r:.60}; the file was "
                          "edited or written by an incompatible plugin")
    for i, v in enumerate(verdicts):
        # a verdict dropped, or a "passed": "false" read as true, would turn a FAIL into a PASS
        if not isinstance(v, Mapping):
            raise ReportError(f"{where}.verdicts[{i}] must be an object, got {v!r:.60}; the "
                              "file was edited or written by an incompatible plugin")
        if not isinstance(v.get("passed"), bool):
            raise ReportError(f"{where}.verdicts[{i}].passed must be true or false, got "
                              f"{v.get('passed')!r:.60}; the file was edited or written by an "
                              "incompatible plugin")
        budget = v.get("budget")
        if not isinstance(budget, str) or not budget.strip() or not budget.isprintable():
            raise ReportError(f"{where}.verdicts[{i}].budget must be a budget's name on one "
                              f"line, got {budget!r:.60}; the file was edited or written by an "
                              "incompatible plugin")
    failed = tuple(dict.fromkeys(v["budget"] for v in verdicts if not v["passed"]))
    passed = quality.get("passed")
    if passed is not None and not isinstance(passed, bool):
        raise ReportError(f"{where}.passed must be true, false or null, got {passed!r:.60}; the "
                          "file was edited or written by an incompatible plugin")
    if not verdicts and passed is not False:
        # all([]) is True: a variant no budget applies to was not judged, so it did not pass
        return None, (), NOT_GATED
    if failed or passed is False:  # on contradictory input trust the failures
        return False, failed, ("FAIL: " + ", ".join(failed)) if failed else "FAIL"
    return True, (), "PASS"


def machine_label(run: BenchmarkRun, device: str, runs: Sequence[BenchmarkRun]) -> str:
    """The processor a row ran on, plus its file's name when another file of the report
    reports the same processor: two runs (say, two profiles with different teachers) on one
    machine must not share a panel, a Pareto front or a reference recall."""
    hardware = run.hardware(device)
    shared = any(other.path != run.path and other.hardware(device) == hardware
                 for other in runs)
    return f"{hardware} [{run_labels(runs)[run.path]}]" if shared else hardware


def _row(run: BenchmarkRun, bench: Mapping[str, Any], quality: Mapping[str, Any] | None,
         quality_where: str, operating_point: str | None,
         runs: Sequence[BenchmarkRun]) -> ReportRow:
    """``quality_where`` names the quality entry in its file: the run's list or the
    benchmark's own extra_info."""
    name = bench.get("fullname") or bench.get("name") or "?"
    where = _where(run, f"benchmark {name!r} extra_info")
    extra = bench["extra_info"]
    device = str(_required(extra, "device", where))
    latency_only = extra.get("latency_only", False)
    if not isinstance(latency_only, bool):  # "no" would read as true
        raise ReportError(f"{where}.latency_only must be true or false, got {latency_only!r}")
    if latency_only:
        quality = None
    lat = extra.get("latency_ms")
    if lat is None:
        # older plugin output: fall back to pytest-benchmark's seconds per call
        stats = bench.get("stats") or {}
        lat = {k: stats[s] * 1e3 for k, s in (("p50", "median"), ("mean", "mean"), ("min", "min"))
               if isinstance(stats.get(s), (int, float))}
        lat["rounds"] = stats.get("rounds")
    if not isinstance(lat, Mapping):
        raise ReportError(f"{where}.latency_ms must be an object, got {lat!r}")
    if _number(lat.get("p50"), f"{where}.latency_ms.p50", positive=True) is None:
        # every timed case records its median: a row without one is no measurement, and the
        # findings would call its panel "nothing timed"
        raise ReportError(f"{where} has no latency (latency_ms.p50, or stats.median in an older "
                          "file, is missing or NaN); the file was edited or cut; re-run the "
                          "benchmarks")
    mem = extra.get("memory") or {}
    if not isinstance(mem, Mapping):
        raise ReportError(f"{where}.memory must be an object, got {mem!r}")
    isolated = mem.get("isolated") or {}
    if not isinstance(isolated, Mapping):
        raise ReportError(f"{where}.memory.isolated must be an object, got {isolated!r}")
    q = quality or {}
    qw = quality_where
    if quality is not None and _number(q.get("recall"), f"{qw}.recall") is None:
        # its verdict would stand in the gate column beside "no quality", and the findings
        # would rank it with no recall to show
        raise ReportError(f"{qw} has no recall, yet is the quality result at operating point "
                          f"{operating_point!r}; the file was edited or written by a broken "
                          "run; re-run the benchmarks")
    op = q.get("operating_point") if isinstance(q.get("operating_point"), Mapping) else {}
    recall_low, recall_high = _interval(q.get("recall_interval"), f"{qw}.recall_interval")
    drop_low, drop_high = _interval(q.get("recall_drop_interval"), f"{qw}.recall_drop_interval",
                                    low=-1.0)
    passed, failed, verdict = _verdict(quality, latency_only, qw)
    return ReportRow(
        source=run_labels(runs)[run.path],
        host=run.host,
        machine=machine_label(run, device, runs),
        benchmark=str(name),
        variant=str(_required(extra, "variant", where)),
        precision=str(_required(extra, "precision", where)),
        device=device,
        batch=_number(_required(extra, "batch", where), f"{where}.batch", integer=True,
                      positive=True),
        runtime=_text(extra.get("runtime"), f"{where}.runtime"),
        threads=_number(extra.get("threads"), f"{where}.threads", integer=True),
        latency_only=latency_only,
        operating_point=operating_point if quality is not None else None,
        threshold=_number(op.get("threshold"), f"{qw}.operating_point.threshold"),
        recall=_fraction(q.get("recall"), f"{qw}.recall"),
        recall_low=recall_low,
        recall_high=recall_high,
        recall_drop=_fraction(q.get("recall_drop"), f"{qw}.recall_drop", low=-1.0),
        recall_drop_low=drop_low,
        recall_drop_high=drop_high,
        recall_drop_upper=_fraction(q.get("recall_drop_upper"), f"{qw}.recall_drop_upper",
                                    low=-1.0),
        fnr=_fraction(q.get("fnr"), f"{qw}.fnr"),
        fnr_upper=_fraction(q.get("fnr_upper"), f"{qw}.fnr_upper"),
        interval_confidence=(_confidence(q.get("interval_confidence", UNRECORDED_CONFIDENCE),
                                         f"{qw}.interval_confidence") if quality else None),
        precision_score=_fraction(q.get("precision_score"), f"{qw}.precision_score"),
        specificity=_fraction(q.get("specificity"), f"{qw}.specificity"),
        accuracy=_fraction(q.get("accuracy"), f"{qw}.accuracy"),
        f1=_fraction(q.get("f1"), f"{qw}.f1"),
        n_defective=_number(q.get("n_defective"), f"{qw}.n_defective", integer=True),
        n=_number(q.get("n"), f"{qw}.n", integer=True),
        new_misses=_number(q.get("new_misses"), f"{qw}.new_misses", integer=True),
        new_catches=_number(q.get("new_catches"), f"{qw}.new_catches", integer=True),
        mcnemar_p=_fraction(q.get("mcnemar_p"), f"{qw}.mcnemar_p"),
        passed=passed,
        failed_budgets=failed,
        verdict=verdict,
        latency_p50_ms=_number(lat.get("p50"), f"{where}.latency_ms.p50",
                                  positive=True),
        latency_p90_ms=_number(lat.get("p90"), f"{where}.latency_ms.p90",
                                  positive=True),
        latency_p99_ms=_number(lat.get("p99"), f"{where}.latency_ms.p99",
                                  positive=True),
        latency_mean_ms=_number(lat.get("mean"), f"{where}.latency_ms.mean",
                                  positive=True),
        rounds=_number(lat.get("rounds"), f"{where}.latency_ms.rounds", integer=True,
                       positive=True),
        throughput_ips=_number(extra.get("throughput_ips"), f"{where}.throughput_ips",
                               positive=True),
        # without a resettable high-water mark the figure is the session's peak so far: not
        # this case's, and it only grows from row to row
        peak_memory_mb=None if mem.get("kind") == "cpu_rss_high_water_not_reset"
        else _number(mem.get("peak_mb"), f"{where}.memory.peak_mb"),
        memory_kind=_text(mem.get("kind"), f"{where}.memory.kind"),
        isolated_memory_mb=_number(isolated.get("peak_delta_mb"),
                                   f"{where}.memory.isolated.peak_delta_mb"),
        isolated_load_mb=_number(isolated.get("load_mb"), f"{where}.memory.isolated.load_mb"),
        size_mb=_number(extra.get("size_mb", q.get("size_mb")), f"{where}.size_mb",
                        positive=True),
        params=_number(extra.get("params", q.get("params")), f"{where}.params", integer=True),
        macs=_number(extra.get("macs", q.get("macs")), f"{where}.macs", integer=True),
        gflops_per_s=_number(extra.get("gflops_per_s"), f"{where}.gflops_per_s"),
        speedup_vs_reference=_number(extra.get("speedup_vs_reference"),
                                     f"{where}.speedup_vs_reference"),
        cost_core_hours_per_million=_number(extra.get("cost_core_hours_per_million"),
                                            f"{where}.cost_core_hours_per_million"),
        cost_gpu_hours_per_million=_number(extra.get("cost_gpu_hours_per_million"),
                                           f"{where}.cost_gpu_hours_per_million"),
        # files from before these fields existed say nothing either way
        threshold_from_other_case=q.get("threshold_from_this_case") is False,
        differs_from_build=_text(q.get("differs_from_build") or None,
                                 f"{qw}.differs_from_build"),
    )


def _sort_key(row: ReportRow) -> tuple:
    inf = math.inf
    return (row.device, row.machine, row.batch,
            inf if row.latency_p50_ms is None else row.latency_p50_ms, row.variant, row.precision)


def _merged_budgets(runs: Sequence[BenchmarkRun], notes: list[str]) -> list[Mapping[str, Any]]:
    by_name: dict[str, Mapping[str, Any]] = {}
    for run in runs:
        for budget in run.budgets:
            name = str(budget.get("name"))
            if name in by_name and dict(by_name[name]) != dict(budget):
                notes.append(f"budget {name!r} differs between inputs; verdicts were judged per "
                             f"file and each panel's budget lines are its own file's (this "
                             f"header shows the first: {dict(by_name[name])})")
            by_name.setdefault(name, budget)
    return list(by_name.values())


def _reference_recall(runs: Sequence[BenchmarkRun], rows: Sequence[ReportRow],
                      reference: str | None, op: str | None) -> dict[tuple[str, str], float]:
    """The recall every drop in a (device, machine) panel is measured against.

    ``recall + recall_drop`` of any row is exactly that (the drop is reference minus variant
    on the same defective cells), wherever the reference itself ran; the reference's own FP32
    recall on the panel's device and machine is the fallback for rows without a drop. A panel
    with neither gets no reference line: another machine's or file's teacher is not its own.
    """
    found: dict[tuple[str, str], float] = {}
    for row in rows:
        if row.recall is not None and row.recall_drop is not None:
            found.setdefault((row.device, row.machine), row.recall + row.recall_drop)
    if reference is None or op is None:
        return found
    own: dict[tuple[str, str], float] = {}
    for run, q, where in _all_quality(runs):
        if (q.get("variant") == reference and q.get("precision") == "fp32"
                and _op_name(q, where) == op and q.get("recall") is not None):
            device = str(q.get("device"))
            own.setdefault((device, machine_label(run, device, runs)),
                           _number(q["recall"], f"{where}.recall"))
    for row in rows:
        panel = (row.device, row.machine)
        if panel not in found and panel in own:
            found[panel] = own[panel]
    return found


# recipe keys that name the variant a build starts from: an INT8 copy of a teacher trained
# another way is another model, though its own recipe reads the same
ANCESTOR_KEYS = ("parent", "teacher")


def _lineage(recipes: Mapping[str, Any], variant: str) -> dict[str, Any]:
    """The recipes of ``variant`` and of every variant it was built or distilled from."""
    found: dict[str, Any] = {}
    pending = [variant]
    while pending:
        name = pending.pop()
        if name in found or name not in recipes:
            continue
        found[name] = recipes[name]
        stack = [recipes[name]]
        while stack:
            node = stack.pop()
            if isinstance(node, Mapping):
                for key, value in node.items():
                    if key in ANCESTOR_KEYS and isinstance(value, str):
                        pending.append(value)
                    else:
                        stack.append(value)
            elif isinstance(node, list):
                stack.extend(node)
    return found


def _renamed_recipes(runs: Sequence[BenchmarkRun], variants: Iterable[str]) -> list[str]:
    """One entry per set of inputs of one profile name (inputs of different profiles get a
    note of their own) that built some tabulated variants differently, in their own recipe
    or that of a variant they were built or distilled from: a teacher trained at 192 px in
    one run and 260 px in the other has one name and two recalls, and so has its student."""
    labels = run_labels(runs)
    by_files: dict[tuple[str, ...], list[str]] = {}
    for variant in sorted(variants):
        by_profile: dict[str | None, dict[str, list[str]]] = {}
        for run in runs:
            lineage = _lineage(run.recipes, variant)
            if lineage:
                text = json.dumps(lineage, sort_keys=True, default=str)
                by_profile.setdefault(run.profile, {}).setdefault(text, []).append(
                    labels[run.path])
        for recipes in by_profile.values():
            if len(recipes) > 1:
                files = tuple(label for group in recipes.values() for label in group)
                by_files.setdefault(files, []).append(variant)
    return [f"{', '.join(files)} differ in {_plural(len(names), 'variant')} "
            f"({', '.join(names)})" for files, names in by_files.items()]


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def merge_runs(runs: Sequence[BenchmarkRun], operating_point: str | None = None) -> Report:
    """Rows of every defectbench benchmark in ``runs``, sorted by device, batch, latency."""
    notes: list[str] = []
    op = choose_operating_point(runs, operating_point)
    seen_ops, _ = operating_points(runs)
    index = _quality_index(runs, op)
    used: set[tuple[str, str, str, str]] = set()
    rows = []
    for run in runs:
        _check_unique_benchmarks(run)
        for bench in run.benchmarks:
            extra = bench["extra_info"]
            key = (str(run.path), str(extra.get("variant")), str(extra.get("precision")),
                   str(extra.get("device")))
            quality, where = index.get(key, (None, ""))
            fallback = extra.get("quality")
            if quality is None and isinstance(fallback, Mapping):
                where = f"{run.path}: benchmark {bench.get('name')!r} extra_info.quality"
                if _op_name(fallback, where) == op:
                    quality = fallback
            if quality is not None:
                used.add(key)
            rows.append(_row(run, bench, quality, where, op, runs))
    if not rows:
        judged = sum(len(r.quality) for r in runs)
        raise ReportError(
            "no defectbench benchmarks in " + ", ".join(str(r.path) for r in runs)
            + (f": {judged} quality results but nothing timed (a quality-only run such as "
               "`-m quality`; its verdicts are under `defectbench.quality` in the file)"
               if judged else "")
            + "; the report sets quality beside speed, so run `pytest benchmarks "
            "--benchmark-json out.json` without deselecting the perf benchmarks"
        )
    rows.sort(key=_sort_key)

    for run in runs:
        own_seen, own_gated = operating_points([run])
        if own_seen and op not in own_seen:
            # a whole file without quality at this point reads as ungated, not as a file
            # judged elsewhere: name it and the point its gates used
            others = own_gated or own_seen
            notes.append(f"{run_labels(runs)[run.path]} has no quality at operating point "
                         f"{op!r}: its results are at {', '.join(map(repr, others))}; report "
                         f"it on its own or pick one with --operating-point")
    missing = sorted({f"{r.variant} {r.precision} {r.device}" for r in rows
                      if r.verdict == NO_QUALITY})
    if missing:
        # no operating point at all: the inputs hold no quality result to have one
        at = f"at operating point {op!r}" if op is not None else "recorded in the inputs"
        notes.append(f"no quality {at} for: {', '.join(missing)}")
    orphans = sorted({f"{k[1]} {k[2]} {k[3]}" for k in index if k not in used})
    if orphans:
        notes.append(f"quality measured but not benchmarked (not in the table): "
                     f"{', '.join(orphans)}")
    foreign = sum(r.foreign_benchmarks for r in runs)
    if foreign:
        notes.append(f"{foreign} benchmark(s) without defectbench extra_info were left out")
    # a latency-only survey run has no profile: its untrained models are named apart
    profiles = sorted({str(r.profile) for r in runs if r.profile is not None})
    if len(profiles) > 1:
        notes.append(f"inputs come from different profiles ({', '.join(profiles)}): a variant "
                     "name may stand for differently trained models")
    rebuilt = _renamed_recipes(runs, {r.variant for r in rows})
    if rebuilt:
        notes.append("inputs of one profile built variants of one name from different "
                     "recipes (the profile or a recipe was edited between the runs), so the "
                     f"name stands for different models: {'; '.join(rebuilt)}")
    # a latency-only survey names no reference: it measured nothing against a teacher
    references = sorted({str(r.reference) for r in runs if r.reference is not None})
    if len(references) > 1:
        notes.append(f"inputs measure recall drops against different references "
                     f"({', '.join(references)})")
    budgets = _merged_budgets(runs, notes)
    reference = next((r.reference for r in runs if r.reference is not None), None)
    return Report(
        runs=tuple(runs),
        rows=tuple(rows),
        operating_point=op,
        operating_points=tuple(seen_ops),
        budgets=tuple(budgets),
        reference=reference,
        notes=tuple(notes),
        reference_recall=_reference_recall(runs, rows, reference, op),
    )


def load_report(paths: Sequence[str | Path], operating_point: str | None = None) -> Report:
    """Read, check and merge benchmark JSON files into a :class:`Report`."""
    return merge_runs(read_runs(paths), operating_point)
