"""The `defectbench` command."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

from defectbench import __version__
from defectbench.errors import DefectbenchError
from defectbench.io import STORAGE_ERRNOS
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
    from defectbench.errors import ConfigError

    if args.json or args.defect_threshold != 0.5:
        raise ConfigError(
            "--json and --defect-threshold apply to `defectbench data summary`, not to "
            "make-fixture (the split is stratified by severity, so it holds for any threshold)"
        )
    directory = Path(args.fixture_dir) if args.fixture_dir else default_fixture_dir()
    existing = [p for p in (directory / "split.csv", directory / "fixture.json") if p.exists()]
    if existing and not args.force:
        raise ConfigError(
            f"{existing[0]} exists; regenerating it invalidates every result made on the old "
            "split. Pass --force to overwrite it, or --fixture-dir NEW_FOLDER to write elsewhere"
        )
    meta = write_elpv_fixture(directory, seed=args.seed)
    print(
        f"wrote {directory}/split.csv and fixture.json (content sha256 {meta['content_sha256']}); "
        "review the diff before committing: every result made on the old split is invalidated"
    )
    return 0


def _add_data_options(parser: argparse.ArgumentParser, *, after_action: bool) -> None:
    """The `data` options, accepted before and after the action word. After it they default to
    SUPPRESS, so an option given before the action (`data --json summary`) is not reset."""

    def default(value):
        return argparse.SUPPRESS if after_action else value

    parser.add_argument("--fixture-dir", type=Path, default=default(None),
                        help="default: fixtures/elpv")
    parser.add_argument("--defect-threshold", type=float, default=default(0.5),
                        help="defective when annotated probability >= this (default 0.5)")
    parser.add_argument("--json", action="store_true", default=default(False),
                        help="print the summary as JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="defectbench",
        description="Measure and enforce the speed / defect-recall trade-off of compressed "
        "defect classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="the fixed ELPV validation fixture")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(func=_cmd_data_summary)
    _add_data_options(data, after_action=False)
    summary = data_sub.add_parser(
        "summary", help="counts per split x label x cell type, and hashes"
    )
    summary.set_defaults(func=_cmd_data_summary)
    _add_data_options(summary, after_action=True)
    make = data_sub.add_parser("make-fixture", help="regenerate the split (invalidates results)")
    _add_data_options(make, after_action=True)
    make.add_argument("--seed", type=int, default=20190101)
    make.add_argument(
        "--force", action="store_true", help="overwrite an existing split.csv / fixture.json"
    )
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
    except BrokenPipeError:
        # `defectbench report ... | head -1`: the reader left; what was written is written.
        # Point stdout at devnull so that Python's flush at exit does not raise again
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (AttributeError, OSError, ValueError):  # stdout is no file (None, a StringIO)
            pass
        return 141  # as a shell reports a process ended by SIGPIPE
    except OSError as exc:
        if exc.errno not in STORAGE_ERRNOS:
            raise
        # a full disk or a folder one cannot write is the user's to fix, not a bug: the file
        # and the fix say more than a traceback through the writer
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            fix = ("free space on its disk (or, for the zoo, point --zoo or DEFECTBENCH_ZOO at "
                   "another)")
        elif exc.errno == errno.EIO:
            fix = "check the disk it is on (the system reports an I/O error)"
        else:
            fix = "fix its permissions, or choose a place you can write"
        print(f"defectbench: error: {exc.filename or 'a file'}: {exc.strerror}; {fix}, then run "
              "the command again: every file written is whole (writes are atomic), and a "
              "`zoo build` resumes where it stopped", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # every write is atomic, so a traceback would only hide what matters: nothing is
        # half-written, and a build picks up where it stopped
        print("defectbench: interrupted; every file written is whole. A `zoo build` run again "
              "resumes: finished variants and the last finished epoch are kept",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
