"""`defectbench report` on odd and edited inputs: each is refused with a message that names the
file and the field, or labelled in the report, never a traceback or a silent misreading.

Inputs are copies of tests/data/report/cpu.json (see tests/test_report.py), changed one field
at a time.
"""

import copy
import json
import re
from pathlib import Path

import pytest
from report_data import CPU, GPU, INT8, PRUNED, TEACHER
from report_data import dump as _dump
from report_data import load as _load_file

from defectbench.errors import ReportError
from defectbench.report import load_report, write_report
from defectbench.report.cli import main
from defectbench.report.plots import LABEL_WIDTH, latency_figure, point_labels, size_figure
from defectbench.report.table import header_markdown

STUDENT = "tf_efficientnet_lite0.kd"

TEACHER_RECIPE = {
    "kind": "trained",
    "model": {"arch": "tf_efficientnet_lite2", "img_size": 260},
    "train": {"epochs": 8},
}
RECIPES = {
    TEACHER: TEACHER_RECIPE,
    STUDENT: {
        "kind": "trained",
        "model": {"arch": "tf_efficientnet_lite0", "img_size": 176},
        "distill": {"teacher": TEACHER, "mode": "soft"},
    },
    f"{STUDENT}.onnx": {"kind": "onnx", "parent": STUDENT},
    INT8: {"kind": "ort_int8", "parent": f"{STUDENT}.onnx", "quant": {"calibration": "minmax"}},
}


def _load() -> dict:
    return _load_file(CPU)


def _int8_bench(data: dict) -> dict:
    return next(b for b in data["benchmarks"] if b["extra_info"]["variant"] == INT8)


def _int8_quality(data: dict) -> list[dict]:
    entries = [q for q in data["defectbench"]["quality"] if q["variant"] == INT8]
    entries += [
        b["extra_info"]["quality"]
        for b in data["benchmarks"]
        if b["extra_info"]["variant"] == INT8 and b["extra_info"].get("quality")
    ]
    return entries


def _refused_by_main(path: Path, tmp_path: Path, capsys, match: str) -> None:
    """The command exits 2 with one error naming the file, writes nothing, and shows no
    traceback."""
    out = tmp_path / "out"
    assert main([str(path), "--out", str(out), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("defectbench: error: ") and "Traceback" not in err
    assert str(path) in err
    assert re.search(match, err), err
    assert not out.exists()


# --- fields of another JSON type --------------------------------------------------------------


@pytest.mark.parametrize(
    "where, value, match",
    [
        ("commit_info", [1], r"'commit_info' must be an object or absent, got an array"),
        ("datetime", 5, r"'datetime' must be a string or absent, got a number"),
        (
            "profile",
            {"name": "quick"},
            r"'defectbench.profile' must be a string or absent, got an "
            "object",
        ),
        ("reference", 5, r"'defectbench.reference' must be a string or absent, got a number"),
        ("gated_operating_point", ["p"], r"'defectbench.gated_operating_point' must be a string"),
        # a run cut short by -x whose marker is unreadable would read as a complete run
        (
            "stopped_early",
            "yes",
            r"'defectbench.stopped_early' must be an object or absent, got a "
            "string",
        ),
        ("recipes", [1], r"'defectbench.recipes' must be an object or absent, got an array"),
    ],
    ids=lambda v: v if isinstance(v, str) and " " not in v else None,
)
def test_run_fields_of_another_type_are_refused_by_name(tmp_path, capsys, where, value, match):
    # commit_info and datetime as these types ended in an AttributeError / TypeError traceback;
    # the others printed as `5` in the header or were dropped without a word
    data = _load()
    if where in ("commit_info", "datetime"):
        data[where] = value
    else:
        data["defectbench"][where] = value
    path = _dump(data, tmp_path / "odd.json")
    with pytest.raises(ReportError, match=match):
        load_report([path])
    _refused_by_main(path, tmp_path, capsys, match)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("runtime", ["onnxruntime"], r"extra_info.runtime must be a name or null, got \['onnx"),
        ("memory.kind", 7, r"extra_info.memory.kind must be a name or null, got 7"),
        (
            "quality.differs_from_build",
            ["pt2e"],
            r"defectbench.quality\[\d+\]\.differs_from_build must be a name or null, got "
            r"\['pt2e'\]",
        ),
    ],
)
def test_row_names_of_another_type_are_refused_by_name(tmp_path, capsys, field, value, match):
    # a list as the runtime ended in "TypeError: unhashable type: 'list'"
    data = _load()
    if field == "quality.differs_from_build":
        for q in _int8_quality(data):
            q["differs_from_build"] = value
    else:
        extra = _int8_bench(data)["extra_info"]
        if field == "memory.kind":
            extra.setdefault("memory", {})["kind"] = value
        else:
            extra[field] = value
    path = _dump(data, tmp_path / "odd.json")
    with pytest.raises(ReportError, match=match):
        load_report([path])
    _refused_by_main(path, tmp_path, capsys, match)


@pytest.mark.parametrize(
    "top, kind",
    [
        (3, "a number"),
        ("hello", "a string"),
        (None, "null"),
        (True, "a boolean"),
        ([], "an array"),
    ],
)
def test_top_level_json_is_named_in_json_words(tmp_path, capsys, top, kind):
    # was "top level is a int" / "a NoneType": Python's names, not the file's
    path = _dump(top, tmp_path / "odd.json")
    _refused_by_main(path, tmp_path, capsys, rf"top level is {kind}, not an object")


# --- values no run writes ---------------------------------------------------------------------


def _without_latency(data: dict, how: str) -> None:
    bench = _int8_bench(data)
    if how == "null":
        bench["extra_info"]["latency_ms"]["p50"] = None
    elif how == "nan":
        bench["extra_info"]["latency_ms"]["p50"] = float("nan")
    else:  # an older file: no latency_ms, and pytest-benchmark's stats without a median
        del bench["extra_info"]["latency_ms"]
        bench["stats"] = {k: v for k, v in bench.get("stats", {}).items() if k != "median"}


@pytest.mark.parametrize("how", ["null", "nan", "no-median"])
def test_a_benchmark_without_a_latency_is_refused(tmp_path, how):
    # was tabulated as "- / -", and a file of such rows had findings saying "nothing gated
    # was timed" of a run that timed every case
    data = _load()
    _without_latency(data, how)
    with pytest.raises(
        ReportError,
        match=r"odd\.json: benchmark .*int8_ort.* has no latency "
        r"\(latency_ms\.p50",
    ):
        load_report([_dump(data, tmp_path / "odd.json")])


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("batch", 0, r"extra_info.batch is 0, which no measurement gives"),
        ("batch", -4, r"extra_info.batch is -4, which no measurement gives"),
        ("rounds", 0, r"latency_ms.rounds is 0, which no measurement gives"),
        ("size_mb", -5.0, r"extra_info.size_mb is -5.0, which no measurement gives"),
        ("size_mb", 0, r"extra_info.size_mb is 0, which no measurement gives"),
    ],
)
def test_counts_and_sizes_no_run_writes_are_refused(tmp_path, field, value, match):
    # all were tabulated as given: a batch of -4, a model of -5 MiB heading the size frontier
    data = _load()
    extra = _int8_bench(data)["extra_info"]
    if field == "rounds":
        extra["latency_ms"]["rounds"] = value
    else:
        extra[field] = value
    with pytest.raises(ReportError, match=match):
        load_report([_dump(data, tmp_path / "odd.json")])


def test_a_quality_result_without_a_recall_is_refused(tmp_path):
    # its PASS stood in the gate column beside "no quality", and the findings named it the
    # fastest passing artifact with "recall -"
    data = _load()
    for q in _int8_quality(data):
        q["recall"] = None
    with pytest.raises(
        ReportError,
        match=r"odd\.json: defectbench\.quality\[\d+\] has no recall, yet is the "
        r"quality result at operating point",
    ):
        load_report([_dump(data, tmp_path / "odd.json")])


@pytest.mark.parametrize("name", ["a\nb", "a\rb", "a\tb"])
def test_a_name_with_a_line_break_is_refused(tmp_path, name):
    data = _load()
    _int8_bench(data)["extra_info"]["variant"] = name
    with pytest.raises(ReportError, match=r"extra_info.variant must be a name on one line"):
        load_report([_dump(data, tmp_path / "odd.json")])


def test_a_pipe_in_a_name_stays_in_its_markdown_column(tmp_path):
    data = _load()
    for bench in data["benchmarks"]:
        if bench["extra_info"]["variant"] == INT8:
            bench["extra_info"]["variant"] = "lite0|kd"
    for q in _int8_quality(data):
        q["variant"] = "lite0|kd"
    _, _ = write_report([_dump(data, tmp_path / "pipe.json")], tmp_path / "out", plots=False)
    table = (tmp_path / "out" / "table.md").read_text().split("## Table\n\n")[1]
    lines = table.strip().splitlines()
    header_columns = lines[0].count("|")
    assert all(line.replace("\\|", "").count("|") == header_columns for line in lines)
    assert any("lite0\\|kd" in line for line in lines)


# --- merged inputs ----------------------------------------------------------------------------


def _with_recipes(recipes: dict, stamp: str, path: Path) -> Path:
    data = _load()
    data["datetime"] = stamp
    data["defectbench"]["recipes"] = recipes
    return _dump(data, path)


def test_one_profile_built_two_ways_is_noted_with_its_descendants(tmp_path):
    # quick-cpu.json and noise/quick-192px-run1.json (both "quick") trained the teacher at
    # 260 and 192 px: merged, nothing said that one name stood for two teachers and students
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _with_recipes(RECIPES, "2026-11-22T10:00:00", tmp_path / "a" / "out.json")
    other = copy.deepcopy(RECIPES)
    other[TEACHER]["model"]["img_size"] = 192
    second = _with_recipes(other, "2026-11-23T10:00:00", tmp_path / "b" / "out.json")
    report = load_report([first, second])
    notes = [n for n in report.notes if "different recipes" in n]
    assert len(notes) == 1
    # the INT8 student's own recipe is unchanged: its teacher's is not
    assert (f"a/out.json, b/out.json differ in 2 variants ({INT8}, {TEACHER})") in notes[0]
    assert "the name stands for different models" in notes[0]


def test_same_recipes_or_different_profiles_get_no_recipe_note(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _with_recipes(RECIPES, "2026-11-22T10:00:00", tmp_path / "a" / "out.json")
    same = _with_recipes(copy.deepcopy(RECIPES), "2026-11-23T10:00:00", tmp_path / "b" / "out.json")
    assert not [n for n in load_report([first, same]).notes if "recipes" in n]
    # another profile is another zoo by design, and has its own note
    other = copy.deepcopy(RECIPES)
    other[TEACHER]["train"]["epochs"] = 10
    data = json.loads(_with_recipes(other, "2026-11-24T10:00:00", tmp_path / "c.json").read_text())
    data["defectbench"]["profile"] = "full"
    notes = load_report([first, _dump(data, tmp_path / "c.json")]).notes
    assert not [n for n in notes if "recipes" in n]
    assert any("different profiles" in n for n in notes)


# --- the command line and the plots -----------------------------------------------------------


def test_an_empty_out_is_refused_not_the_current_folder(tmp_path, capsys, monkeypatch):
    # `--out "$DIR"` with DIR unset wrote table.md into the current folder
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main([str(CPU), "--out", "", "--no-plots"])
    assert exit_.value.code == 2
    assert "argument --out: empty; name the folder for the report" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_report_of_one_row_says_row(tmp_path, capsys):
    data = _load()
    data["benchmarks"] = [_int8_bench(data)]
    path = _dump(data, tmp_path / "one.json")
    assert main([str(path), "--out", str(tmp_path / "out"), "--no-plots"]) == 0
    assert capsys.readouterr().out.startswith("1 row at operating point ")


def test_a_long_variant_name_gets_a_short_point_label(tmp_path):
    # a 400-character name drew labels across its panel and the next
    long = "x" * 400 + ".kd.int8_ort"
    data = _load()
    for bench in data["benchmarks"]:
        if bench["extra_info"]["variant"] == INT8:
            bench["extra_info"]["variant"] = long
    for q in _int8_quality(data):
        q["variant"] = long
    report = load_report([_dump(data, tmp_path / "long.json")])
    labels = [
        text
        for figure in (latency_figure(report), size_figure(report))
        for panel in point_labels(figure)
        for label in panel
        for text in label.split("\n")
    ]
    assert any(text.endswith(".kd.int8_ort") and "..." in text for text in labels)
    assert max(len(text) for text in labels) <= LABEL_WIDTH + len(" (reference)")


def test_input_labels_are_worked_out_once_not_per_row(tmp_path, monkeypatch):
    # every row asked for the inputs' labels, resolving every path each time: 30 inputs of
    # 130 rows took 12 s, 10 of them in Path.resolve and its comparisons
    paths = []
    for k in range(3):
        data = _load()
        data["datetime"] = f"2026-11-2{k}T10:00:00"
        (tmp_path / f"run{k}").mkdir()
        paths.append(_dump(data, tmp_path / f"run{k}" / "out.json"))
    resolve = Path.resolve
    calls = []

    def counting_resolve(self, *args, **kwargs):
        calls.append(self)
        return resolve(self, *args, **kwargs)

    monkeypatch.setattr(Path, "resolve", counting_resolve)
    report = load_report(paths)
    assert len(report.rows) == 3 * len(load_report([CPU]).rows)
    # once to refuse a file given twice, once for its label
    assert len([c for c in calls if c in paths]) <= 2 * len(paths)


def test_a_folder_where_a_file_goes_is_refused_before_anything_is_written(tmp_path):
    # table.md was renamed into place, then table.csv's rename failed: a new table beside the
    # old CSV, and an error naming the temporary file `.table.csv.XXXX.tmp`
    out = tmp_path / "out"
    (out / "table.csv").mkdir(parents=True)
    (out / "table.md").write_text("earlier report\n")
    with pytest.raises(
        ReportError,
        match=r"cannot write .*out/table\.csv: something other than "
        r"a file is there .*Nothing was written",
    ):
        write_report([CPU], out, plots=False)
    assert (out / "table.md").read_text() == "earlier report\n"
    assert sorted(p.name for p in out.iterdir()) == ["table.csv", "table.md"]


def test_a_failed_rename_names_the_target_not_its_temporary_file(tmp_path, monkeypatch):
    import errno
    import os

    def refuse(src, dst):
        raise OSError(errno.EACCES, "Permission denied", str(src), None, str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(ReportError) as refused:
        write_report([CPU], tmp_path / "out", plots=False)
    message = str(refused.value)
    assert re.match(r"cannot write .*out/table\.(md|csv): Permission denied", message), message
    assert ".tmp" not in message


# --- budgets and verdicts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, match",
    [
        (
            "value",
            "x",
            r"'defectbench.budgets\[0\].value' must be a number in \[0, 1\] \(the "
            r"budget's limit\), got a string \('x'\)",
        ),
        ("value", 3, r"budgets\[0\].value' must be a number in \[0, 1\].*got a number \(3\)"),
        ("value", True, r"budgets\[0\].value' must be a number .*got a boolean"),
        ("value", None, r"budgets\[0\].value' must be a number .*got null"),
        (
            "confidence",
            95,
            r"budgets\[0\].confidence' must be a number between 0 and 1 "
            r"\(0.95, not 95\) or null, got a number \(95\)",
        ),
        ("confidence", "0.95", r"budgets\[0\].confidence' must be .*got a string"),
        ("name", 5, r"budgets\[0\].name' must be a name on one line, got a number \(5\)"),
        ("name", "recall\ndrop", r"budgets\[0\].name' must be a name on one line, got a string"),
        ("metric", None, r"budgets\[0\].metric' must be a name on one line, got null"),
        ("kind", ["max_drop"], r"budgets\[0\].kind' must be a name on one line, got an array"),
        (
            "judged_on",
            {"a": 1},
            r"budgets\[0\].judged_on' must be a name on one line, got an "
            r"object",
        ),
        ("group", 5, r"budgets\[0\].group' must be a name on one line or null, got a number"),
        ("variants", ["*"], r"budgets\[0\].variants' must be a name on one line or null"),
    ],
)
def test_budget_fields_of_another_type_are_refused_by_name(tmp_path, capsys, field, value, match):
    # the header printed them as the limits the rows were judged at ("recall_drop max_drop x",
    # "the 9500% upper bound"); a plot skipped a line without a word
    data = _load()
    data["defectbench"]["budgets"][0][field] = value
    path = _dump(data, tmp_path / "odd.json")
    with pytest.raises(ReportError, match=match):
        load_report([path])
    _refused_by_main(path, tmp_path, capsys, match)


def _set_verdict_field(data: dict, variant: str, field: str, value: object) -> None:
    """Change the variant's gated quality entry: ``verdict`` replaces its first verdict,
    ``verdict.X`` a field of it, anything else a field of the entry."""
    (entry,) = [
        q for q in data["defectbench"]["quality"] if q["variant"] == variant and q.get("verdicts")
    ]
    if field == "verdict":
        entry["verdicts"][0] = value
    elif field.startswith("verdict."):
        entry["verdicts"][0][field.removeprefix("verdict.")] = value
    else:
        entry[field] = value


@pytest.mark.parametrize(
    "variant, field, value, match",
    [
        # a verdict that is no object was dropped: a FAIL among them could read as a PASS
        (
            PRUNED,
            "verdict",
            "failed",
            r"defectbench.quality\[4\].verdicts\[0\] must be an object, got 'failed'",
        ),
        # "false" is true to Python: a failed budget read as passed
        (
            PRUNED,
            "verdict.passed",
            "false",
            r"defectbench.quality\[4\].verdicts\[0\].passed must be true or false, got 'false'",
        ),
        (
            INT8,
            "verdict.budget",
            5,
            r"defectbench.quality\[2\].verdicts\[0\].budget must be a budget's name on one line, "
            r"got 5",
        ),
        (
            INT8,
            "passed",
            "no",
            r"defectbench.quality\[2\].passed must be true, false or null, got 'no'",
        ),
    ],
)
def test_verdict_fields_of_another_type_are_refused_by_name(
    tmp_path, capsys, variant, field, value, match
):
    data = _load()
    _set_verdict_field(data, variant, field, value)
    path = _dump(data, tmp_path / "odd.json")
    with pytest.raises(ReportError, match=match):
        load_report([path])
    _refused_by_main(path, tmp_path, capsys, match)


@pytest.mark.parametrize("value", [95, 0, 1.0, -0.5])
def test_an_interval_confidence_outside_0_1_is_refused(tmp_path, capsys, value):
    # 95 was printed in the header as "recall two-sided 9500%"
    data = _load()
    for q in _int8_quality(data):
        q["interval_confidence"] = value
    path = _dump(data, tmp_path / "odd.json")
    match = r"defectbench.quality\[2\].interval_confidence is .*, outside \(0, 1\)"
    with pytest.raises(ReportError, match=match):
        load_report([path])
    _refused_by_main(path, tmp_path, capsys, match)


# --- corrupt, foreign or older files (mutation-tested round 2) ---------------------------------


@pytest.mark.parametrize(
    "field, value, match",
    [
        # a blank name printed as the budget the rows were judged at ("  : max_drop 0.02")
        ("name", "  ", r"budgets\[0\].name' must be a name on one line, got a string"),
        # confidence 1 is no interval: a bound at 100% is no bound
        ("confidence", 1.0, r"budgets\[0\].confidence' must be a number between 0 and 1"),
    ],
)
def test_budget_values_at_the_edges_are_refused(tmp_path, capsys, field, value, match):
    data = _load()
    data["defectbench"]["budgets"][0][field] = value
    path = _dump(data, tmp_path / "odd.json")
    _refused_by_main(path, tmp_path, capsys, match)


@pytest.mark.parametrize(
    "stopped, match",
    [
        # "0 of its 40 selected tests never ran" is no early stop; a selection of 0 ran nothing
        ({"selected": 40, "not_run": 0}, r"stopped_early.not_run' must be a whole number of "
         r"tests, at least 1, or absent, got a number \(0\)"),
        ({"selected": 0}, r"stopped_early.selected' must be a whole number .*got a number \(0\)"),
        # one more than were selected is already too many
        ({"selected": 4, "not_run": 5}, r"says 5 of 4 selected tests never ran, more than"),
    ],
    ids=["none-not-run", "none-selected", "one-too-many"],
)
def test_stopped_early_counts_at_the_edges_are_refused(tmp_path, capsys, stopped, match):
    data = _load()
    data["defectbench"]["stopped_early"] = stopped
    path = _dump(data, tmp_path / "odd.json")
    _refused_by_main(path, tmp_path, capsys, match)


def test_a_binary_file_is_refused_as_no_json_text(tmp_path, capsys):
    # a .png or a gzipped JSON passed by mistake ended in a UnicodeDecodeError traceback
    path = tmp_path / "out.json"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x80")
    _refused_by_main(path, tmp_path, capsys, r"cannot be read as a JSON text file")


def test_a_file_without_a_schema_is_refused_as_too_old(tmp_path, capsys):
    # a section from before the schema field must not be read as the current layout
    data = _load()
    del data["defectbench"]["schema"]
    path = _dump(data, tmp_path / "old.json")
    _refused_by_main(path, tmp_path, capsys,
                     r"defectbench schema None is not supported.*Re-run the benchmarks")


@pytest.mark.parametrize(
    "latency_only, fixture",
    [("yes", None), (True, {}), (True, {"split_sha256": "a" * 64})],
    ids=["latency-only-not-a-boolean", "empty-fixture", "half-a-fixture"],
)
def test_only_a_true_latency_only_run_without_a_fixture_skips_the_fixture_check(
    tmp_path, capsys, latency_only, fixture
):
    # a survey-only run writes `"latency_only": true` and no fixture; anything else without
    # both hashes is an edited file, which would merge with runs on any fixture unchecked
    data = _load()
    data["defectbench"]["latency_only"] = latency_only
    data["defectbench"]["fixture"] = fixture
    path = _dump(data, tmp_path / "odd.json")
    _refused_by_main(path, tmp_path, capsys,
                     r"'defectbench.fixture' must record split_sha256 and content_sha256")


@pytest.mark.parametrize("key", ["budgets", "quality"])
def test_budgets_or_quality_as_an_object_are_refused_as_no_list(tmp_path, capsys, key):
    # keyed by name instead of listed: read as a list of its keys, "budgets[0] must be an
    # object, got 'recall-drop'" named a field the file does not have
    data = _load()
    data["defectbench"][key] = {"recall-drop": {"value": 0.02}}
    path = _dump(data, tmp_path / "odd.json")
    _refused_by_main(path, tmp_path, capsys, rf"'defectbench.{key}' must be a list, got an object")


def test_a_benchmark_marked_not_defectbench_is_left_out_and_counted(tmp_path):
    # `"defectbench": false` in extra_info is another plugin's entry, not one of ours
    from defectbench.report import read_run

    data = _load()
    ours = len(data["benchmarks"])
    marked = _int8_bench(data)
    marked["extra_info"]["defectbench"] = False
    run = read_run(_dump(data, tmp_path / "odd.json"))
    assert run.foreign_benchmarks == 1 and len(run.benchmarks) == ours - 1
    assert marked["name"] not in {b["name"] for b in run.benchmarks}


def test_only_the_fp32_teacher_is_labelled_the_reference(tmp_path):
    # the teacher run in BF16 is the same variant at another precision: a compressed model
    # like any other, not the reference its drops are measured against
    data = _load()
    fp32 = next(b for b in data["benchmarks"] if b["extra_info"]["variant"] == TEACHER
                and b["extra_info"]["batch"] == 1)
    bf16 = copy.deepcopy(fp32)
    bf16["name"] = bf16["name"].replace("fp32", "bf16")
    bf16["fullname"] = bf16["fullname"].replace("fp32", "bf16")
    bf16["extra_info"]["precision"] = bf16["extra_info"]["quality"]["precision"] = "bf16"
    bf16["extra_info"]["latency_ms"]["p50"] = 5.0  # fastest at batch 1: on the front
    data["benchmarks"].append(bf16)
    data["defectbench"]["quality"].append(bf16["extra_info"]["quality"])
    report = load_report([_dump(data, tmp_path / "bf16.json")])
    labels = point_labels(latency_figure(report))[0]
    assert "lite2.teacher bf16" in labels and "lite2.teacher fp32 (reference)" in labels


@pytest.mark.parametrize("gpus", [[{"name": "NVIDIA A100-SXM4-80GB"}], ["NVIDIA A100-SXM4-80GB"]])
def test_a_gpu_recorded_in_a_list_names_the_cuda_rows(tmp_path, gpus):
    data = _load_file(GPU)
    del data["machine_info"]["gpu"]
    data["machine_info"]["gpus"] = gpus
    report = load_report([_dump(data, tmp_path / "gpu.json")])
    assert {row.machine for row in report.rows if row.device == "cuda"} == {
        "NVIDIA A100-SXM4-80GB"}


def test_input_labels_follow_the_working_folder(tmp_path, monkeypatch):
    # the same relative paths name other files from another folder: their labels differ too
    for name, node in (("a", "box-a"), ("b", "box-b"), ("x", "box-x")):
        data = _load()
        data["machine_info"]["node"] = node
        (tmp_path / name).mkdir()
        _dump(data, tmp_path / name / "out.json")
    for here in ("a", "b"):
        monkeypatch.chdir(tmp_path / here)
        report = load_report(["out.json", "../x/out.json"])
        assert {row.source for row in report.rows} == {f"{here}/out.json", "x/out.json"}


def test_each_input_is_labelled_apart_from_every_other(tmp_path):
    # out.json twice and other.json once: the two out.json need their folders, other.json not
    for folder, name, node in (("a", "out.json", "box-a"), ("b", "out.json", "box-b"),
                               ("c", "other.json", "box-c")):
        data = _load()
        data["machine_info"]["node"] = node
        (tmp_path / folder).mkdir()
        _dump(data, tmp_path / folder / name)
    report = load_report([tmp_path / "a" / "out.json", tmp_path / "b" / "out.json",
                          tmp_path / "c" / "other.json"])
    assert {row.source for row in report.rows} == {"a/out.json", "b/out.json", "other.json"}



@pytest.mark.parametrize(
    "commit, shown",
    [("0123456789abcdef0123456789abcdef01234567", "commit 0123456789"),
     # pytest-benchmark's id outside a git checkout: was cut to "commit unversione"
     ("unversioned", "commit unversioned"), ("unknown", "commit unknown")],
)
def test_the_header_shortens_a_commit_hash_but_not_a_word(tmp_path, commit, shown):
    data = _load_file(CPU)
    data["commit_info"] = {"id": commit, "dirty": False}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    header = header_markdown(load_report([path]))
    assert f"{shown}, " in header, header


def test_values_at_the_valid_edges_load(tmp_path):
    # the checks that refuse values out of range must not refuse their ends: a recall of 1
    # (FNR 0), a variant whose drop bound is below 0 (better than its reference), a limit 0
    data = _load_file(CPU)
    entries = data["defectbench"]["quality"] + [
        b["extra_info"]["quality"] for b in data["benchmarks"] if b["extra_info"].get("quality")
    ]
    for q in entries:
        if q["variant"] == INT8:
            q.update(recall=1.0, fnr=0.0, recall_drop=-0.05, recall_drop_upper=-0.01,
                     recall_drop_interval=[-0.09, -0.01])
    data["defectbench"]["budgets"][0]["value"] = 0.0
    report = load_report([_dump(data, tmp_path / "edges.json")])
    rows = [r for r in report.rows if r.variant == INT8]
    assert rows and all((r.recall, r.fnr, r.recall_drop_upper) == (1.0, 0.0, -0.01)
                        for r in rows)
    assert report.budgets[0]["value"] == 0.0


def test_a_plain_run_gets_no_notes(tmp_path):
    # every note (another reference, quality without timings, ...) is for an odd input
    assert load_report([CPU]).notes == ()
    data = _load_file(CPU)
    data["benchmarks"] = [b for b in data["benchmarks"] if b["extra_info"]["variant"] != PRUNED]
    notes = load_report([_dump(data, tmp_path / "untimed.json")]).notes
    assert len(notes) == 1 and PRUNED in notes[0], notes
