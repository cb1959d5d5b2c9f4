"""Reading pytest-benchmark JSON written with the defectbench plugin, and checking it can be merged.

A file is ``pytest benchmarks --benchmark-json out.json`` output: pytest-benchmark's own keys
plus a top-level ``"defectbench"`` section (fixture hashes, reference, budgets, quality entries)
and ``extra_info`` on each benchmark. Files from several hosts merge only if they were measured
on the same validation fixture.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defectbench.errors import ReportError

SCHEMA = 1
HOW_TO_PRODUCE = "produce it with `pytest benchmarks --benchmark-json out.json`"
FIXTURE_HASHES = ("split_sha256", "content_sha256")


@dataclass(frozen=True)
class BenchmarkRun:
    """One input file: where it came from, its machine, and its defectbench content.

    ``benchmarks`` holds only the entries our plugin wrote (``extra_info["defectbench"]``);
    ``foreign_benchmarks`` counts the others, which the report leaves out.
    """

    path: Path
    machine_info: Mapping[str, Any]
    commit_info: Mapping[str, Any]
    datetime: str | None
    section: Mapping[str, Any]
    benchmarks: tuple[Mapping[str, Any], ...]
    foreign_benchmarks: int = 0

    @property
    def fixture(self) -> Mapping[str, Any]:
        return self.section.get("fixture") or {}

    @property
    def profile(self) -> str | None:
        return self.section.get("profile")

    @property
    def reference(self) -> str | None:
        return self.section.get("reference")

    @property
    def teacher_weights(self) -> str | None:
        """The local weights file the run's teacher was fine-tuned from (`--teacher-weights`);
        None for the profile's own pretrained weights and for files from before the field."""
        return (self.section.get("profile_settings") or {}).get("teacher_weights") or None

    @property
    def budgets(self) -> list[Mapping[str, Any]]:
        return list(self.section.get("budgets") or [])

    @property
    def quality(self) -> list[Mapping[str, Any]]:
        return list(self.section.get("quality") or [])

    @property
    def recipes(self) -> Mapping[str, Any]:
        """How each variant of the run's zoo was built (files from before: none)."""
        return self.section.get("recipes") or {}

    @property
    def host(self) -> str:
        return str(self.machine_info.get("node") or "unknown host")

    @property
    def cpu_name(self) -> str:
        cpu = self.machine_info.get("cpu")
        brand = cpu.get("brand_raw") if isinstance(cpu, Mapping) else None
        return str(brand or self.machine_info.get("processor") or self.machine_info.get("machine")
                   or "unknown CPU")

    @property
    def gpu_name(self) -> str | None:
        """The GPU's name if the plugin recorded one in ``machine_info``."""
        info = self.machine_info
        for key in ("gpu", "cuda", "gpus"):
            value = info.get(key)
            if isinstance(value, list) and value:
                value = value[0]
            if isinstance(value, str) and value:
                return value
            if isinstance(value, Mapping):
                for name_key in ("name", "device_name", "gpu_name"):
                    if isinstance(value.get(name_key), str) and value[name_key]:
                        return value[name_key]
        return None

    def hardware(self, device: str) -> str:
        """The processor a row on ``device`` ran on: the GPU for ``cuda*``, else the CPU."""
        if device.startswith("cuda"):
            return self.gpu_name or f"unknown GPU on {self.host}"
        return self.cpu_name


def _json_kind(value: Any) -> str:
    """What a JSON value is, in JSON's words: "a number", not Python's "a int"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _edited(where: str, field: str, shape: str, value: Any) -> ReportError:
    return ReportError(f"{where}.{field}' must be {shape}, got {_json_kind(value)} "
                       f"({value!r:.60}); the file was edited or written by an incompatible "
                       f"plugin; {HOW_TO_PRODUCE}")


def _check_budget(budget: Mapping[str, Any], where: str) -> None:
    """The fields of one recorded budget that the header prints, the plots draw and the merge
    compares: a limit of "x" or a confidence of 95 would be printed as the budget the rows
    were judged at (the suite writes each from a checked `Budget`)."""
    for field, required in (("name", True), ("metric", True), ("kind", True),
                            ("judged_on", True), ("group", False), ("variants", False),
                            ("operating_point", False)):
        value = budget.get(field)
        if value is None and not required:
            continue
        if not isinstance(value, str) or not value.strip() or not value.isprintable():
            shape = "a name on one line" + ("" if required else " or null")
            raise _edited(where, field, shape, value)
    value = budget.get("value")
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not 0.0 <= value <= 1.0):  # NaN fails the comparison too
        raise _edited(where, "value", "a number in [0, 1] (the budget's limit)", value)
    confidence = budget.get("confidence")
    if confidence is not None and (isinstance(confidence, bool)
                                   or not isinstance(confidence, (int, float))
                                   or not 0.0 < confidence < 1.0):
        raise _edited(where, "confidence", "a number between 0 and 1 (0.95, not 95) or null",
                      confidence)


def _check_stopped_early(stopped: Mapping[str, Any], where: str) -> None:
    """The counts the findings print ("31 of its 40 selected tests never ran"): the plugin
    writes whole numbers, `not_run` from 1 to `selected`; a boolean would print as "True of
    its 40", a negative or too large count as a fact. Absent counts are said as "part of its
    selection"."""
    for field in ("selected", "not_run"):
        value = stopped.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise _edited(where, field, "a whole number of tests, at least 1, or absent", value)
    not_run, selected = stopped.get("not_run"), stopped.get("selected")
    if not_run is not None and selected is not None and not_run > selected:
        raise ReportError(f"{where}' says {not_run} of {selected} selected tests never ran, "
                          f"more than were selected; the file was edited or written by an "
                          f"incompatible plugin; {HOW_TO_PRODUCE}")
    reason = stopped.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise _edited(where, "reason", "a string or absent", reason)


def _not_pytest_benchmark(path: Path, why: str) -> ReportError:
    return ReportError(f"{path}: not pytest-benchmark output ({why}); {HOW_TO_PRODUCE}")


def _folder_given(path: Path) -> str:
    """What to pass instead of a folder: a report's own output folder holds no run (its
    table.md names the files it was made from); another folder may hold the run's JSON."""
    if (path / "summary.json").is_file() and (path / "table.md").is_file():
        return (f"{path}: a report's output folder (`defectbench report --out` wrote it), not "
                "a benchmark run; pass the JSON written by `pytest benchmarks --benchmark-json "
                "FILE` that it was made from (its table.md names it)")
    try:
        runs = sorted(p.name for p in path.glob("*.json") if p.is_file())
    except OSError:
        runs = []
    inside = (f" ({', '.join(runs[:3])}{' ...' if len(runs) > 3 else ''} there)"
              if runs else "")
    return (f"{path}: a folder, not a file; pass the JSON inside it that `pytest benchmarks "
            f"--benchmark-json FILE` wrote{inside}, not the folder")


def read_run(path: str | Path) -> BenchmarkRun:
    """Read one ``--benchmark-json`` file; ReportError says what is wrong with it and the fix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(
            f"{path}: no such file; pass the JSON written by "
            "`pytest benchmarks --benchmark-json out.json`"
        ) from None
    except IsADirectoryError:
        raise ReportError(_folder_given(path)) from None
    except (OSError, UnicodeDecodeError) as err:  # no permission, an I/O error, binary data
        raise ReportError(f"{path}: cannot be read as a JSON text file ({err}); "
                          f"{HOW_TO_PRODUCE}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ReportError(
            f"{path}: not JSON ({err.msg} at line {err.lineno}, column {err.colno}); pass the file "
            "written by --benchmark-json, not the terminal output (a file cut short by a run "
            "killed while writing it, before defectbench wrote it atomically, reads this way "
            "too: rerun the suite)"
        ) from None

    if isinstance(data, dict) and "fastest_passing" in data and "rows" in data:
        raise ReportError(
            f"{path}: a report's own summary.json, not a benchmark run; pass the "
            "`--benchmark-json` file the report was made from (its path is in table.md)"
        )
    if isinstance(data, list) and data and isinstance(data[0], dict) and "built" in data[0]:
        raise ReportError(
            f"{path}: a `defectbench zoo list --json` listing, not a benchmark run; "
            f"{HOW_TO_PRODUCE}"
        )
    if not isinstance(data, dict):
        raise _not_pytest_benchmark(path, f"top level is {_json_kind(data)}, not an object")
    if not isinstance(data.get("benchmarks"), list):
        raise _not_pytest_benchmark(path, "no 'benchmarks' list")
    if not isinstance(data.get("machine_info"), dict):
        raise _not_pytest_benchmark(path, "no 'machine_info' object")
    section = data.get("defectbench")
    if section is None:
        raise ReportError(
            f"{path}: pytest-benchmark output but not defectbench output (no 'defectbench' key); "
            f"{HOW_TO_PRODUCE}"
        )
    if not isinstance(section, dict):
        raise ReportError(f"{path}: 'defectbench' must be an object, got "
                          f"{_json_kind(section)}; {HOW_TO_PRODUCE}")
    schema = section.get("schema")
    if schema != SCHEMA:
        raise ReportError(
            f"{path}: defectbench schema {schema!r} is not supported; this version reads "
            f"schema {SCHEMA}. "
            + ("Upgrade defectbench to read it" if isinstance(schema, int) and schema > SCHEMA
               else "Re-run the benchmarks with this defectbench version")
        )
    fixture = section.get("fixture")
    latency_only = section.get("latency_only") is True and fixture is None
    if not latency_only and (
        not isinstance(fixture, dict) or not all(fixture.get(k) for k in FIXTURE_HASHES)
    ):
        raise ReportError(
            f"{path}: 'defectbench.fixture' must record {' and '.join(FIXTURE_HASHES)}, got "
            f"{fixture!r}; {HOW_TO_PRODUCE}"
        )
    for key in ("quality", "budgets"):
        entries = section.get(key) or []
        if not isinstance(entries, list):
            raise ReportError(f"{path}: 'defectbench.{key}' must be a list, got "
                              f"{_json_kind(section[key])}; {HOW_TO_PRODUCE}")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ReportError(f"{path}: 'defectbench.{key}[{i}]' must be an object, got "
                                  f"{entry!r}; {HOW_TO_PRODUCE}")
            if key == "quality" and not isinstance(entry.get("verdicts") or [], list):
                raise ReportError(f"{path}: 'defectbench.quality[{i}].verdicts' must be a "
                                  f"list, got {entry['verdicts']!r}; {HOW_TO_PRODUCE}")
            if key == "budgets":
                _check_budget(entry, f"{path}: 'defectbench.budgets[{i}]")

    # fields the header, the labels and the findings read as text or as an object: another
    # type is an edited file, and would end in a traceback or print as `5` or `{'x': 1}`
    for where, value, expected in (
        ("commit_info", data.get("commit_info"), dict),
        ("datetime", data.get("datetime"), str),
        ("defectbench.profile", section.get("profile"), str),
        ("defectbench.reference", section.get("reference"), str),
        ("defectbench.gated_operating_point", section.get("gated_operating_point"), str),
        # a run cut short by -x whose marker is unreadable must not read as a complete run
        ("defectbench.stopped_early", section.get("stopped_early"), dict),
        ("defectbench.recipes", section.get("recipes"), dict),
        ("defectbench.profile_settings", section.get("profile_settings"), dict),
        ("defectbench.profile_settings.teacher_weights",
         (section.get("profile_settings") or {}).get("teacher_weights")
         if isinstance(section.get("profile_settings"), dict) else None, str),
    ):
        if value is not None and not isinstance(value, expected):
            shape = "an object" if expected is dict else "a string"
            raise ReportError(f"{path}: '{where}' must be {shape} or absent, got "
                              f"{_json_kind(value)} ({value!r:.60}); the file was edited or "
                              f"written by an incompatible plugin; {HOW_TO_PRODUCE}")
    if isinstance(section.get("stopped_early"), dict):
        _check_stopped_early(section["stopped_early"], f"{path}: 'defectbench.stopped_early")

    ours = []
    for entry in data["benchmarks"]:
        extra = entry.get("extra_info") if isinstance(entry, dict) else None
        if isinstance(extra, dict) and extra.get("defectbench"):
            ours.append(entry)
    return BenchmarkRun(
        path=path,
        machine_info=data["machine_info"],
        commit_info=data.get("commit_info") or {},
        datetime=data.get("datetime"),
        section=section,
        benchmarks=tuple(ours),
        foreign_benchmarks=len(data["benchmarks"]) - len(ours),
    )


def check_same_fixture(runs: Sequence[BenchmarkRun]) -> None:
    """ReportError naming both files and both hashes if any run used another fixture."""
    # a latency-only run (the architecture survey alone) used no fixture: nothing to compare
    runs = [run for run in runs if run.fixture]
    if not runs:
        return
    first = runs[0]
    for other in runs[1:]:
        for key in FIXTURE_HASHES:
            a, b = first.fixture[key], other.fixture[key]
            if a != b:
                raise ReportError(
                    f"fixture mismatch: {first.path} has {key} {a} but {other.path} has {key} "
                    f"{b}; results on different validation fixtures cannot be compared. Re-run "
                    "both on the same fixture (`defectbench data summary` shows the installed one)"
                )


def check_distinct_runs(runs: Sequence[BenchmarkRun]) -> None:
    """ReportError if one file is passed twice, or two files are copies of one run: every
    row would be counted twice, and duplicate points never dominate each other."""
    by_path: dict[Path, Path] = {}
    by_identity: dict[tuple, Path] = {}
    for run in runs:
        resolved = run.path.resolve()
        if resolved in by_path:
            raise ReportError(f"{run.path} is given twice (also as {by_path[resolved]}); pass "
                              "each benchmark JSON once")
        by_path[resolved] = run.path
        if run.datetime is None:
            continue
        names = tuple(sorted(str(b.get("fullname") or b.get("name")) for b in run.benchmarks))
        identity = (run.datetime, run.host, names)
        if identity in by_identity:
            raise ReportError(
                f"{run.path} and {by_identity[identity]} hold the same run (started "
                f"{run.datetime} on {run.host}, the same benchmarks); a copy would count every "
                "row twice, so pass one of them"
            )
        by_identity[identity] = run.path


def run_labels(runs: Sequence[BenchmarkRun]) -> dict[Path, str]:
    """Each run's shortest trailing path that no other input shares: ``out.json`` alone, but
    ``run1/out.json`` and ``run2/out.json`` when two runs wrote files of one name."""
    # asked for once per row: cached, or 30 inputs of 130 rows each took 17 s here alone
    # (relative paths resolve against the working folder, so it is part of the key)
    return dict(_run_labels(tuple(run.path for run in runs), os.getcwd()))


@functools.lru_cache(maxsize=16)
def _run_labels(paths: tuple[Path, ...], cwd: str) -> tuple[tuple[Path, str], ...]:
    parts = {path: path.resolve().parts for path in paths}
    labels: dict[Path, str] = {}
    for path, mine in parts.items():
        for k in range(1, len(mine) + 1):
            tail = mine[-k:]
            if all(other[-k:] != tail for p, other in parts.items() if p != path):
                break
        labels[path] = "/".join(tail)
    return tuple(labels.items())


def read_runs(paths: Sequence[str | Path]) -> list[BenchmarkRun]:
    """Read every file, refuse duplicates, and check they share one validation fixture."""
    if not paths:
        raise ReportError(f"no input files; {HOW_TO_PRODUCE} and pass out.json")
    runs = [read_run(p) for p in paths]
    check_distinct_runs(runs)
    check_same_fixture(runs)
    return runs
