"""Budget file parsing, validation errors and verdicts."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from defectbench.budgets import (
    Budget,
    Evidence,
    best_possible_bound,
    budgets_for,
    judge,
    judge_all,
    judge_each,
    load_budgets,
)
from defectbench.errors import ConfigError
from defectbench.metrics import (
    BinaryCounts,
    binary_report,
    clopper_pearson,
    compare_recall,
    compare_recall_by_group,
    drop_interval,
    threshold_for_recall,
)

REPO_BUDGETS = Path(__file__).resolve().parents[1] / "fixtures" / "budgets.toml"
VARIANT = "tf_efficientnet_lite0.kd.int8_ort"

GOOD_ENTRY = """
[[budget]]
name = "recall-drop"
metric = "recall_drop"
kind = "max_drop"
value = 0.03
judged_on = "point"
"""


def write(tmp_path, text, name="budgets.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def comparison(n_defective, new_misses, new_catches, confidence=0.95):
    """A RecallComparison with the given discordant counts; the reference catches the rest."""
    ids = [f"cell{i:04d}" for i in range(n_defective)]
    ref = np.ones(n_defective, dtype=int)
    var = np.ones(n_defective, dtype=int)
    var[:new_misses] = 0
    ref[new_misses : new_misses + new_catches] = 0
    return compare_recall(ids, np.ones(n_defective, dtype=int), ref, var, confidence)


# ---------------------------------------------------------------- the reviewed file


def test_repo_budget_file_loads_with_the_agreed_budgets():
    budgets = {b.name: b for b in load_budgets(REPO_BUDGETS)}
    assert budgets["recall-drop"].value == 0.03 and budgets["recall-drop"].judged_on == "point"
    assert budgets["recall-drop-upper-bound"].value == 0.08
    assert budgets["recall-drop-upper-bound"].judged_on == "upper_bound"
    assert budgets["fnr-ceiling"].metric == "fnr" and budgets["fnr-ceiling"].value == 0.20
    assert budgets["fnr-ceiling"].judged_on == "upper_bound"
    floor = budgets["cell-type-recall-floor"]
    assert (floor.metric, floor.kind, floor.value) == ("recall", "floor", 0.75)
    assert floor.group == "cell_type"
    assert all(b.confidence == 0.95 for b in budgets.values())


def _uninformative_variant(rng, reference_pred, val_labels, val_types):
    """Verdict inputs of a variant whose scores are noise, thresholded as the zoo does: on dev,
    from its own scores, for 90% recall (dev: 394 cells, 123 defective, as the fixture)."""
    dev_labels = np.r_[np.ones(123, dtype=int), np.zeros(271, dtype=int)]
    threshold = threshold_for_recall(dev_labels, rng.random(dev_labels.size), 0.90)
    scores = rng.random(val_labels.size)
    groups = {"cell_type": val_types}
    report = binary_report(val_labels, scores, threshold, groups=groups)
    pred = (scores >= threshold).astype(int)
    ids = [f"c{i:03d}" for i in range(val_labels.size)]
    comparison = compare_recall(ids, val_labels, reference_pred, pred)
    by_group = compare_recall_by_group(ids, val_labels, reference_pred, pred, groups)
    return Evidence.from_report(report, comparison, by_group)


def _val_like_the_fixture(rng):
    """val's counts: 654 cells, 204 defective, cell types at random; a teacher catching 178
    defective cells (0.873) and flagging about a quarter of the good ones."""
    val_labels = np.r_[np.ones(204, dtype=int), np.zeros(450, dtype=int)]
    val_types = np.where(rng.random(654) < 0.4, "mono", "poly")
    reference = np.r_[np.ones(178, dtype=int), np.zeros(26, dtype=int),
                      (rng.random(450) < 0.26).astype(int)]
    return val_labels, val_types, reference


def test_the_repo_budgets_fail_a_variant_whose_scores_are_noise():
    rng = np.random.default_rng(0)
    val_labels, val_types, reference = _val_like_the_fixture(rng)
    budgets = load_budgets(REPO_BUDGETS)
    recall_budgets_passed = 0
    for _ in range(100):
        verdicts = judge_all(
            budgets, VARIANT, _uninformative_variant(rng, reference, val_labels, val_types))
        (floor,) = [v for v in verdicts if v.budget == "specificity-above-chance"]
        assert not floor.passed, floor.message
        recall_budgets_passed += all(v.passed for v in verdicts if v is not floor)
    # why the floor is there: the recall budgets alone pass most such variants (the dev
    # threshold makes any score reach the target recall)
    assert recall_budgets_passed >= 50


def test_every_repo_budget_is_commented():
    # Budgets are reviewed data: each entry carries a comment saying why.
    chunks = REPO_BUDGETS.read_text().split("[[budget]]")[1:]
    assert chunks and all(chunk.lstrip("\n").startswith("#") for chunk in chunks)


def test_the_repo_files_commented_specificity_example_is_a_valid_budget(tmp_path):
    # the disabled example in budgets.toml is documentation users copy; it must load as written
    lines = REPO_BUDGETS.read_text().split("# [[budget]]", 1)[1].splitlines()
    example = "[[budget]]\n" + "\n".join(line.removeprefix("# ") for line in lines)
    (budget,) = load_budgets(write(tmp_path, example))
    assert (budget.metric, budget.kind, budget.judged_on) == ("specificity", "floor", "lower_bound")
    assert "specificity-floor" not in {b.name for b in load_budgets(REPO_BUDGETS)}


def test_defaults_and_optional_keys(tmp_path):
    text = """
[defaults]
confidence = 0.9

[[budget]]
name = "int8-fnr"
metric = "fnr"
kind = "ceiling"
value = 0.2
judged_on = "upper_bound"
variants = "*.int8*"
operating_point = "recall95"

[[budget]]
name = "strict"
metric = "recall"
kind = "floor"
value = 1
judged_on = "point"
confidence = 0.99
"""
    a, b = load_budgets(write(tmp_path, text))
    assert a.confidence == 0.9 and b.confidence == 0.99
    assert b.value == 1.0 and isinstance(b.value, float)
    assert a.applies_to(VARIANT) and not a.applies_to("tf_efficientnet_lite2.teacher")
    assert a.applies_to(VARIANT, "recall95") and not a.applies_to(VARIANT, "default")
    assert [x.name for x in budgets_for([a, b], "tf_efficientnet_lite2.teacher")] == ["strict"]
    assert json.loads(json.dumps(a.to_dict()))["variants"] == "*.int8*"


# ---------------------------------------------------------------- error paths


@pytest.mark.parametrize(
    "text,match",
    [
        pytest.param(
            GOOD_ENTRY.replace('judged_on = "point"', 'judged_on = "point"\nmax = 3'),
            r"\[\[budget\]\] #1 'recall-drop': unknown key 'max'; allowed keys are 'name'",
            id="unknown-key",
        ),
        pytest.param(
            GOOD_ENTRY.replace('judged_on = "point"', 'judged_on = "point"\nconfidance = 0.9'),
            r"unknown key 'confidance'.*did you mean 'confidence'\?",
            id="misspelt-key",
        ),
        pytest.param(
            GOOD_ENTRY.replace('kind = "max_drop"\n', ""),
            r"'recall-drop': missing required key\(s\) 'kind'",
            id="missing-key",
        ),
        pytest.param(
            GOOD_ENTRY.replace('"max_drop"', '"maxdrop"'),
            r"budget 'recall-drop': unknown kind 'maxdrop'.*did you mean 'max_drop'\?",
            id="bad-kind",
        ),
        pytest.param(
            GOOD_ENTRY.replace('"recall_drop"', '"acc"'),
            r"unknown metric 'acc'; expected one of 'recall_drop', 'fnr', 'recall'",
            id="bad-metric",
        ),
        pytest.param(
            GOOD_ENTRY.replace('"max_drop"', '"floor"'),
            r"metric 'recall_drop' cannot have kind 'floor'; use kind = 'max_drop'",
            id="metric-kind",
        ),
        pytest.param(
            GOOD_ENTRY.replace("0.03", "3"),
            r"value must be a number in \[0, 1\], got 3 \(write 0.03 for three points, not 3\)",
            id="percent-value",
        ),
        pytest.param(
            GOOD_ENTRY.replace("0.03", "-0.01"),
            r"value must be a number in \[0, 1\]",
            id="negative-value",
        ),
        pytest.param(
            GOOD_ENTRY.replace("0.03", '"0.03"'),
            r"value must be a number in \[0, 1\], got '0.03'",
            id="string-value",
        ),
        pytest.param(
            GOOD_ENTRY.replace("0.03", "nan"),
            r"value must be a number in \[0, 1\], got nan",
            id="nan-value",
        ),
        pytest.param(
            GOOD_ENTRY.replace('"point"', '"lower_bound"'),
            r"a max_drop judged on the lower_bound passes whenever.*use judged_on = 'point' or "
            r"'upper_bound'",
            id="lenient-bound",
        ),
        pytest.param(
            GOOD_ENTRY.replace('"point"', '"median"'),
            r"unknown judged_on 'median'; expected one of 'point', 'upper_bound', 'lower_bound'",
            id="bad-judged-on",
        ),
        pytest.param(
            GOOD_ENTRY + "confidence = 95\n",
            r"'recall-drop': confidence must be in \(0, 1\)",
            id="percent-confidence",
        ),
        pytest.param(
            GOOD_ENTRY + 'group = ""\n', r"group must name a metadata group", id="empty-group"
        ),
        pytest.param(
            GOOD_ENTRY + 'variants = ""\n', r"variants must be a non-empty glob", id="empty-glob"
        ),
        pytest.param(
            GOOD_ENTRY + GOOD_ENTRY,
            r"\[\[budget\]\] #2: duplicate name 'recall-drop'",
            id="duplicate-name",
        ),
        pytest.param(
            "[defaults]\nconfidence = 0.95\n",
            r"no \[\[budget\]\] entries.*double brackets",
            id="no-budgets",
        ),
        pytest.param("[budget]\nname = 'x'\n", r"no \[\[budget\]\] entries", id="single-brackets"),
        pytest.param(
            "[defaults]\nconfidense = 0.9\n" + GOOD_ENTRY,
            r"\[defaults\] has unknown key 'confidense'; allowed: 'confidence'",
            id="bad-defaults",
        ),
        pytest.param(
            "[budgets]\n" + GOOD_ENTRY, r"unknown top-level key 'budgets'", id="unknown-table"
        ),
        pytest.param(
            '[[budget]]\nname = "x\n', r"not valid TOML .*fix the syntax", id="toml-syntax"
        ),
    ],
)
def test_bad_budget_files_raise_config_error_naming_the_file(tmp_path, text, match):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=match) as info:
        load_budgets(path)
    assert str(info.value).startswith(str(path))


def test_missing_budget_file(tmp_path):
    with pytest.raises(ConfigError, match=r"budget file '.*nope.toml' not found"):
        load_budgets(tmp_path / "nope.toml")


def test_budget_validates_when_built_in_code():
    with pytest.raises(ConfigError, match=r"metric 'specificity' cannot have kind 'ceiling'"):
        Budget("s", "specificity", "ceiling", 0.6, "point")
    with pytest.raises(ConfigError, match=r"a floor judged on the upper_bound passes whenever"):
        Budget("f", "recall", "floor", 0.8, "upper_bound")
    with pytest.raises(ConfigError, match=r"budget name must be a non-empty string"):
        Budget("", "fnr", "ceiling", 0.2, "point")



@pytest.mark.parametrize("metric, kind, value", [("recall", "floor", 0.0),
                                                 ("specificity", "floor", 0),
                                                 ("fnr", "ceiling", 1.0),
                                                 ("recall_drop", "max_drop", 1)])
def test_a_budget_that_can_never_fail_is_refused(metric, kind, value):
    with pytest.raises(ConfigError, match=rf"a {kind} of {value:g} on {metric} can never fail"):
        Budget("b", metric, kind, value, "point")
    # the nearest limits that can fail are accepted
    Budget("b", metric, kind, 0.01 if kind == "floor" else 0.99, "point")


@pytest.mark.parametrize("confidence", [0.5, 0.3])
def test_a_confidence_at_or_below_one_half_is_refused(confidence):
    # at 0.5 or less a one-sided Clopper-Pearson bound has no margin over the estimate (it is
    # refused there too): an upper-bound ceiling would silently become a point-estimate gate
    with pytest.raises(ConfigError, match=r"one-sided bound at confidence"):
        clopper_pearson(30, 205, confidence, "upper")
    with pytest.raises(ConfigError, match=r"confidence must be above 0.5 .* no margin over"):
        Budget("b", "fnr", "ceiling", 0.2, "upper_bound", confidence=confidence)
    Budget("b", "fnr", "ceiling", 0.2, "upper_bound", confidence=0.51)


# ---------------------------------------------------------------- verdicts

DROP_POINT = Budget("recall-drop", "recall_drop", "max_drop", 0.03, "point")
DROP_BOUND = Budget("recall-drop-upper-bound", "recall_drop", "max_drop", 0.08, "upper_bound")
FNR = Budget("fnr-ceiling", "fnr", "ceiling", 0.20, "upper_bound")
CELL_FLOOR = Budget("cell-type-recall-floor", "recall", "floor", 0.75, "point", group="cell_type")


def test_variant_that_clearly_breaks_its_drop_budget_fails_with_a_readable_message():
    # 200 defective cells: 14 new misses, 2 new catches -> drop 0.06.
    cmp = comparison(200, 14, 2)
    v = judge(DROP_POINT, VARIANT, cmp)
    assert not v.passed
    assert v.value == pytest.approx(0.06) and v.limit == 0.03
    assert v.bound == pytest.approx(cmp.drop_upper)
    assert v.message.startswith(
        f"{VARIANT}: recall_drop 0.060 (95% upper bound {cmp.drop_upper:.3f}) exceeds budget "
        "max_drop 0.030 [budget 'recall-drop'"
    )
    assert "judged on the point estimate, 200 defective" in v.message
    json.dumps(v.to_dict())


def test_drop_within_budget_passes():
    v = judge(DROP_POINT, VARIANT, comparison(200, 6, 0))
    assert v.passed and v.value == 0.03  # 6/200 is exactly the budget
    assert "is within budget max_drop 0.030" in v.message


def test_churn_breaks_the_bound_budget_but_not_the_point_budget():
    # Net drop 0.03 hides 23 new misses and 17 new catches in 200 defective cells.
    cmp = comparison(200, 23, 17)
    assert judge(DROP_POINT, VARIANT, cmp).passed
    v = judge(DROP_BOUND, VARIANT, cmp)
    assert not v.passed and v.bound > 0.08 > v.value
    assert "judged on the 95% upper bound" in v.message


def test_fnr_ceiling_is_judged_on_the_upper_bound_recomputed_at_budget_confidence():
    counts = BinaryCounts(tp=170, fn=30, fp=40, tn=400)  # FNR 0.15, 95% bound 0.198
    report = binary_report(
        [1] * 200 + [0] * 10, [0.9] * 170 + [0.1] * 30 + [0.1] * 10, 0.5, confidence=0.6
    )  # the report's own confidence must not matter
    for evidence in (counts, report):
        v = judge(FNR, VARIANT, evidence)
        assert v.passed
        assert v.bound == pytest.approx(clopper_pearson(30, 200, 0.95, "upper").upper)
    strict = Budget("fnr-strict", "fnr", "ceiling", 0.18, "upper_bound", confidence=0.95)
    v = judge(strict, VARIANT, counts)
    assert not v.passed and v.value == 0.15
    assert "fnr 0.150 (95% upper bound 0.198) exceeds budget ceiling 0.180" in v.message


@pytest.mark.parametrize("confidence", [0.9, 0.99])
def test_every_metric_is_bounded_at_the_budgets_own_confidence(confidence):
    # FNR above is judged at 0.95, the default: a bound computed at 0.95 whatever the budget
    # says would pass it; here each metric's bound must move with the budget's confidence
    counts = BinaryCounts(tp=170, fn=30, fp=40, tn=400)
    cmp = comparison(200, 9, 3)  # compared at 0.95: the stored bound must not be reused
    cases = [
        (Budget("f", "fnr", "ceiling", 0.2, "upper_bound", confidence), counts,
         clopper_pearson(30, 200, confidence, "upper").upper),
        (Budget("r", "recall", "floor", 0.8, "lower_bound", confidence), counts,
         clopper_pearson(170, 200, confidence, "lower").lower),
        (Budget("s", "specificity", "floor", 0.8, "lower_bound", confidence), counts,
         clopper_pearson(400, 440, confidence, "lower").lower),
        (Budget("d", "recall_drop", "max_drop", 0.08, "upper_bound", confidence), cmp,
         drop_interval(9, 3, 200, confidence, "upper")[1]),
    ]
    for budget, evidence, expected in cases:
        v = judge(budget, VARIANT, evidence)
        assert v.confidence == confidence
        assert v.bound == pytest.approx(expected, abs=1e-12), budget.metric
        at_default = judge(Budget(**{**budget.to_dict(), "confidence": 0.95}), VARIANT, evidence)
        assert v.bound != pytest.approx(at_default.bound, abs=1e-6), budget.metric


def test_a_floor_met_exactly_passes():
    # "floor 0.75" admits 0.75, as "max_drop 0.03" admits a drop of 0.03
    v = judge(Budget("r", "recall", "floor", 0.75, "point"), VARIANT,
              BinaryCounts(tp=3, fn=1, fp=0, tn=1))
    assert v.value == 0.75 and v.passed
    assert "meets budget floor 0.750" in v.message
    v = judge(Budget("s", "specificity", "floor", 0.5, "point"), VARIANT,
              BinaryCounts(tp=3, fn=1, fp=2, tn=2))
    assert v.value == 0.5 and v.passed


def test_group_floor_fails_on_the_weak_group_and_names_it():
    y = np.array([1] * 40 + [1] * 40 + [0] * 20)
    cell = np.array(["mono"] * 40 + ["poly"] * 40 + ["mono"] * 10 + ["poly"] * 10)
    scores = np.ones(100) * 0.9
    scores[40:60] = 0.1  # poly: 20 of 40 missed -> recall 0.5
    scores[80:] = 0.1
    report = binary_report(y, scores, 0.5, groups={"cell_type": cell})
    v = judge(CELL_FLOOR, VARIANT, report)
    assert not v.passed and v.group == "cell_type=poly" and v.value == 0.5
    assert v.message.startswith(f"{VARIANT}: recall[cell_type=poly] 0.500 (95% lower bound")
    assert "is below budget floor 0.750" in v.message
    assert v.message.endswith("1 of 2 cell_type values fail: poly")
    each = judge_each(CELL_FLOOR, VARIANT, report)
    assert [(x.group, x.passed) for x in each] == [
        ("cell_type=mono", True),
        ("cell_type=poly", False),
    ]


def test_group_floor_passes_when_every_group_passes():
    report = binary_report(
        [1, 1, 1, 1],
        [0.9, 0.9, 0.9, 0.9],
        0.5,
        groups={"cell_type": ["mono", "mono", "poly", "poly"]},
    )
    v = judge(CELL_FLOOR, VARIANT, report)
    assert v.passed and v.message.endswith("all 2 cell_type values pass")


def test_group_value_without_defective_items_is_listed_not_failed():
    # ELPV's severity 0 and 1 are good by definition: a recall floor per severity must judge
    # the values that have defective cells, not fail on the ones that cannot have any
    report = binary_report([1, 0, 1, 0], [0.9, 0.1, 0.2, 0.1], 0.5,
                           groups={"severity": ["3", "0", "2", "1"]})
    floor = Budget("severity-floor", "recall", "floor", 0.75, "point", group="severity")
    v = judge(floor, VARIANT, report)
    assert not v.passed and v.group == "severity=2" and v.value == 0.0
    assert v.message.endswith("1 of 2 severity values fail: 2; "
                              "not judged (no defective items): 0, 1")
    report = binary_report([1, 0], [0.9, 0.1], 0.5, groups={"cell_type": ["mono", "poly"]})
    v = judge(CELL_FLOOR, VARIANT, report)
    assert v.passed and v.group == "cell_type=mono"
    assert v.message.endswith("all 1 cell_type values pass; not judged (no defective items): "
                              "poly")


def test_a_group_budget_with_nothing_to_measure_fails_rather_than_passes():
    report = binary_report([0, 0], [0.9, 0.1], 0.5, groups={"cell_type": ["mono", "poly"]})
    v = judge(CELL_FLOOR, VARIANT, report)
    assert not v.passed and math.isnan(v.value)
    assert "cannot be judged: no defective items" in v.message


SPEC_FLOOR = Budget("specificity-floor", "specificity", "floor", 0.60, "lower_bound")


def test_specificity_floor_catches_recall_bought_by_flagging_good_cells():
    # Both keep recall 0.86 on 200 defective cells; the second flags half of the 450 good ones.
    kept = BinaryCounts(tp=172, fn=28, fp=90, tn=360)  # specificity 0.80
    flagging = BinaryCounts(tp=172, fn=28, fp=225, tn=225)  # specificity 0.50
    # the recall budgets cannot tell them apart: both pass the FNR ceiling
    assert judge(FNR, VARIANT, kept).passed and judge(FNR, VARIANT, flagging).passed
    assert judge(SPEC_FLOOR, VARIANT, kept).passed
    v = judge(SPEC_FLOOR, VARIANT, flagging)
    assert not v.passed and v.value == 0.5
    assert v.bound == pytest.approx(clopper_pearson(225, 450, 0.95, "lower").lower)
    assert "specificity 0.500 (95% lower bound" in v.message
    assert "is below budget floor 0.600" in v.message and v.message.endswith("450 good]")


def test_specificity_floor_is_judged_on_its_lower_bound():
    # point 0.62 passes a 0.60 floor, but with 100 good cells the 95% lower bound is ~0.537
    counts = BinaryCounts(tp=50, fn=5, fp=38, tn=62)
    assert judge(Budget("s", "specificity", "floor", 0.60, "point"), VARIANT, counts).passed
    assert not judge(SPEC_FLOOR, VARIANT, counts).passed


def test_specificity_without_good_items_fails_rather_than_passes():
    v = judge(SPEC_FLOOR, VARIANT, BinaryCounts(tp=9, fn=1, fp=0, tn=0))
    assert not v.passed and math.isnan(v.value)
    assert "specificity cannot be judged: no good items" in v.message


def test_group_drop_budget_uses_group_comparisons():
    ids = [f"c{i}" for i in range(8)]
    y = [1] * 8
    ref = [1] * 8
    var = [0, 0, 1, 1, 1, 1, 1, 1]
    groups = {"cell_type": ["mono"] * 4 + ["poly"] * 4}
    evidence = Evidence(
        comparison=compare_recall(ids, y, ref, var),
        group_comparisons=compare_recall_by_group(ids, y, ref, var, groups),
    )
    budget = Budget("drop-per-type", "recall_drop", "max_drop", 0.1, "point", group="cell_type")
    v = judge(budget, VARIANT, evidence)
    assert not v.passed and v.group == "cell_type=mono" and v.value == 0.5


@pytest.mark.parametrize(
    "budget,evidence,match",
    [
        (DROP_POINT, BinaryCounts(1, 1, 1, 1), r"needs a RecallComparison.*compare_recall"),
        (FNR, Evidence(), r"'fnr-ceiling' \(fnr\) needs confusion counts"),
        (
            CELL_FLOOR,
            BinaryCounts(1, 1, 1, 1),
            r"needs per-cell_type results.*groups=\{'cell_type': \.\.\.\} to binary_report",
        ),
        (FNR, {"recall": 0.9}, r"no 'counts'; pass the dict returned by binary_report"),
        (FNR, [1, 2], r"cannot judge a budget against list"),
    ],
    ids=["drop-without-comparison", "empty-evidence", "group-without-groups", "bad-dict", "list"],
)
def test_missing_evidence_raises_instead_of_passing(budget, evidence, match):
    with pytest.raises(ConfigError, match=match):
        judge(budget, VARIANT, evidence)


@pytest.mark.parametrize(
    "metric, kind, value, judged_on",
    [("recall", "floor", 1, "lower_bound"), ("fnr", "ceiling", 0, "upper_bound")],
)
def test_a_budget_no_bound_can_meet_is_refused(metric, kind, value, judged_on):
    # a Clopper-Pearson lower bound is below 1 (an upper bound above 0) on any finite
    # evidence: even a perfect model would fail such a gate in every run
    with pytest.raises(ConfigError, match=rf"a {kind} of {value} judged on the {judged_on} "
                                          r"can never pass.*judge it on 'point'"):
        Budget("never", metric, kind, value, judged_on)
    assert Budget("perfect", metric, kind, value, "point").value == value


def test_a_zero_drop_bound_is_refused_for_what_it_really_demands():
    # Tango's upper bound on a drop does go below 0: 3 new catches and no new miss of 205
    # defective items put it at -0.0014. A max drop of 0 on that bound passes only a variant
    # shown better than its reference; "can never pass" was untrue
    assert drop_interval(0, 3, 205, 0.95, "upper")[1] < 0
    with pytest.raises(
        ConfigError,
        match=r"a max_drop of 0 judged on the upper_bound passes only a variant shown to catch "
        r"more defects than its reference.*judge it on 'point'",
    ):
        Budget("never", "recall_drop", "max_drop", 0, "upper_bound")
    assert Budget("none", "recall_drop", "max_drop", 0, "point").value == 0


def test_a_failure_message_shows_the_bound_apart_from_its_limit():
    # fn=22 of 152: the FNR bound is a hair above 0.2 and printed "0.200 exceeds 0.200"
    counts = BinaryCounts(tp=130, fn=22, fp=10, tn=400)
    v = judge(Budget("fnr", "fnr", "ceiling", 0.2, "upper_bound"), VARIANT, counts)
    assert not v.passed and 0.2 < v.bound < 0.2005
    shown = v.message.split("bound ")[1].split(")")[0]
    assert shown != "0.200" and float(shown) > 0.2
    assert "budget ceiling 0.2000" in v.message
    # a bound well apart from its limit keeps three decimals
    far = judge(Budget("fnr", "fnr", "ceiling", 0.3, "upper_bound"), VARIANT, counts)
    assert "budget ceiling 0.300 " in far.message


def test_a_group_value_without_defective_items_is_not_judged_by_omission():
    # a recall floor says "cannot be judged" for such a value; the drop budget now does too
    ids = [f"c{i}" for i in range(8)]
    y = [1, 1, 1, 1, 0, 0, 0, 0]
    ref, var = [1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0, 0, 0]
    groups = {"cell_type": ["mono"] * 4 + ["poly"] * 4}
    evidence = Evidence(
        group_counts={"cell_type": {"mono": BinaryCounts(tp=4, fn=0, fp=0, tn=0),
                                    "poly": BinaryCounts(tp=0, fn=0, fp=0, tn=4)}},
        group_comparisons=compare_recall_by_group(ids, y, ref, var, groups),
    )
    assert set(evidence.group_comparisons["cell_type"]) == {"mono"}
    budget = Budget("drop-per-type", "recall_drop", "max_drop", 0.1, "point", group="cell_type")
    verdicts = judge_each(budget, VARIANT, evidence)
    assert [(v.group, v.passed) for v in verdicts] == [
        ("cell_type=mono", True), ("cell_type=poly", False)]
    assert "cannot be judged: no defective items" in verdicts[1].message
    only_good = Evidence(group_comparisons={"cell_type": {}})
    with pytest.raises(ConfigError, match="no cell_type value with defective items to judge"):
        judge_each(budget, VARIANT, only_good)


def test_a_group_value_with_defective_items_but_no_comparison_is_refused():
    # "poly" has 5 defective items, all missed, but no comparison: it was skipped, and the
    # budget passed on "mono" alone
    evidence = Evidence(
        group_counts={"cell_type": {"mono": BinaryCounts(tp=2, fn=0, fp=0, tn=0),
                                    "poly": BinaryCounts(tp=0, fn=5, fp=0, tn=0)}},
        group_comparisons={"cell_type": {"mono": compare_recall(["1", "2"], [1, 1], [1, 1],
                                                                [1, 1])}},
    )
    budget = Budget("drop-per-type", "recall_drop", "max_drop", 0.03, "point", group="cell_type")
    with pytest.raises(ConfigError, match=r"'drop-per-type' \(recall_drop\) needs a comparison "
                                          r"for cell_type='poly' \(5 defective\)"):
        judge(budget, VARIANT, evidence)


def test_an_unreadable_budget_file_names_itself(tmp_path):
    # a folder was "cannot be read as UTF-8 text ([Errno 21] Is a directory ...)"
    with pytest.raises(ConfigError, match=rf"budget file '{tmp_path}' is a folder, not a file; "
                       "pass the budgets TOML file"):
        load_budgets(tmp_path)
    bad = tmp_path / "b.toml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="b.toml' cannot be read as UTF-8 text"):
        load_budgets(bad)


def test_judge_all_applies_only_matching_budgets():
    int8_only = Budget("int8-drop", "recall_drop", "max_drop", 0.0, "point", variants="*.int8*")
    evidence = Evidence(counts=BinaryCounts(180, 20, 10, 400), comparison=comparison(200, 4, 0))
    teacher = judge_all([FNR, int8_only], "tf_efficientnet_lite2.teacher", evidence)
    student = judge_all([FNR, int8_only], VARIANT, evidence)
    assert [v.budget for v in teacher] == ["fnr-ceiling"]
    assert [(v.budget, v.passed) for v in student] == [("fnr-ceiling", True), ("int8-drop", False)]


def test_a_budget_whose_globs_match_nothing_is_refused():
    from defectbench.budgets import check_budgets_apply

    variants = ["tf_efficientnet_lite2.teacher", "tf_efficientnet_lite0.kd.int8_ort"]
    fine = Budget("int8", "recall_drop", "max_drop", 0.03, "point", variants="*.int8*")
    check_budgets_apply([fine], variants, ["dev_recall_0.90"], "budgets.toml")
    typo = Budget("t", "recall_drop", "max_drop", 0.03, "point", operating_point="dev_recall_0.9")
    with pytest.raises(ConfigError, match=r"operating_point = 'dev_recall_0.9', which matches no "
                                          r"gated operating point; the suite gates at "
                                          r"'dev_recall_0.90'"):
        check_budgets_apply([fine, typo], variants, ["dev_recall_0.90"], "budgets.toml")
    none = Budget("n", "fnr", "ceiling", 0.2, "point", variants="*.int4*")
    with pytest.raises(ConfigError, match=r"budgets.toml: budget 'n' has variants = '\*.int4\*', "
                                          r"which matches no variant of this zoo"):
        check_budgets_apply([none], variants, ["dev_recall_0.90"], "budgets.toml")


def test_a_budget_on_a_group_the_suite_does_not_compute_is_refused():
    from defectbench.budgets import check_budgets_apply

    variants = ["tf_efficientnet_lite0.kd.int8_ort"]
    good = Budget("g", "recall", "floor", 0.75, "point", group="cell_type")
    check_budgets_apply([good], variants, ["p"], "budgets.toml", groups=("cell_type",))
    typo = Budget("t", "recall", "floor", 0.75, "point", group="cell_typ")
    with pytest.raises(ConfigError, match=r"budgets.toml: budget 't' has group = 'cell_typ', for "
                                          r"which the suite computes no results; groups are "
                                          r"'cell_type'; did you mean 'cell_type'\?"):
        check_budgets_apply([good, typo], variants, ["p"], "budgets.toml", groups=("cell_type",))
    # without groups (a caller that does not say), the group is not checked here
    check_budgets_apply([typo], variants, ["p"], "budgets.toml")


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
@pytest.mark.parametrize("n", [1, 10, 31, 204])
def test_best_possible_bound_matches_the_closed_forms(n, confidence):
    from scipy.stats import norm

    alpha = 1 - confidence
    z = norm.ppf(confidence)
    drop = Budget("d", "recall_drop", "max_drop", 0.08, "upper_bound", confidence)
    fnr = Budget("f", "fnr", "ceiling", 0.2, "upper_bound", confidence)
    recall = Budget("r", "recall", "floor", 0.8, "lower_bound", confidence)
    # no discordant pair: Tango's bound is z^2 / (n + z^2); Clopper-Pearson at 0 or n events
    assert best_possible_bound(drop, n) == pytest.approx(z**2 / (n + z**2), abs=1e-9)
    assert best_possible_bound(fnr, n) == pytest.approx(1 - alpha ** (1 / n), abs=1e-12)
    assert best_possible_bound(recall, n) == pytest.approx(alpha ** (1 / n), abs=1e-12)


def test_a_budget_no_result_can_pass_at_this_sample_size_says_so():
    ids = [f"c{i}" for i in range(20)]
    y = [1] * 20
    same = compare_recall(ids, y, [1] * 20, [1] * 20)  # agrees on every defective item
    budget = Budget("drop", "recall_drop", "max_drop", 0.08, "upper_bound")
    verdict = judge(budget, "v", Evidence(comparison=same))
    assert not verdict.passed
    assert (
        "out of reach at 20 defective for a variant that matches its reference: agreeing "
        "on every item gives a bound of 0.119, so only more new catches than new misses "
        "can pass"
    ) in verdict.message
    assert "unreachable" not in verdict.message
    # ... and that is what it says, not "unreachable": 3 new catches of 20 pass
    better = compare_recall(ids, y, [0] * 3 + [1] * 17, [1] * 20)
    assert judge(budget, "v", Evidence(comparison=better)).passed
    # a ceiling a flawless model cannot meet is unreachable, and says so
    fnr_budget = Budget("f", "fnr", "ceiling", 0.1, "upper_bound")
    fnr = judge(fnr_budget, "v", BinaryCounts(tp=20, fn=0, fp=0, tn=5))
    assert not fnr.passed
    assert "unreachable at 20 defective: even a flawless result's bound is 0.139" in fnr.message
    # a flawless result whose bound lands exactly on the limit passes (bound <= ceiling), so
    # the limit is reachable: 0 of 1 has a 95% upper bound of 1 - 0.05 = 0.95
    at_limit = Budget("f", "fnr", "ceiling", 0.95, "upper_bound")
    assert best_possible_bound(at_limit, 1) == 0.95
    assert judge(at_limit, "v", BinaryCounts(tp=1, fn=0, fp=0, tn=3)).passed
    missed = judge(at_limit, "v", BinaryCounts(tp=0, fn=1, fp=0, tn=3))
    assert not missed.passed and "unreachable" not in missed.message
    # the same for a floor: 2 of 2 has a 75% lower bound of 0.25 ** 0.5 = 0.5
    floor = Budget("r", "recall", "floor", 0.5, "lower_bound", confidence=0.75)
    assert best_possible_bound(floor, 2) == 0.5
    assert judge(floor, "v", BinaryCounts(tp=2, fn=0, fp=0, tn=3)).passed
    missed = judge(floor, "v", BinaryCounts(tp=1, fn=1, fp=0, tn=3))
    assert not missed.passed and "unreachable" not in missed.message
    # failing for what the model did, at a size where the limit is reachable: no such note
    ids = [f"c{i}" for i in range(204)]
    worse = compare_recall(ids, [1] * 204, [1] * 204, [0] * 30 + [1] * 174)
    verdict = judge(budget, "v", Evidence(comparison=worse))
    assert not verdict.passed and "unreachable" not in verdict.message


def test_the_readme_figures_on_tango_mcnemar_and_reachable_budgets():
    # README, "Quality gates": the interval that excludes 0 where McNemar does not reject,
    # and the smallest group a 0.08 drop bound at 95% can pass on
    from defectbench.metrics import drop_interval, mcnemar_exact_p

    low, high = drop_interval(4, 0, 204, 0.95)
    assert (round(low, 4), round(high, 3), mcnemar_exact_p(4, 0)) == (0.0008, 0.049, 0.125)
    drop = Budget("d", "recall_drop", "max_drop", 0.08, "upper_bound")
    assert best_possible_bound(drop, 31) > 0.08 >= best_possible_bound(drop, 32)


ONE_BUDGET = """
[[budget]]
name = "fnr-ceiling"
metric = "fnr"
kind = "ceiling"
value = 0.2
judged_on = "upper_bound"
"""


def test_a_byte_order_mark_from_an_editor_is_not_a_syntax_error(tmp_path):
    path = tmp_path / "budgets.toml"
    path.write_text("\ufeff" + ONE_BUDGET, encoding="utf-8")
    assert [b.name for b in load_budgets(path)] == ["fnr-ceiling"]


def test_a_relative_path_not_found_names_the_folder_it_was_read_from(tmp_path, monkeypatch):
    # `cd /tmp && pytest /repo/benchmarks --budgets fixtures/budgets.toml`: the path is the
    # one the user meant, read from another folder
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"'fixtures/budgets.toml' not found \(read from the "
                       rf"working directory: {tmp_path}/fixtures/budgets.toml\)"):
        load_budgets("fixtures/budgets.toml")


def test_real_numbers_of_any_type_are_limits_at_the_value_written():
    # a limit computed with numpy (float32 0.03) was refused as "must be a number"; accepted
    # as float(), it would be 0.0299999993 and fail a drop of exactly 0.03
    from fractions import Fraction

    for limit in (np.float32(0.03), np.float16(0.03), np.float64(0.03), Fraction(3, 100)):
        budget = Budget("b", "recall_drop", "max_drop", limit, "point")
        assert budget.value == 0.03 and type(budget.value) is float
        assert judge(budget, VARIANT, comparison(200, 6, 0)).passed  # drop 6/200 = 0.03
    assert Budget("b", "recall_drop", "max_drop", np.int64(0), "point").value == 0.0
    bound = Budget("b", "fnr", "ceiling", 0.2, "upper_bound", confidence=np.float32(0.95))
    assert bound.confidence == 0.95


@pytest.mark.parametrize(
    "value, match",
    [
        ("0.03", r"got '0.03' \(a string: write the number without quotes\)"),
        (None, r"got None$"),
        (True, r"got True$"),
        (np.float32("nan"), r"got np.float32\(nan\); give the limit the gate is meant to hold"),
        (np.float64(3), r"got np.float64\(3.0\) \(write 0.03 for three points, not 3\)"),
    ],
)
def test_values_that_are_no_limits_are_refused_naming_the_value(value, match):
    with pytest.raises(ConfigError, match=r"budget 'b': value must be a number in \[0, 1\], "
                       + match):
        Budget("b", "recall_drop", "max_drop", value, "point")

