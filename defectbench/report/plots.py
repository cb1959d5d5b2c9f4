"""Pareto plots of a :class:`Report`: recall vs latency p50 (log x) and recall vs size.

Latency panels are per (device, machine, batch) because latencies are only comparable there;
size panels are per (device, machine) with one point per model, since neither size nor recall
depends on the batch. Matplotlib is used through ``Figure`` objects and the Agg canvas, never
pyplot, so nothing global (backend, open figures) changes in the caller's process.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from defectbench.io import atomic_write_bytes
from defectbench.report.rows import Report, ReportRow, model_key

FORMATS = ("png", "svg")
STYLE = {  # passed -> (marker, colour, label)
    True: ("o", "tab:blue", "passes budgets"),
    False: ("x", "tab:red", "fails a budget"),
    None: ("s", "tab:gray", "not gated"),
}
# Fixed SVG ids and no dates, so regenerating an unchanged report gives an unchanged file.
RC = {"svg.hashsalt": "defectbench", "font.size": 7}


def _label(row: ReportRow) -> str:
    return f"{row.variant} {row.precision}" + (f" ({row.runtime})" if row.runtime else "")


def budget_levels(report: Report, device: str, machine: str) -> list[tuple[float, str, str]]:
    """(recall, label, linestyle) for each whole-set budget that maps to a recall level."""
    lines = []
    teacher = report.reference_recall.get((device, machine))
    for budget in report.budgets_at_operating_point():
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
            lines.append((1.0 - value, f"{name}: recall {1 - value:.2f}{suffix}", style))
        elif metric == "recall":
            lines.append((float(value), f"{name}: recall {value:.2f}{suffix}", style))
        elif metric == "recall_drop" and teacher is not None:
            lines.append((teacher - value, f"{name}: teacher - {value:g}{suffix}", style))
    return lines


def _draw_panel(ax: Axes, report: Report, rows: Sequence[ReportRow], front: Sequence[ReportRow],
                cost: Callable[[ReportRow], float | None], xlabel: str, log_x: bool) -> None:
    quality = [r for r in rows if r.has_quality and cost(r) is not None]
    for passed, (marker, colour, label) in STYLE.items():
        group = [r for r in quality if r.passed is passed]
        if not group:
            continue
        # clamped: a hand-edited or rounded interval that misses its point must not crash
        lo = [max(0.0, r.recall - r.recall_low) if r.recall_low is not None else 0.0
              for r in group]
        hi = [max(0.0, r.recall_high - r.recall) if r.recall_high is not None else 0.0
              for r in group]
        ax.errorbar([cost(r) for r in group], [r.recall for r in group], yerr=[lo, hi],
                    fmt=marker, color=colour, ms=4, lw=0.8, capsize=2, label=label)
    for r in quality:
        ax.annotate(_label(r), (cost(r), r.recall), fontsize=5, xytext=(3, 2),
                    textcoords="offset points")
    if front:
        ordered = sorted(front, key=lambda r: (cost(r), -r.recall))
        ax.plot([cost(r) for r in ordered], [r.recall for r in ordered], "-", color="black",
                lw=0.8, alpha=0.6, label="Pareto frontier")

    device, machine = rows[0].device, rows[0].machine
    teacher = report.reference_recall.get((device, machine))
    if teacher is not None:
        ax.axhline(teacher, color="tab:green", lw=0.6, alpha=0.7, label="teacher recall")
    for y, label, style in budget_levels(report, device, machine):
        ax.axhline(y, color="tab:orange", ls=style, lw=0.8, label=label)

    # latency-only models have no recall: a note on the x axis, never a point in recall space
    survey = [r for r in rows if r.latency_only and cost(r) is not None]
    if survey:
        on_axis = ax.get_xaxis_transform()
        ax.plot([cost(r) for r in survey], [0.02] * len(survey), "^", color="tab:purple", ms=4,
                transform=on_axis, label="latency only (no recall)")
        for r in survey:
            ax.text(cost(r), 0.06, _label(r), transform=on_axis, rotation=90, fontsize=4.5,
                    va="bottom", ha="center", color="tab:purple")

    xs = [cost(r) for r in rows if cost(r) is not None]
    if log_x and xs and min(xs) > 0:
        ax.set_xscale("log")
        # ticks at 1, 2, 5 x 10^k labelled 20, not 2 x 10^1; unlabelled minor ticks between
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("defect recall")
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    if not (quality or survey):
        ax.text(0.5, 0.5, "no points", transform=ax.transAxes, ha="center", va="center")


def _shared_legend(fig: Figure, axes: Sequence[Axes]) -> None:
    """One legend under the panels, so no panel loses points behind it."""
    handles: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                   ncols=min(3, len(handles)), fontsize=6, frameon=False)


def _grid(n: int) -> tuple[Figure, list[Axes]]:
    ncols = min(3, max(n, 1))
    nrows = math.ceil(max(n, 1) / ncols)
    fig = Figure(figsize=(3.6 * ncols, 3.0 * nrows + 0.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def _short(text: str, width: int = 36) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def latency_figure(report: Report) -> Figure:
    """Recall vs latency p50 (log x), one panel per (device, machine, batch)."""
    panels: dict[tuple[str, str, int], list[ReportRow]] = {}
    for row in report.rows:
        panels.setdefault(row.panel, []).append(row)
    front = {id(report.rows[i]) for i in report.latency_frontier()}
    fig, axes = _grid(len(panels))
    for ax, ((device, machine, batch), rows) in zip(axes, sorted(panels.items())):
        _draw_panel(ax, report, rows, [r for r in rows if id(r) in front],
                    lambda r: r.latency_p50_ms, "latency p50 per batch (ms, log)", log_x=True)
        ax.set_title(f"{device}, batch {batch}: {_short(machine)}", fontsize=7)
    _shared_legend(fig, axes)
    return fig


def size_figure(report: Report) -> Figure:
    """Recall vs model size, one panel per (device, machine), one point per model."""
    panels: dict[tuple[str, str], list[ReportRow]] = {}
    seen: set[tuple] = set()
    for row in report.rows:  # rows are sorted by batch within a device, so this keeps the smallest
        if model_key(row) in seen:
            continue
        seen.add(model_key(row))
        panels.setdefault((row.device, row.machine), []).append(row)
    front = {model_key(report.rows[i]) for i in report.size_frontier()}
    fig, axes = _grid(len(panels))
    for ax, ((device, machine), rows) in zip(axes, sorted(panels.items())):
        _draw_panel(ax, report, rows, [r for r in rows if model_key(r) in front],
                    lambda r: r.size_mb, "model size (MB)", log_x=False)
        ax.set_title(f"{device}: {_short(machine)}", fontsize=7)
    _shared_legend(fig, axes)
    return fig


def _save(fig: Figure, path_stem: Path) -> list[Path]:
    written = []
    for fmt in FORMATS:
        buffer = io.BytesIO()
        metadata = {"Date": None} if fmt == "svg" else None
        fig.savefig(buffer, format=fmt, metadata=metadata)
        path = path_stem.with_suffix(f".{fmt}")
        atomic_write_bytes(path, buffer.getvalue())
        written.append(path)
    return written


def write_plots(report: Report, out_dir: str | Path) -> list[Path]:
    """Write pareto_latency.{png,svg} and pareto_size.{png,svg}; returns their paths."""
    out = Path(out_dir)
    written: list[Path] = []
    with rc_context(RC):
        for stem, make in (("pareto_latency", latency_figure), ("pareto_size", size_figure)):
            written += _save(make(report), out / stem)
    return written
