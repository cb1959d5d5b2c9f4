"""The `defectbench` command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from defectbench.errors import DefectbenchError
from defectbench.report.cli import add_report_command
from defectbench.zoo.cli import add_zoo_commands


def _cmd_data_summary(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from defectbench.data.fixture import load_fixture

    summary = load_fixture(args.fixture_dir, defect_threshold=args.defect_threshold).summary()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"ELPV fixture v{summary['fixture_version']}  (defective: probability >= "
        f"{summary['defect_threshold']})"
    )
    print(f"content sha256: {summary['content_sha256']}")
    print(f"split   sha256: {summary['split_sha256']}\n")
    print(tabulate(summary["rows"], headers="keys", tablefmt="github"))
    print()
    totals = [
        {"split": s, "images": summary["images"][s], "defective": summary["defective"][s]}
        for s in summary["images"]
    ]
    print(tabulate(totals, headers="keys", tablefmt="github"))
    return 0


def _cmd_data_make_fixture(args: argparse.Namespace) -> int:
    from defectbench.data.fixture import default_fixture_dir, write_elpv_fixture

    directory = Path(args.fixture_dir) if args.fixture_dir else default_fixture_dir()
    meta = write_elpv_fixture(directory, seed=args.seed)
    print(
        f"wrote {directory}/split.csv and fixture.json (content sha256 {meta['content_sha256']}); "
        "review the diff before committing: every result made on the old split is invalidated"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="defectbench",
        description="Measure and enforce the speed / defect-recall trade-off of compressed "
        "defect classifiers.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="the fixed ELPV validation fixture")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(func=_cmd_data_summary, fixture_dir=None, defect_threshold=0.5, json=False)
    summary = data_sub.add_parser(
        "summary", help="counts per split x label x cell type, and hashes"
    )
    summary.set_defaults(func=_cmd_data_summary)
    for p in (data, summary):
        p.add_argument("--fixture-dir", type=Path, default=None, help="default: fixtures/elpv")
        p.add_argument(
            "--defect-threshold",
            type=float,
            default=0.5,
            help="defective when annotated probability >= this (default 0.5)",
        )
        p.add_argument("--json", action="store_true", help="print the summary as JSON")
    make = data_sub.add_parser("make-fixture", help="regenerate the split (invalidates results)")
    make.add_argument("--fixture-dir", type=Path, default=None)
    make.add_argument("--seed", type=int, default=20190101)
    make.set_defaults(func=_cmd_data_make_fixture)

    add_zoo_commands(sub)
    add_report_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DefectbenchError as exc:
        print(f"defectbench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
