"""`defectbench report out.json [more.json ...] --out report/`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from defectbench.errors import DefectbenchError


def _out_dir(value: str) -> Path:
    """--out as a folder; an empty value (an unset shell variable) is refused: as a Path it
    would be the current folder, whose own table.md it would overwrite unasked."""
    if not value.strip():
        raise argparse.ArgumentTypeError(
            "empty; name the folder for the report, e.g. --out report/ (an unset shell "
            "variable in `--out \"$DIR\"` reads this way)")
    return Path(value)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path, metavar="JSON",
                        help="files written by `pytest benchmarks --benchmark-json out.json`; "
                        "several (e.g. a CPU and a GPU host) merge into one report")
    parser.add_argument("--out", type=_out_dir, default=Path("report"),
                        help="output folder for table.md, table.csv, summary.json and the "
                        "Pareto plots (default: report/)")
    parser.add_argument("--operating-point", default=None, metavar="NAME",
                        help="threshold whose recall is reported (default: the first gated one)")
    parser.add_argument("--no-plots", action="store_true",
                        help="write only the tables and summary.json")


def run_report_command(args: argparse.Namespace) -> int:
    """Write the report; DefectbenchError propagates to the caller's error handler."""
    from defectbench.report import write_report

    report, paths = write_report(args.inputs, args.out, operating_point=args.operating_point,
                                 plots=not args.no_plots)
    failing = sum(1 for r in report.rows if r.passed is False)
    rows = f"{len(report.rows)} row" + ("" if len(report.rows) == 1 else "s")
    print(f"{rows} at operating point {report.operating_point!r} "
          f"({failing} failing a budget) -> {args.out}/")
    for path in paths:
        print(f"  {path}")
    return 0


def add_report_command(subparsers) -> argparse.ArgumentParser:
    """Add the ``report`` sub-command to an ``add_subparsers()`` object; returns its parser."""
    parser = subparsers.add_parser(
        "report", help="tables, written findings, Pareto plots and CSV from benchmark JSON",
        description="Turn pytest-benchmark JSON from `pytest benchmarks --benchmark-json "
        "out.json` into table.md (opening with findings computed from the rows), table.csv, "
        "summary.json and recall/latency and recall/size Pareto plots (PNG and SVG).",
    )
    _add_arguments(parser)
    parser.set_defaults(func=run_report_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``defectbench report`` with ``argv`` (without the word ``report``)."""
    parser = argparse.ArgumentParser(prog="defectbench report")
    _add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_report_command(args)
    except DefectbenchError as exc:
        print(f"defectbench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
