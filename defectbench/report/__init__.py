"""Reports from benchmark JSON: Markdown/CSV tables, written findings, Pareto plots and a
citable summary.json.

``load_report(paths)`` reads and merges ``pytest benchmarks --benchmark-json`` files;
``write_report(paths, out_dir)`` writes everything ``defectbench report`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from defectbench.errors import ReportError
from defectbench.report.load import BenchmarkRun, check_same_fixture, read_run, read_runs
from defectbench.report.pareto import pareto_front
from defectbench.report.rows import (
    Report,
    ReportRow,
    choose_operating_point,
    load_report,
    merge_runs,
)
from defectbench.report.table import (
    summary_dict,
    table_csv,
    table_files,
    table_markdown,
    write_files,
    write_tables,
)

# what `plot_files` writes (named here so that --no-plots need not import matplotlib)
PLOT_FILES = tuple(f"pareto_{kind}.{ext}" for kind in ("latency", "size") for ext in ("png", "svg"))


def write_report(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    operating_point: str | None = None,
    plots: bool = True,
) -> tuple[Report, list[Path]]:
    """Merge ``paths`` and write table.md, table.csv, summary.json and the Pareto plots."""
    report = load_report(paths, operating_point)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file, not a directory; name a directory (it is "
                          "created if missing), e.g. --out report/")
    files = table_files(report)
    if plots:
        from defectbench.report.plots import plot_files  # matplotlib only when plotting

        files.update(plot_files(report))
    # everything is rendered before anything is written: a failed plot leaves the folder
    # as it was, not new tables beside an older run's plots
    written = write_files(files, out)
    if not plots:
        # plots of an earlier report in this folder would sit beside tables they do not show;
        # only the names a report writes: other files in the folder are the user's
        for stale in (out / name for name in PLOT_FILES):
            try:
                stale.unlink(missing_ok=True)
            except OSError as exc:
                raise ReportError(
                    f"--no-plots: wrote the tables but cannot remove {stale}, an earlier "
                    f"report's plot ({exc.strerror or exc}); remove it by hand"
                ) from exc
    return report, written


__all__ = [
    "BenchmarkRun",
    "Report",
    "ReportRow",
    "check_same_fixture",
    "choose_operating_point",
    "load_report",
    "merge_runs",
    "pareto_front",
    "read_run",
    "read_runs",
    "summary_dict",
    "table_csv",
    "table_markdown",
    "write_report",
    "write_tables",
]
