"""Quality budgets: reviewed limits on defect recall, loaded from TOML and judged against metrics.

A budget file (``fixtures/budgets.toml``) has a ``[defaults]`` table and ``[[budget]]`` entries::

    [defaults]
    confidence = 0.95

    [[budget]]
    name = "recall-drop"        # unique, shown in every verdict
    metric = "recall_drop"      # "recall_drop" | "fnr" | "recall" | "specificity"
    kind = "max_drop"           # recall_drop -> "max_drop", fnr -> "ceiling",
                                # recall and specificity -> "floor"
    value = 0.03                # limit, in [0, 1]
    judged_on = "point"         # "point", "upper_bound" (max_drop, ceiling), "lower_bound" (floor)
    # optional: confidence, group = "cell_type", variants = "*.int8*", operating_point = "*"

Bounds are one-sided at the budget's confidence and are recomputed from the counts in the
evidence, so a report written at another confidence is judged correctly.

``specificity`` (the share of good items passed) is the other side of the trade: a variant can
keep its recall by flagging more good items for manual review, which no recall budget sees.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import numbers
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from defectbench.errors import ConfigError
from defectbench.metrics.confusion import BinaryCounts
from defectbench.metrics.intervals import check_confidence, clopper_pearson
from defectbench.metrics.paired import RecallComparison, drop_interval

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

METRICS = ("recall_drop", "fnr", "recall", "specificity")
KINDS = ("max_drop", "ceiling", "floor")
JUDGED_ON = ("point", "upper_bound", "lower_bound")
# Each metric has exactly one meaningful direction.
KIND_FOR_METRIC = {
    "recall_drop": "max_drop", "fnr": "ceiling", "recall": "floor", "specificity": "floor"
}
# The bound that makes a budget stricter than its point estimate; the other one would pass
# whenever the evidence is too thin to show a failure.
BOUND_FOR_KIND = {"max_drop": "upper_bound", "ceiling": "upper_bound", "floor": "lower_bound"}
DEFAULT_CONFIDENCE = 0.95

_REQUIRED = ("name", "metric", "kind", "value", "judged_on")
_OPTIONAL = ("confidence", "group", "variants", "operating_point")
_DEFAULT_KEYS = ("confidence",)


def relative_to_cwd(path: Path) -> str:
    """' (read from the working directory, ...)' for a relative path: run from another folder
    (`cd /tmp && pytest /repo/benchmarks --budgets fixtures/...`), it names another file."""
    return "" if path.is_absolute() else f" (read from the working directory: {path.absolute()})"


def _as_float(number: numbers.Real) -> float:
    """``float(number)``, except that a numpy float narrower than 64 bits becomes the decimal
    it prints as: float32 0.03 is 0.0299999993..., a limit a hair below the one its writer
    read, which a drop of exactly 0.03 would fail."""
    if isinstance(number, np.floating) and np.finfo(number.dtype).bits < 64:
        return float(str(number))
    return float(number)


def _did_you_mean(word: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _choices(choices: tuple[str, ...]) -> str:
    return ", ".join(map(repr, choices))


@dataclass(frozen=True)
class Budget:
    """One reviewed limit. ``group`` makes it apply to every value of that metadata group."""

    name: str
    metric: str
    kind: str
    value: float
    judged_on: str
    confidence: float = DEFAULT_CONFIDENCE
    group: str | None = None
    variants: str = "*"
    operating_point: str = "*"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"budget name must be a non-empty string, got {self.name!r}")
        where = f"budget {self.name!r}"
        if self.metric not in METRICS:
            raise ConfigError(
                f"{where}: unknown metric {self.metric!r}; expected one of {_choices(METRICS)}"
                + _did_you_mean(str(self.metric), METRICS)
            )
        if self.kind not in KINDS:
            raise ConfigError(
                f"{where}: unknown kind {self.kind!r}; expected one of {_choices(KINDS)}"
                + _did_you_mean(str(self.kind), KINDS)
            )
        expected_kind = KIND_FOR_METRIC[self.metric]
        if self.kind != expected_kind:
            raise ConfigError(
                f"{where}: metric {self.metric!r} cannot have kind {self.kind!r}; "
                f"use kind = {expected_kind!r}"
            )
        # any real number (a numpy float from a computed limit too); a bool is not a limit
        if isinstance(self.value, bool) or not isinstance(self.value, numbers.Real):
            quoted = isinstance(self.value, str)
            raise ConfigError(
                f"{where}: value must be a number in [0, 1], got {self.value!r}"
                + (" (a string: write the number without quotes)" if quoted else "")
            )
        value = _as_float(self.value)
        if math.isnan(value):
            raise ConfigError(
                f"{where}: value must be a number in [0, 1], got {self.value!r}; give the "
                "limit the gate is meant to hold, such as 0.03"
            )
        if not 0.0 <= value <= 1.0:
            raise ConfigError(
                f"{where}: value must be a number in [0, 1], got {self.value!r} "
                "(write 0.03 for three points, not 3)"
            )
        object.__setattr__(self, "value", value)
        # a floor of 0, a ceiling of 1 or a max drop of 1 holds for every possible result
        if self.value == (0.0 if self.kind == "floor" else 1.0):
            raise ConfigError(
                f"{where}: a {self.kind} of {self.value:g} on {self.metric} can never fail; "
                "give the limit the gate is meant to hold, or remove the budget"
            )
        if self.judged_on not in JUDGED_ON:
            raise ConfigError(
                f"{where}: unknown judged_on {self.judged_on!r}; expected one of "
                f"{_choices(JUDGED_ON)}" + _did_you_mean(str(self.judged_on), JUDGED_ON)
            )
        bound = BOUND_FOR_KIND[self.kind]
        if self.judged_on not in ("point", bound):
            raise ConfigError(
                f"{where}: a {self.kind} judged on the {self.judged_on} passes whenever the "
                f"evidence is too thin to show a failure; use judged_on = 'point' or {bound!r}"
            )
        # a confidence bound never reaches 1 from below or 0 from above on finite evidence;
        # a drop is a difference, and its upper bound goes below 0 only for a variant shown
        # better than its reference, which a compressed variant is not meant to have to be
        if self.judged_on != "point" and self.value == 0.0 and self.metric == "recall_drop":
            raise ConfigError(
                f"{where}: a max_drop of 0 judged on the upper_bound passes only a variant "
                "shown to catch more defects than its reference (more new catches than new "
                "misses, by a margin its sample size can show), never one that merely matches "
                "it; judge it on 'point' to allow no drop at all, or give the positive limit "
                "the bound may reach"
            )
        if self.judged_on != "point" and self.value == (1.0 if self.kind == "floor" else 0.0):
            raise ConfigError(
                f"{where}: a {self.kind} of {self.value:g} judged on the {self.judged_on} can "
                "never pass (no finite evidence puts the bound there, not even a perfect "
                "model's); judge it on 'point' to demand perfection, or give a limit the "
                "bound can reach"
            )
        confidence = self.confidence
        if isinstance(confidence, np.floating):
            confidence = _as_float(confidence)
        object.__setattr__(self, "confidence", check_confidence(confidence, f"{where}: confidence"))
        if self.confidence <= 0.5:
            # a one-sided bound at 0.5 is about the median, with no margin for sampling error,
            # and below it can collapse onto the estimate (Clopper-Pearson clamps it there), so
            # a bound budget would silently gate the point estimate
            raise ConfigError(
                f"{where}: confidence must be above 0.5 (e.g. 0.95), got {self.confidence:g}: "
                "a one-sided bound at 0.5 or less gives no margin over the point estimate"
            )
        if self.group is not None and (not isinstance(self.group, str) or not self.group):
            raise ConfigError(
                f"{where}: group must name a metadata group such as 'cell_type', got {self.group!r}"
            )
        for key in ("variants", "operating_point"):
            pattern = getattr(self, key)
            if not isinstance(pattern, str) or not pattern:
                raise ConfigError(
                    f"{where}: {key} must be a non-empty glob such as '*' or "
                    f"'*.int8*', got {pattern!r}"
                )

    @property
    def bound_side(self) -> str:
        """``"upper"`` for ceilings and max drops, ``"lower"`` for floors."""
        return "lower" if self.kind == "floor" else "upper"

    def applies_to(self, variant: str, operating_point: str | None = None) -> bool:
        """Whether ``variant`` (and ``operating_point``, if given) match this budget's globs."""
        if not fnmatch.fnmatchcase(variant, self.variants):
            return False
        return operating_point is None or fnmatch.fnmatchcase(operating_point, self.operating_point)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_table_keys(entry: Mapping[str, Any], required: tuple[str, ...],
                     optional: tuple[str, ...], label: str) -> None:
    """ConfigError for a TOML table with an unknown key (with the allowed ones and the
    closest) or without a required one: a misspelt key must not fall back to a default."""
    allowed = required + optional
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{label}: unknown key {unknown[0]!r}; allowed keys are {_choices(allowed)}"
            + _did_you_mean(unknown[0], allowed)
        )
    missing = [k for k in required if k not in entry]
    if missing:
        raise ConfigError(f"{label}: missing required key(s) {_choices(tuple(missing))}")


def budget_from_dict(
    entry: Mapping[str, Any], defaults: Mapping[str, Any] | None = None, where: str = "budget"
) -> Budget:
    """A Budget from one ``[[budget]]`` table, refusing unknown and missing keys."""
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a table of keys, got {entry!r}; write [[budget]]")
    label = f"{where} {entry['name']!r}" if isinstance(entry.get("name"), str) else where
    check_table_keys(entry, _REQUIRED, _OPTIONAL, label)
    return Budget(**{**dict(defaults or {}), **entry})


def load_budgets(path: str | Path) -> list[Budget]:
    """Parse and validate a budget TOML file; ConfigError names the file, entry and fix."""
    path = Path(path)
    try:
        # utf-8-sig: an editor's byte-order mark is not content, and tomllib reads it as a
        # syntax error at line 1, column 1
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(
            f"budget file {str(path)!r} not found{relative_to_cwd(path)}; pass the reviewed "
            "budgets, e.g. fixtures/budgets.toml of the checkout"
        ) from None
    except IsADirectoryError:
        # not "cannot be read as UTF-8 text": the text was never the problem
        raise ConfigError(
            f"budget file {str(path)!r} is a folder, not a file{relative_to_cwd(path)}; pass "
            "the budgets TOML file, e.g. fixtures/budgets.toml"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"budget file {str(path)!r} cannot be read as UTF-8 text ({err}); pass the "
            "reviewed budgets TOML file, e.g. fixtures/budgets.toml"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err}); fix the syntax") from None

    unknown = sorted(set(data) - {"defaults", "budget"})
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key {unknown[0]!r}; a budget file has a [defaults] "
            "table and [[budget]] entries"
        )
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: 'defaults' must be a table: write [defaults]")
    bad_defaults = sorted(set(defaults) - set(_DEFAULT_KEYS))
    if bad_defaults:
        raise ConfigError(
            f"{path}: [defaults] has unknown key {bad_defaults[0]!r}; allowed: "
            f"{_choices(_DEFAULT_KEYS)}"
        )
    entries = data.get("budget", [])
    if not isinstance(entries, list) or not entries:
        raise ConfigError(
            f"{path}: no [[budget]] entries; a gate without budgets would pass every variant. "
            "Add at least one [[budget]] table (note the double brackets)"
        )

    budgets: list[Budget] = []
    for index, entry in enumerate(entries, start=1):
        try:
            budget = budget_from_dict(entry, defaults, where=f"[[budget]] #{index}")
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
        except TypeError as err:  # e.g. a value of the wrong TOML type reaching a comparison
            raise ConfigError(f"{path}: [[budget]] #{index}: {err}") from None
        if any(b.name == budget.name for b in budgets):
            raise ConfigError(
                f"{path}: [[budget]] #{index}: duplicate name {budget.name!r}; budget names "
                "must be unique so verdicts can be traced"
            )
        budgets.append(budget)
    return budgets


def check_budgets_apply(
    budgets: list[Budget],
    variants: list[str],
    operating_points: list[str],
    where: str,
    groups: tuple[str, ...] | None = None,
) -> None:
    """ConfigError for a budget whose ``variants`` or ``operating_point`` glob matches nothing
    in this zoo: a misspelt pattern (``dev_recall_0.9`` for ``dev_recall_0.90``) would
    otherwise drop its budget from every verdict without a word. With ``groups`` (what the
    caller computes per-group results for), a budget's ``group`` must be one of them, so a
    misspelt group is refused before the run rather than failing every case after it."""
    for budget in budgets:
        if groups is not None and budget.group is not None and budget.group not in groups:
            raise ConfigError(
                f"{where}: budget {budget.name!r} has group = {budget.group!r}, for which the "
                f"suite computes no results; groups are {_choices(groups)}"
                + _did_you_mean(budget.group, groups)
            )
        if not any(fnmatch.fnmatchcase(v, budget.variants) for v in variants):
            raise ConfigError(
                f"{where}: budget {budget.name!r} has variants = {budget.variants!r}, which "
                f"matches no variant of this zoo; variants are {_choices(tuple(variants))}"
            )
        if not any(fnmatch.fnmatchcase(p, budget.operating_point) for p in operating_points):
            raise ConfigError(
                f"{where}: budget {budget.name!r} has operating_point = "
                f"{budget.operating_point!r}, which matches no gated operating point; the suite "
                f"gates at {_choices(tuple(operating_points))}"
            )


def budgets_for(
    budgets: list[Budget], variant: str, operating_point: str | None = None
) -> list[Budget]:
    """The budgets whose ``variants`` / ``operating_point`` globs match, in file order."""
    return [b for b in budgets if b.applies_to(variant, operating_point)]


@dataclass(frozen=True)
class Evidence:
    """What a budget is judged against: metrics of one variant at one operating point.

    ``counts`` / ``group_counts`` feed ``recall``, ``fnr`` and ``specificity`` budgets;
    ``comparison`` / ``group_comparisons`` (against the FP32 reference) feed ``recall_drop``
    budgets.
    """

    counts: BinaryCounts | None = None
    comparison: RecallComparison | None = None
    group_counts: Mapping[str, Mapping[str, BinaryCounts]] = field(default_factory=dict)
    group_comparisons: Mapping[str, Mapping[str, RecallComparison]] = field(default_factory=dict)

    @classmethod
    def from_report(
        cls,
        report: Mapping[str, Any],
        comparison: RecallComparison | None = None,
        group_comparisons: Mapping[str, Mapping[str, RecallComparison]] | None = None,
    ) -> Evidence:
        """Evidence from a :func:`~defectbench.metrics.binary_report` dict."""
        if "counts" not in report:
            raise ConfigError(
                "evidence report has no 'counts'; pass the dict returned by binary_report"
            )
        return cls(
            counts=BinaryCounts.from_dict(report["counts"]),
            comparison=comparison,
            group_counts={
                g: {v: BinaryCounts.from_dict(entry["counts"]) for v, entry in values.items()}
                for g, values in report.get("groups", {}).items()
            },
            group_comparisons=dict(group_comparisons or {}),
        )


EvidenceLike = Evidence | BinaryCounts | RecallComparison | Mapping[str, Any]


def as_evidence(evidence: EvidenceLike) -> Evidence:
    if isinstance(evidence, Evidence):
        return evidence
    if isinstance(evidence, BinaryCounts):
        return Evidence(counts=evidence)
    if isinstance(evidence, RecallComparison):
        return Evidence(comparison=evidence)
    if isinstance(evidence, Mapping):
        return Evidence.from_report(evidence)
    raise ConfigError(
        f"cannot judge a budget against {type(evidence).__name__}; pass an Evidence, "
        "BinaryCounts, RecallComparison or binary_report dict"
    )


@dataclass(frozen=True)
class Verdict:
    """The outcome of one budget for one variant (and one group value, for group budgets).

    ``value`` is the point estimate, ``bound`` the one-sided bound at ``confidence``, and
    ``limit`` the budget value; ``judged_on`` says which of value/bound was compared.
    """

    variant: str
    budget: str
    metric: str
    value: float
    bound: float
    limit: float
    passed: bool
    message: str
    kind: str = ""
    judged_on: str = "point"
    confidence: float = DEFAULT_CONFIDENCE
    group: str | None = None
    n_defective: int = 0

    @property
    def judged_value(self) -> float:
        return self.value if self.judged_on == "point" else self.bound

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _percent(confidence: float) -> str:
    return f"{confidence * 100:g}%"


def _measure(budget: Budget, source: BinaryCounts | RecallComparison) -> tuple[float, float, int]:
    """(point value, one-sided bound at the budget's confidence, n_defective)."""
    c = budget.confidence
    if budget.metric == "recall_drop":
        assert isinstance(source, RecallComparison)
        return source.drop, source.drop_upper_bound(c), source.n_defective
    assert isinstance(source, BinaryCounts)
    if budget.metric == "specificity":
        return source.specificity, source.specificity_lower_bound(c), source.n_defective
    if budget.metric == "fnr":
        return source.fnr, source.fnr_upper_bound(c), source.n_defective
    return source.recall, source.recall_lower_bound(c), source.n_defective


def _verdict(
    budget: Budget, variant: str, source: BinaryCounts | RecallComparison, group: str | None
) -> Verdict:
    label = budget.metric + (f"[{group}]" if group else "")
    common = {
        "variant": variant,
        "budget": budget.name,
        "metric": budget.metric,
        "limit": budget.value,
        "kind": budget.kind,
        "judged_on": budget.judged_on,
        "confidence": budget.confidence,
        "group": group,
    }
    # specificity is measured on the good items, every other metric on the defective ones
    population = "good" if budget.metric == "specificity" else "defective"
    n_items = source.n_good if population == "good" else source.n_defective
    if n_items == 0:
        # Only BinaryCounts can get here; failing is the safe reading of missing evidence.
        return Verdict(
            **common,
            value=math.nan,
            bound=math.nan,
            passed=False,
            n_defective=source.n_defective,
            message=(
                f"{variant}: {label} cannot be judged: no {population} items in the evidence; "
                f"evaluate on a set with {population} items [budget {budget.name!r}]"
            ),
        )
    value, bound, n_def = _measure(budget, source)
    judged = value if budget.judged_on == "point" else bound
    if budget.kind == "floor":
        passed = judged >= budget.value
        verb = "meets" if passed else "is below"
    else:
        passed = judged <= budget.value
        verb = "is within" if passed else "exceeds"
    pct = _percent(budget.confidence)
    on = "point estimate" if budget.judged_on == "point" else f"{pct} {budget.bound_side} bound"
    d = _digits(judged, budget.value)
    message = (
        f"{variant}: {label} {value:.{d}f} ({pct} {budget.bound_side} bound {bound:.{d}f}) "
        f"{verb} budget {budget.kind} {budget.value:.{d}f} "
        f"[budget {budget.name!r}, judged on the {on}, {n_items} {population}]"
    )
    if not passed and budget.judged_on != "point":
        message += _unreachable_note(budget, n_items, population)
    return Verdict(
        **common, value=value, bound=bound, passed=passed, n_defective=n_def, message=message
    )


def best_possible_bound(budget: Budget, n_items: int) -> float:
    """The bound a flawless result on ``n_items`` items would get: no miss (no false alarm for
    specificity), or, for a drop, an artifact agreeing with the reference on every item."""
    c = budget.confidence
    if budget.metric == "recall_drop":
        return drop_interval(0, 0, n_items, c, "upper")[1]
    if budget.kind == "floor":
        return clopper_pearson(n_items, n_items, c, "lower").lower
    return clopper_pearson(0, n_items, c, "upper").upper


def _unreachable_note(budget: Budget, n_items: int, population: str) -> str:
    """Why a bound budget fails whatever the model does, when it does: on a small group the
    bound of even a flawless result lies beyond the limit, which no retraining can fix. For a
    drop budget "flawless" is agreeing with the reference on every item (a 0.08 drop bound at
    95% then needs at least 32 defective items); a variant better than its reference can
    still pass below that, so the note says what agreement gets, not that nothing can pass."""
    best = best_possible_bound(budget, n_items)
    if not ((best < budget.value) if budget.kind == "floor" else (best > budget.value)):
        return ""
    advice = (
        "judge on more items, on a coarser group, or at a lower confidence, or set a "
        "limit the bound can reach"
    )
    if budget.metric == "recall_drop":
        # not "unreachable": a variant that catches defects its reference misses gets a lower
        # bound than agreement (3 new catches of 20 pass a 0.08 limit that agreement fails)
        return (
            f"; out of reach at {n_items} {population} for a variant that matches its "
            f"reference: agreeing on every item gives a bound of {best:.3f}, so only more new "
            f"catches than new misses can pass; {advice}"
        )
    return (
        f"; unreachable at {n_items} {population}: even a flawless result's bound is "
        f"{best:.3f}; {advice}"
    )


def _digits(judged: float, limit: float) -> int:
    """Decimals that show a judged value apart from its limit (3 unless they would print the
    same: 'bound 0.200 exceeds ceiling 0.200' for 0.2004 reads as a contradiction)."""
    digits = 3
    while digits < 8 and judged != limit and f"{judged:.{digits}f}" == f"{limit:.{digits}f}":
        digits += 1
    return digits


def _missing(budget: Budget, variant: str, what: str, fix: str) -> ConfigError:
    return ConfigError(
        f"{variant}: budget {budget.name!r} ({budget.metric}) needs {what} in the evidence; {fix}"
    )


def judge_each(budget: Budget, variant: str, evidence: EvidenceLike) -> list[Verdict]:
    """One verdict per group value for group budgets, else a single verdict.

    ConfigError if the evidence lacks what the budget needs (e.g. no comparison for a
    ``recall_drop`` budget): a missing measurement must never read as a pass.
    """
    ev = as_evidence(evidence)
    drop = budget.metric == "recall_drop"
    if budget.group is None:
        source = ev.comparison if drop else ev.counts
        if source is None:
            raise _missing(
                budget,
                variant,
                "a RecallComparison" if drop else "confusion counts",
                "compare against the reference with compare_recall"
                if drop
                else "pass binary_report(...) or BinaryCounts",
            )
        return [_verdict(budget, variant, source, None)]

    table = ev.group_comparisons if drop else ev.group_counts
    per_value = table.get(budget.group)
    if per_value is None:
        raise _missing(
            budget,
            variant,
            f"per-{budget.group} results",
            f"pass groups={{{budget.group!r}: ...}} to "
            + ("compare_recall_by_group" if drop else "binary_report"),
        )
    sources: dict[str, BinaryCounts | RecallComparison] = dict(per_value)
    if drop:
        # compare_recall_by_group leaves out values without defective items (no recall to
        # compare); judge them as recall budgets do, "cannot be judged", not by omission
        uncompared = []
        for key, counts in (ev.group_counts.get(budget.group) or {}).items():
            if key not in sources and counts.n_defective == 0:
                sources[key] = counts
            elif key not in sources:
                uncompared.append(f"{budget.group}={key!r} ({counts.n_defective} defective)")
        if uncompared:
            # skipping them would pass the budget on the values that happen to be compared
            raise _missing(
                budget,
                variant,
                f"a comparison for {', '.join(sorted(uncompared))}",
                "compute group_counts and group_comparisons over the same groups "
                "(compare_recall_by_group)",
            )
    if not sources:
        raise ConfigError(
            f"{variant}: budget {budget.name!r} ({budget.metric}) has per-{budget.group} "
            f"results, but no {budget.group} value with defective items to judge; evaluate on "
            "a set with defective items in each value"
        )
    return [
        _verdict(budget, variant, sources[key], f"{budget.group}={key}")
        for key in sorted(sources)
    ]


def _margin(v: Verdict) -> float:
    """How far inside the limit the judged value is; negative means failing, NaN worst."""
    if math.isnan(v.judged_value):
        return -math.inf
    return v.judged_value - v.limit if v.kind == "floor" else v.limit - v.judged_value


def judge(budget: Budget, variant: str, evidence: EvidenceLike) -> Verdict:
    """The verdict of ``budget`` for ``variant``.

    For a group budget this is the worst group value's verdict; it passes only if every
    measured value passes (a group without the metric, say without defective cells, is not
    judged), and its message lists the failing values.
    """
    verdicts = judge_each(budget, variant, evidence)
    if len(verdicts) == 1:
        return verdicts[0]
    # A group value with nothing to measure (no defective cells for a recall budget: ELPV's
    # severity 0 and 1 by definition) is listed, not failed; a budget none of whose values
    # can be measured still fails, since missing evidence must never read as a pass.
    measured = [v for v in verdicts if not math.isnan(v.value)] or verdicts
    unmeasured = [v.group.split("=", 1)[1] for v in verdicts if v not in measured]
    worst = min(measured, key=_margin)
    failing = [v.group.split("=", 1)[1] for v in measured if not v.passed]
    summary = (
        f"; {len(failing)} of {len(measured)} {budget.group} values fail: {', '.join(failing)}"
        if failing
        else f"; all {len(measured)} {budget.group} values pass"
    )
    if unmeasured:
        population = "good" if budget.metric == "specificity" else "defective"
        summary += f"; not judged (no {population} items): {', '.join(unmeasured)}"
    passed = all(v.passed for v in measured)
    return Verdict(**{**worst.to_dict(), "passed": passed, "message": worst.message + summary})


def judge_all(
    budgets: list[Budget],
    variant: str,
    evidence: EvidenceLike,
    operating_point: str | None = None,
) -> list[Verdict]:
    """Verdicts of every budget that applies to ``variant`` at ``operating_point``."""
    return [judge(b, variant, evidence) for b in budgets_for(budgets, variant, operating_point)]
