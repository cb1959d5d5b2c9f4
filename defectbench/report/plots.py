"""Pareto plots of a :class:`Report`: recall vs latency p50 (log x) and recall vs size.

Latency panels are per (device, machine, batch) because latencies are only comparable there;
size panels are per (device, machine) with one point per model, since neither size nor recall
depends on the batch. Colour says the runtime, the marker the precision; only the Pareto
frontier and the FP32 reference carry a text label, so a 40-variant run stays readable (the
table has every number). Matplotlib is used through ``Figure`` objects and the Agg canvas,
never pyplot, so nothing global (backend, open figures) changes in the caller's process.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Annotation
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from matplotlib.transforms import Bbox

from defectbench.report.rows import Report, ReportRow, model_key
from defectbench.report.table import write_files

FORMATS = ("png", "svg")
# Fixed SVG ids and no dates, so regenerating an unchanged report gives an unchanged file.
RC = {"svg.hashsalt": "defectbench", "font.size": 8, "axes.titlesize": 9,
      "axes.labelsize": 8, "legend.fontsize": 7.5}
DPI = 120
FIG_WIDTH = 10.0  # inches: 1200 px at DPI, whatever the number of panels
LABEL_GID = "point-label"  # gid of every text label on a point, so tests can find them
LABEL_SIZE = 7.0
FRONTIER_GID = "pareto-frontier"
RING_PENALTY = 40.0  # px^2 of overlap a label may accept rather than move one ring further

RUNTIME_COLOURS = {"torch": "tab:blue", "torch_compile": "tab:purple",
                   "onnxruntime": "tab:brown"}
OTHER_COLOURS = ("tab:pink", "tab:olive", "tab:cyan", "tab:gray")
PRECISION_MARKERS = {"fp32": "o", "bf16": "s", "fp16": "D", "int8": "^", "int4": "v"}
OTHER_MARKERS = ("P", "h", "*", "p", "<", ">")
FAIL_COLOUR = "tab:red"
REFERENCE_COLOUR = "tab:green"
BUDGET_COLOUR = "tab:orange"
# one colour per budget line, so two lines of one style (two bound-judged budgets) are told
# apart in the plot and its legend
BUDGET_COLOURS = ("tab:orange", "tab:red", "tab:purple", "tab:brown", "tab:olive", "tab:cyan")
SURVEY_COLOUR = "0.25"
MARKER_SIZE = 5.5

# arch prefixes that add length but no information on these plots
_ARCH_SHORTHANDS = (
    (re.compile(r"^tf_"), ""),                      # tf_efficientnet_lite0 -> efficientnet_lite0
    (re.compile(r"^efficientnet_(?=lite)"), ""),    # efficientnet_lite0 -> lite0
    (re.compile(r"_patch\d+_\d+$"), ""),            # vit_tiny_patch16_224 -> vit_tiny
)
MAX_LINES_PER_LABEL = 4
# characters of a point label: a name of hundreds would cover its panel and its neighbours
LABEL_WIDTH = 40
MIN_TICK_GAP_PX = 40  # between labelled x ticks, enough for "1000" with room to spare


def short_variant(variant: str) -> str:
    """``tf_efficientnet_lite2.teacher.int8_ort`` -> ``lite2.teacher.int8_ort``."""
    arch, dot, recipe = variant.partition(".")
    short = arch
    for pattern, replacement in _ARCH_SHORTHANDS:
        short = pattern.sub(replacement, short)
    return (short or arch) + dot + recipe


def short_label(row: ReportRow) -> str:
    """Short variant name plus the precision unless the name already says it (``int8_ort``)."""
    name = short_variant(row.variant)
    recipe = row.variant.partition(".")[2]
    return name if row.precision in recipe else f"{name} {row.precision}"


def budget_levels(report: Report, device: str, machine: str,
                  source: str | None = None) -> list[tuple[float, str, str]]:
    """(recall, label, linestyle) for each whole-set budget that maps to a recall level; with
    ``source``, the budgets of that input file (the panel's rows were judged at them)."""
    lines = []
    teacher = report.reference_recall.get((device, machine))
    budgets = report.budgets_at_operating_point() if source is None else report.budgets_of(source)
    for budget in budgets:
        if budget.get("group"):
            continue  # per-group floors are not a line on the overall recall axis
        value = budget.get("value")
        if not isinstance(value, (int, float)):
            continue
        on_bound = budget.get("judged_on", "point") != "point"
        style = ":" if on_bound else "--"
        suffix = " (judged on bound)" if on_bound else ""
        name = budget.get("name")
        metric = budget.get("metric")
        if metric == "fnr":
            # :.4g: a ceiling of 0.205 is a line at 0.795, not a label reading 0.80
            lines.append((1.0 - value, f"{name}: recall {1 - value:.4g}{suffix}", style))
        elif metric == "recall":
            lines.append((float(value), f"{name}: recall {value:.4g}{suffix}", style))
        elif metric == "recall_drop" and teacher is not None:
            lines.append((teacher - value, f"{name}: teacher - {value:g}{suffix}", style))
    return lines


# --- styles ----------------------------------------------------------------------------------


def _pick(known: dict[str, str], others: Sequence[str], seen: Sequence[str], key: str) -> str:
    if key in known:
        return known[key]
    # unknown names get the spare styles in sorted order, so a given input always looks the same
    unknown = sorted({k for k in seen if k not in known})
    return others[unknown.index(key) % len(others)]


@dataclass
class _Legend:
    """What the panels of one figure drew, for one shared legend in a fixed order."""

    # every runtime and precision of the report, so a style does not depend on the panel
    all_runtimes: list[str]
    all_precisions: list[str]
    runtimes: set[str] = field(default_factory=set)
    precisions: set[str] = field(default_factory=set)
    failing: bool = False
    not_gated: bool = False
    frontier: bool = False
    reference: bool = False
    budgets: dict[str, tuple[str, str]] = field(default_factory=dict)  # label -> style, colour
    survey: bool = False

    def colour(self, runtime: str | None) -> str:
        return _pick(RUNTIME_COLOURS, OTHER_COLOURS, self.all_runtimes, runtime or "?")

    def marker(self, precision: str) -> str:
        return _pick(PRECISION_MARKERS, OTHER_MARKERS, self.all_precisions, precision)

    @classmethod
    def of(cls, report: Report) -> _Legend:
        return cls(sorted({r.runtime or "?" for r in report.rows}),
                   sorted({r.precision for r in report.rows}))

    def handles(self) -> tuple[list[Line2D], list[str]]:
        items: list[tuple[Line2D, str]] = []
        known_rt = [r for r in RUNTIME_COLOURS if r in self.runtimes]
        for runtime in known_rt + sorted(self.runtimes - set(known_rt)):
            items.append((Line2D([], [], ls="", marker="s", ms=6, color=self.colour(runtime)),
                          runtime if runtime != "?" else "runtime not recorded"))
        known_p = [p for p in PRECISION_MARKERS if p in self.precisions]
        for precision in known_p + sorted(self.precisions - set(known_p)):
            items.append((Line2D([], [], ls="", marker=self.marker(precision), ms=MARKER_SIZE,
                                 color="0.35"), precision))
        if self.not_gated:
            items.append((Line2D([], [], ls="", marker="o", ms=MARKER_SIZE, mfc="white",
                                 color="0.35"), "not gated (hollow)"))
        if self.failing:
            items.append((Line2D([], [], ls="", marker="x", ms=8, mew=1.5, color=FAIL_COLOUR),
                          "fails a budget"))
        if self.frontier:
            items.append((Line2D([], [], color="black", lw=1.0, alpha=0.6), "Pareto frontier"))
        if self.reference:
            items.append((Line2D([], [], color=REFERENCE_COLOUR, lw=0.8),
                          "FP32 reference recall"))
        for label, (style, colour) in self.budgets.items():
            items.append((Line2D([], [], color=colour, ls=style, lw=0.9), label))
        if self.survey:
            items.append((Line2D([], [], ls="", marker="^", ms=MARKER_SIZE, color=SURVEY_COLOUR),
                          "latency only (no recall)"))
        return [h for h, _ in items], [label for _, label in items]


# --- one panel -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PointLabel:
    x: float
    y: float
    text: str


def _labels(labelled: Sequence[ReportRow], reference: str | None,
            cost: Callable[[ReportRow], float | None]) -> list[_PointLabel]:
    """One label per position: variants with identical cost and recall share a label."""
    by_xy: dict[tuple[float, float], list[str]] = {}
    for row in labelled:
        text = _short_middle(short_label(row), LABEL_WIDTH)
        if row.variant == reference and row.precision == "fp32":
            text += " (reference)"
        by_xy.setdefault((cost(row), row.recall), []).append(text)
    return [_PointLabel(x, y, _shared_label(texts)) for (x, y), texts in sorted(by_xy.items())]


def _shared_label(texts: Sequence[str]) -> str:
    """One label for variants on the same point (calibration variants often tie exactly)."""
    texts = sorted(set(texts), key=lambda t: (len(t), t))
    if len(texts) == 1:
        return texts[0]
    head = texts[0]
    # "lite0.kd.int8_ort" + ".cal1": name the others by what they add to the shortest one
    if all(t.startswith(head) and t[len(head)] in "._ " for t in texts[1:]):
        return f"{head}\n(same point: {', '.join(t[len(head):].strip() for t in texts[1:])})"
    if len(texts) > MAX_LINES_PER_LABEL:
        extra = len(texts) - MAX_LINES_PER_LABEL + 1
        texts = texts[: MAX_LINES_PER_LABEL - 1] + [f"+{extra} more at this point"]
    return "\n".join(texts)


def _draw_points(ax: Axes, quality: Sequence[ReportRow], cost: Callable, legend: _Legend) -> None:
    # error bars first and faint: the recall interval matters, but 40 of them must not hide points
    for runtime in sorted({r.runtime or "?" for r in quality}):
        group = [r for r in quality if (r.runtime or "?") == runtime]
        # clamped: a hand-edited or rounded interval that misses its point must not crash
        lo = [max(0.0, r.recall - r.recall_low) if r.recall_low is not None else 0.0
              for r in group]
        hi = [max(0.0, r.recall_high - r.recall) if r.recall_high is not None else 0.0
              for r in group]
        ax.errorbar([cost(r) for r in group], [r.recall for r in group], yerr=[lo, hi],
                    fmt="none", ecolor=legend.colour(runtime), elinewidth=0.7, alpha=0.3,
                    capsize=0, zorder=2)
    styles: dict[tuple[str, str, bool], list[ReportRow]] = {}
    for r in quality:
        styles.setdefault((r.runtime or "?", r.precision, r.passed is None), []).append(r)
    for (runtime, precision, hollow), group in sorted(styles.items()):
        colour = legend.colour(runtime)
        ax.plot([cost(r) for r in group], [r.recall for r in group], ls="",
                marker=legend.marker(precision), ms=MARKER_SIZE, color=colour, mec=colour,
                mfc="white" if hollow else colour, mew=0.8, alpha=0.9, zorder=3)
    failing = [r for r in quality if r.passed is False]
    if failing:
        ax.plot([cost(r) for r in failing], [r.recall for r in failing], ls="", marker="x",
                ms=8, mew=1.5, color=FAIL_COLOUR, zorder=4)


def _log_subs(lo: float, hi: float, width_px: float) -> tuple[float, ...]:
    """Labelled ticks per decade: the densest of 1..9, 1-2-5, 1-3, 1 whose labels do not meet."""
    per_decade = width_px / math.log10(hi / lo)
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    every = tuple(float(s) for s in range(1, 10))
    for subs in (every, (1.0, 2.0, 5.0), (1.0, 3.0), (1.0,)):
        ticks = [s * 10.0**d for d in decades for s in subs if lo <= s * 10.0**d <= hi]
        gaps = [math.log10(b / a) * per_decade for a, b in pairwise(ticks)]
        if gaps and min(gaps) >= MIN_TICK_GAP_PX:
            return subs
    # under two ticks in range: with several subs LogLocator falls back to linear ticks
    return every


def _set_log_x(ax: Axes, xs: Sequence[float]) -> None:
    lo, hi = min(xs), max(xs)
    span = math.log10(hi / lo)
    pad = max(0.06 * span, 0.12)  # decades each side, so edge points and labels fit
    ax.set_xscale("log")
    ax.set_xlim(lo / 10**pad, hi * 10**pad)
    # the layout shrinks the axes a little later; the gap has the slack for that
    fig = ax.get_figure()
    width_px = ax.get_position().width * fig.get_figwidth() * fig.dpi
    subs = _log_subs(lo / 10**pad, hi * 10**pad, width_px)
    # numticks high enough that LogLocator never strides over decades: with a stride it would
    # drop the 2 and 5 (or 3) ticks altogether
    ax.xaxis.set_major_locator(LogLocator(base=10.0, subs=subs, numticks=30))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(LogLocator(base=10.0, subs=np.arange(2.0, 10.0), numticks=30))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _interval_label(rows: Sequence[ReportRow]) -> str:
    """The confidence of the error bars: the rows' own (the budgets' shared one), not 95%."""
    levels = sorted({r.interval_confidence for r in rows if r.interval_confidence is not None})
    return " or ".join(f"{c * 100:g}%" for c in levels) or "95%"


def _draw_panel(ax: Axes, report: Report, rows: Sequence[ReportRow], front: Sequence[ReportRow],
                cost: Callable[[ReportRow], float | None], xlabel: str, log_x: bool,
                legend: _Legend) -> list[_PointLabel]:
    """Draw one panel; returns the labels to place once the figure layout is final."""
    quality = [r for r in rows if r.has_quality and cost(r) is not None]
    legend.runtimes.update(r.runtime or "?" for r in quality)
    legend.precisions.update(r.precision for r in quality)
    legend.failing |= any(r.passed is False for r in quality)
    legend.not_gated |= any(r.passed is None for r in quality)
    _draw_points(ax, quality, cost, legend)

    if front:
        ordered = sorted(front, key=lambda r: (cost(r), -r.recall))
        ax.plot([cost(r) for r in ordered], [r.recall for r in ordered], "-", color="black",
                lw=1.0, alpha=0.6, zorder=1, gid=FRONTIER_GID)
        legend.frontier = True

    device, machine = rows[0].device, rows[0].machine
    teacher = report.reference_recall.get((device, machine))
    if teacher is not None:
        ax.axhline(teacher, color=REFERENCE_COLOUR, lw=0.8, alpha=0.8, zorder=1)
        legend.reference = True
    names = [b.get("name") for b in report.budgets_at_operating_point()]
    for y, label, style in budget_levels(report, device, machine, rows[0].source):
        name = label.split(":", 1)[0]
        colour = BUDGET_COLOURS[names.index(name) % len(BUDGET_COLOURS)] if name in names \
            else BUDGET_COLOUR
        ax.axhline(y, color=colour, ls=style, lw=0.9, zorder=1)
        legend.budgets.setdefault(label, (style, colour))

    # latency-only models have no recall: a mark on the x axis, never a point in recall space
    survey = [r for r in rows if r.latency_only and cost(r) is not None]
    if survey:
        ax.plot([cost(r) for r in survey], [0.02] * len(survey), ls="", marker="^",
                color=SURVEY_COLOUR, ms=MARKER_SIZE, transform=ax.get_xaxis_transform(),
                zorder=3)
        legend.survey = True

    xs = [cost(r) for r in quality + survey]
    if log_x and xs and min(xs) > 0:
        _set_log_x(ax, xs)
    elif xs:
        ax.set_xlim(0.0, max(xs) * 1.08 or 1.0)
    ax.set_xlabel(xlabel)
    # the bars are the two-sided interval on recall alone; a budget judged on a bound uses its
    # own (one-sided FNR, paired drop), so a bar may cross that budget's line and still pass
    ax.set_ylabel(f"defect recall (bars: two-sided {_interval_label(quality)} interval;\n"
                  "bound-judged budgets use their own bound, see the table)")
    ax.grid(True, which="major", lw=0.4, alpha=0.5)
    ax.grid(True, which="minor", axis="x", lw=0.3, alpha=0.15)
    if not (quality or survey):
        ax.text(0.5, 0.5, "no points", transform=ax.transAxes, ha="center", va="center")

    on_front = {id(r) for r in front}
    labelled = [r for r in quality if id(r) in on_front
                or (r.variant == report.reference and r.precision == "fp32")]
    return _labels(labelled, report.reference, cost)


# --- label placement -------------------------------------------------------------------------


def _candidates() -> list[tuple[int, float, float, str, str]]:
    """(ring, offset x and y in points, alignments) to try, nearest ring first."""
    out = []
    for ring in range(5):
        dy = 4.0 + 11.0 * ring
        for sign in (1, -1):
            va = "bottom" if sign > 0 else "top"
            out += [(ring, 6.0, sign * dy, "left", va), (ring, -6.0, sign * dy, "right", va)]
            if ring:
                out.append((ring, 0.0, sign * dy, "center", va))
    return out


def _overlap(a: Bbox, b: Bbox) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _outside(box: Bbox, frame: Bbox) -> float:
    return box.width * box.height - _overlap(box, frame)


def _place_labels(fig: Figure, panels: Sequence[tuple[Axes, list[_PointLabel]]]) -> None:
    """Greedy placement: each label takes the nearest offset that covers no label, point or edge
    (or, where every offset does, the one that covers least).

    Runs once the layout is final, on measured text extents, so it is exact for this figure and
    deterministic. Labels stay out of the constrained layout so placing them moves nothing.
    """
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    radius = MARKER_SIZE / 2 * fig.dpi / 72
    for ax, labels in panels:
        frame = ax.get_window_extent(renderer)
        points = [_square(x, y, radius) for line in ax.lines
                  if line.get_marker() not in (None, "None", "")
                  for x, y in line.get_transform().transform(line.get_xydata())]
        frontier = [box for line in ax.lines if line.get_gid() == FRONTIER_GID
                    for box in _along(line.get_transform().transform(line.get_xydata()),
                                      radius / 2)]
        taken: list[Bbox] = []  # placed labels and their leader lines
        for label in labels:
            anchor = ax.transData.transform((label.x, label.y))
            best: tuple[float, tuple, list[Bbox]] | None = None
            for option in _candidates():
                ring, dx, dy, ha, va = option
                if best is not None and ring * RING_PENALTY >= best[0]:
                    break  # candidates only get further away from here
                probe = _annotate(ax, label, dx, dy, ha, va)
                box = probe.get_window_extent(renderer).padded(2)
                probe.remove()
                leader = _along([anchor, _nearest(box, anchor)], 1.0) if _has_leader(dy) else []
                # areas in px^2: covering a label or leaving the axes is worst, crossing the
                # frontier line is a small matter, and so is a label a ring further out
                cost = (10 * sum(_overlap(b, other) for b in [box, *leader] for other in taken)
                        + 10 * _outside(box, frame)
                        + sum(_overlap(box, p) for p in points)
                        + 0.25 * sum(_overlap(box, f) for f in frontier)
                        + ring * RING_PENALTY)
                if best is None or cost < best[0]:
                    best = (cost, option, [box, *leader])
            _, (_, dx, dy, ha, va), boxes = best
            _annotate(ax, label, dx, dy, ha, va, leader=_has_leader(dy))
            taken += boxes


def _has_leader(dy: float) -> bool:
    return abs(dy) > 5  # a label a ring or more away from its point needs a line to it


def _square(x: float, y: float, half: float) -> Bbox:
    return Bbox.from_extents(x - half, y - half, x + half, y + half)


def _nearest(box: Bbox, xy: Sequence[float]) -> tuple[float, float]:
    return (min(max(xy[0], box.x0), box.x1), min(max(xy[1], box.y0), box.y1))


def _along(xy: Sequence[Sequence[float]], half: float) -> list[Bbox]:
    """Small squares every few pixels along a polyline (pixels), so labels avoid crossing it."""
    boxes = []
    for (x0, y0), (x1, y1) in pairwise(xy):
        steps = max(1, int(math.hypot(x1 - x0, y1 - y0) / (2 * half)))
        boxes += [_square(x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps, half)
                  for k in range(steps + 1)]
    return boxes


def _annotate(ax: Axes, label: _PointLabel, dx: float, dy: float, ha: str, va: str,
              leader: bool = False) -> Annotation:
    arrow = dict(arrowstyle="-", color="0.4", lw=0.5, shrinkA=0, shrinkB=3) if leader else None
    ann = ax.annotate(label.text, (label.x, label.y), xytext=(dx, dy),
                      textcoords="offset points", ha=ha, va=va, fontsize=LABEL_SIZE,
                      linespacing=1.1, zorder=5, arrowprops=arrow,
                      bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    ann.set_gid(LABEL_GID)
    ann.set_in_layout(False)
    return ann


# --- figures ---------------------------------------------------------------------------------


def _grid(n: int) -> tuple[Figure, list[Axes]]:
    ncols = 1 if n <= 1 else 2
    nrows = math.ceil(max(n, 1) / ncols)
    fig = Figure(figsize=(FIG_WIDTH, 1.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def _finish(fig: Figure, axes: Sequence[Axes], n: int, legend: _Legend, title: str,
            labels: Sequence[tuple[Axes, list[_PointLabel]]]) -> Figure:
    """Shared legend under the panels (so no panel loses points behind it), size, labels."""
    handles, names = legend.handles()
    legend_rows = 0
    if handles:
        ncols = _legend_columns(fig, handles, names)
        fig.legend(handles, names, loc="outside lower center", ncols=ncols, frameon=False)
        legend_rows = math.ceil(len(handles) / ncols)
    fig.suptitle(title, fontsize=10)
    nrows = math.ceil(len(axes) / (1 if n <= 1 else 2))
    panel_height = 5.0 if n <= 1 else 4.2
    fig.set_size_inches(FIG_WIDTH, nrows * panel_height + 0.4 + 0.22 * legend_rows)
    _place_labels(fig, labels)
    return fig


def _legend_columns(fig: Figure, handles: Sequence[Line2D], names: Sequence[str]) -> int:
    """The most legend columns (up to 6) whose measured width fits the figure."""
    renderer = fig.canvas.get_renderer()
    for ncols in range(min(6, len(handles)), 1, -1):
        probe = fig.legend(handles, names, ncols=ncols, frameon=False)
        width = probe.get_window_extent(renderer).width
        probe.remove()
        if width <= 0.97 * fig.get_figwidth() * fig.dpi:
            return ncols
    return 1


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _short_middle(text: str, width: int) -> str:
    """``text`` cut in the middle to ``width``: a variant's recipe suffix (``.int8_ort.cal1``)
    is what tells it from its neighbours, so both ends stay."""
    if len(text) <= width:
        return text
    tail = (width - 3) // 2
    return text[: width - 3 - tail] + "..." + text[-tail:]


def latency_figure(report: Report) -> Figure:
    """Recall vs latency p50 (log x), one panel per (device, machine, batch)."""
    with rc_context(RC):
        panels: dict[tuple[str, str, int], list[ReportRow]] = {}
        for row in report.rows:
            panels.setdefault(row.panel, []).append(row)
        front = {id(report.rows[i]) for i in report.latency_frontier()}
        fig, axes = _grid(len(panels))
        legend = _Legend.of(report)
        labels = []
        for ax, ((device, machine, batch), rows) in zip(axes, sorted(panels.items()), strict=False):
            labels.append((ax, _draw_panel(
                ax, report, rows, [r for r in rows if id(r) in front],
                lambda r: r.latency_p50_ms, "latency p50 per batch (ms, log scale)",
                log_x=True, legend=legend)))
            ax.set_title(f"{device}, batch {batch}: {_short(machine)}")
        return _finish(fig, axes, len(panels), legend,
                       f"Defect recall vs latency at operating point {report.operating_point}",
                       labels)


def size_figure(report: Report) -> Figure:
    """Recall vs model size, one panel per (device, machine), one point per model."""
    with rc_context(RC):
        panels: dict[tuple[str, str], list[ReportRow]] = {}
        seen: set[tuple] = set()
        for row in report.rows:  # rows are sorted by batch within a device: keeps the smallest
            if model_key(row) in seen:
                continue
            seen.add(model_key(row))
            panels.setdefault((row.device, row.machine), []).append(row)
        front = {model_key(report.rows[i]) for i in report.size_frontier()}
        fig, axes = _grid(len(panels))
        legend = _Legend.of(report)
        labels = []
        for ax, ((device, machine), rows) in zip(axes, sorted(panels.items()), strict=False):
            labels.append((ax, _draw_panel(
                ax, report, rows, [r for r in rows if model_key(r) in front],
                lambda r: r.size_mb, "model size (MiB)", log_x=False, legend=legend)))
            ax.set_title(f"{device}: {_short(machine)}")
        return _finish(fig, axes, len(panels), legend,
                       f"Defect recall vs model size at operating point {report.operating_point}",
                       labels)


def point_labels(fig: Figure) -> list[list[str]]:
    """The text labels on the points of each panel, in drawing order."""
    return [[t.get_text() for t in ax.texts if t.get_gid() == LABEL_GID]
            for ax in fig.axes if ax.get_visible()]


def _rendered(fig: Figure, stem: str) -> dict[str, bytes]:
    files = {}
    for fmt in FORMATS:
        buffer = io.BytesIO()
        metadata = {"Date": None} if fmt == "svg" else None
        fig.savefig(buffer, format=fmt, metadata=metadata)
        files[f"{stem}.{fmt}"] = buffer.getvalue()
    return files


def plot_files(report: Report) -> dict[str, bytes]:
    """The contents of pareto_latency.{png,svg} and pareto_size.{png,svg}, by file name."""
    files: dict[str, bytes] = {}
    with rc_context(RC):
        for stem, make in (("pareto_latency", latency_figure), ("pareto_size", size_figure)):
            files.update(_rendered(make(report), stem))
    return files


def write_plots(report: Report, out_dir: str | Path) -> list[Path]:
    """Write pareto_latency.{png,svg} and pareto_size.{png,svg}; returns their paths."""
    return write_files(plot_files(report), out_dir)
