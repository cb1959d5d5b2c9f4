"""The fixed train / dev / val split of ELPV, committed under `fixtures/elpv/`.

`val` is the fixture every benchmark scores on; `dev` is for model selection, calibration and the
choice of decision threshold; `train` is for training. The split is made once by
`make_elpv_split` (stratified by severity x cell type, deterministic) and committed. Loading checks
the installed images and labels against the committed content hash and fails loudly on any
difference: a silent re-split would make every recall number incomparable with the last run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import numbers
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from defectbench.data.elpv import (
    DEFAULT_DEFECT_THRESHOLD,
    ELPV_LICENCE,
    SEVERITY_NAMES,
    load_elpv,
)
from defectbench.data.image_set import ImageSet
from defectbench.errors import ConfigError, DataError, FixtureMismatchError, UnknownNameError
from defectbench.io import atomic_write_many, expand_home

SPLITS = ("train", "dev", "val")
FIXTURE_VERSION = 1
DEFAULT_FRACTIONS = {"val": 0.25, "dev": 0.15}
DEFAULT_SEED = 20190101


def default_fixture_dir() -> Path:
    """`fixtures/elpv` of the source checkout (the project installs editable: `pip install -e
    .`), else a `fixtures/elpv` beside the package if one was copied there."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "fixtures" / "elpv", here.parent / "fixtures" / "elpv"):
        if (candidate / "fixture.json").is_file():
            return candidate
    return here.parents[2] / "fixtures" / "elpv"


def content_hash(images: ImageSet) -> str:
    """sha256 over ids, annotated probabilities, cell types and raw pixels, in id order."""
    h = hashlib.sha256()
    order = sorted(range(len(images)), key=lambda i: images.ids[i])
    probs = images.metadata["probability"]
    types = images.metadata["cell_type"]
    for i in order:
        pixels = np.ascontiguousarray(images.load(i))
        h.update(f"{images.ids[i]}|{float(probs[i]):.6f}|{types[i]}|{pixels.shape}|".encode())
        h.update(pixels.tobytes())
    return h.hexdigest()


def make_elpv_split(
    seed: int = DEFAULT_SEED, fractions: dict[str, float] | None = None
) -> dict[str, str]:
    """Assign every ELPV id to a split, stratified by severity x cell type.

    Stratifying on severity (not only on the binary label) keeps the split valid for any defect
    threshold and keeps the hard 1/3 and 2/3 cells in proportion in `val`.
    """
    if not isinstance(seed, numbers.Integral) or seed < 0:
        # numpy's generator takes only non-negative integer seeds
        raise ConfigError(f"split seed must be a non-negative integer, got {seed!r}")
    fractions = fractions or DEFAULT_FRACTIONS
    data = load_elpv()
    rng = np.random.default_rng(seed)
    strata: dict[tuple, list[str]] = {}
    for i, id_ in enumerate(data.ids):
        key = (int(data.metadata["severity"][i]), str(data.metadata["cell_type"][i]))
        strata.setdefault(key, []).append(id_)
    assignment: dict[str, str] = {}
    for key in sorted(strata):
        ids = sorted(strata[key])
        rng.shuffle(ids)
        n_val = round(len(ids) * fractions["val"])
        n_dev = round(len(ids) * fractions["dev"])
        for j, id_ in enumerate(ids):
            assignment[id_] = "val" if j < n_val else "dev" if j < n_val + n_dev else "train"
    return assignment


@dataclass(frozen=True)
class Fixture:
    """The committed split, verified against the installed data."""

    directory: Path
    content_sha256: str
    split_sha256: str
    assignment: dict[str, str]
    defect_threshold: float
    data: ImageSet

    def split(self, name: str) -> ImageSet:
        if name not in SPLITS:
            raise UnknownNameError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        index = [i for i, id_ in enumerate(self.data.ids) if self.assignment[id_] == name]
        return self.data.subset(index)

    def summary(self) -> dict:
        """Counts per split x label x cell type (and severity), plus the hashes."""
        rows = []
        for split in SPLITS:
            part = self.split(split)
            counts = Counter(
                (int(lbl), str(ct), SEVERITY_NAMES[int(sev)])
                for lbl, ct, sev in zip(
                    part.labels, part.metadata["cell_type"], part.metadata["severity"], strict=True
                )
            )
            for (label, cell_type, severity), n in sorted(counts.items()):
                rows.append(
                    {
                        "split": split,
                        "label": "defective" if label else "good",
                        "cell_type": cell_type,
                        "severity": severity,
                        "count": n,
                    }
                )
        totals = {s: int(len(self.split(s))) for s in SPLITS}
        defective = {s: int(self.split(s).labels.sum()) for s in SPLITS}
        return {
            "dataset": "elpv",
            "fixture_version": FIXTURE_VERSION,
            "defect_threshold": self.defect_threshold,
            "content_sha256": self.content_sha256,
            "split_sha256": self.split_sha256,
            "images": totals,
            "defective": defective,
            "rows": rows,
        }


def _split_csv_text(assignment: dict[str, str], data: ImageSet) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "split", "probability", "cell_type"])
    for i, id_ in enumerate(data.ids):
        writer.writerow(
            [
                id_,
                assignment[id_],
                f"{data.metadata['probability'][i]:.6f}",
                data.metadata["cell_type"][i],
            ]
        )
    return out.getvalue()


def write_elpv_fixture(directory: Path, seed: int = DEFAULT_SEED) -> dict:
    """Make the split, write `split.csv` + `fixture.json` (used once; the result is committed).

    Both files are staged before either replaces its old version: the hash in one file is of
    the other, so an interrupted `--force` must leave the old pair, not a new split beside the
    old hashes."""
    directory = Path(directory)
    for folder in (directory, *directory.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ConfigError(
                    f"cannot write the fixture into {directory}: {folder} is a file, not a "
                    "folder; pass --fixture-dir a folder (new or existing)"
                )
            break
    for path in (directory / "split.csv", directory / "fixture.json"):
        if path.exists() and not path.is_file():
            raise ConfigError(
                f"cannot write the fixture: {path} exists and is not a file; move it away or "
                "pass --fixture-dir another folder"
            )
    assignment = make_elpv_split(seed)  # first: it checks the seed before any slow work
    data = load_elpv()
    text = _split_csv_text(assignment, data)
    meta = {
        "dataset": "elpv",
        "fixture_version": FIXTURE_VERSION,
        "source": "elpv-dataset (PyPI), labels.csv + images/",
        "licence": ELPV_LICENCE,
        "seed": seed,
        "fractions": DEFAULT_FRACTIONS,
        "stratified_by": ["severity", "cell_type"],
        "content_sha256": content_hash(data),
        "split_sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
    atomic_write_many(
        {
            directory / "split.csv": text.encode(),
            directory / "fixture.json": (json.dumps(meta, indent=2) + "\n").encode(),
        }
    )
    return meta


def load_fixture(
    directory: Path | None = None, defect_threshold: float = DEFAULT_DEFECT_THRESHOLD
) -> Fixture:
    """Load the committed ELPV split and verify it against the installed data."""
    chosen = directory is not None and str(directory) != ""
    directory = expand_home(directory, "the fixture folder") if chosen else default_fixture_dir()
    # the project's own folder named explicitly (the suite and zoo pass it) keeps the git hint
    chosen = chosen and directory.resolve() != default_fixture_dir().resolve()
    meta_path, csv_path = directory / "fixture.json", directory / "split.csv"
    if chosen and not directory.is_dir():
        # a path the caller chose: restoring the project's own fixture from git fixes nothing
        state = "is a file, not a folder" if directory.exists() else "does not exist"
        raise DataError(
            f"fixture folder {directory} {state}; pass the folder holding fixture.json and "
            "split.csv (`--fixture-dir`, load_fixture(directory=...)), such as the project's "
            "fixtures/elpv or one written by `defectbench data make-fixture --fixture-dir`"
        )
    for path in (meta_path, csv_path):
        if path.exists() and not path.is_file():
            raise DataError(
                f"fixture file {path} is not a file; move it away and restore the fixture "
                "(from git for the project's fixtures/elpv)"
            )
        if not path.is_file():
            if chosen:
                raise DataError(
                    f"fixture file {path} is missing: {directory} holds no complete fixture; "
                    "pass the folder holding fixture.json and split.csv, or write one there "
                    "with `defectbench data make-fixture --fixture-dir`"
                )
            raise DataError(
                f"fixture file {path} is missing. In a clone of the project, restore it from git "
                f"(`git checkout -- fixtures/elpv`); the fixture is not part of a wheel, so "
                "install from a clone with `pip install -e .`, or pass load_fixture(directory=...)"
            )
    try:
        meta = json.loads(meta_path.read_bytes().decode("utf-8"))
        expected_content, expected_split = meta["content_sha256"], meta["split_sha256"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(
            f"fixture file {meta_path} is corrupt ({exc}); restore it from git"
        ) from exc
    if meta.get("fixture_version") != FIXTURE_VERSION:
        raise DataError(
            f"fixture file {meta_path} has fixture_version {meta.get('fixture_version')!r}; this "
            f"defectbench reads version {FIXTURE_VERSION}. Restore the fixture from git, or use "
            "the defectbench release it was made with"
        )
    raw = csv_path.read_bytes()
    actual_split = hashlib.sha256(raw).hexdigest()
    if actual_split != expected_split:
        raise FixtureMismatchError(
            f"{csv_path} was modified: sha256 {actual_split} but fixture.json records "
            f"{expected_split}; restore it from git, or regenerate both files deliberately with "
            "`defectbench data make-fixture` and review the diff"
        )
    rows = _read_split_rows(csv_path, raw)
    unknown = sorted({row["split"] for row in rows} - set(SPLITS))
    if unknown:
        # a row in an unknown split would be in no split at all: its image silently unscored
        raise FixtureMismatchError(
            f"{csv_path} assigns images to unknown split(s) {unknown}; every row's split must "
            f"be one of {', '.join(SPLITS)}. Restore the fixture from git"
        )
    data = load_elpv(defect_threshold)
    actual_content = content_hash(data)
    if actual_content != expected_content:
        raise FixtureMismatchError(
            f"installed ELPV data differs from the fixture in {directory}: content sha256 "
            f"{actual_content} but the fixture was made from {expected_content}. Reinstall "
            "the data (`pip install --force-reinstall elpv-dataset`; the fixture matches "
            "elpv-dataset 1.0.0.post1), or, if fixture.json was edited, restore it from git; "
            "the split is never redone silently"
        )
    _check_rows(csv_path, rows, data)
    assignment = {row["id"]: row["split"] for row in rows}
    return Fixture(directory, actual_content, actual_split, assignment, defect_threshold, data)


_CSV_COLUMNS = ("id", "split", "probability", "cell_type")


def _read_split_rows(csv_path: Path, raw: bytes) -> list[dict[str, str]]:
    """split.csv's rows as dicts, every row with exactly the header's columns.

    `csv.DictReader` alone would keep a row with a fifth field (its extra value under the key
    None) and fill a short row with None, which then read as a split called 'None'."""
    try:
        # utf-8-sig: a spreadsheet that re-saved the file put a byte-order mark before `id`
        reader = csv.reader(io.StringIO(raw.decode("utf-8-sig")))
        header = next(reader, None)
        numbered = [(reader.line_num, fields) for fields in reader if fields]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"fixture file {csv_path} is corrupt ({exc}); restore it from git") from exc
    if header != list(_CSV_COLUMNS):
        raise FixtureMismatchError(
            f"fixture file {csv_path} has columns {header}, not {list(_CSV_COLUMNS)}; "
            "restore it from git"
        )
    misshapen = [
        f"line {line} has {len(fields)} field(s): {','.join(fields)!r}"
        for line, fields in numbered
        if len(fields) != len(_CSV_COLUMNS)
    ]
    if misshapen:
        raise FixtureMismatchError(
            f"{csv_path} has {len(misshapen)} row(s) without exactly {len(_CSV_COLUMNS)} fields "
            f"({', '.join(_CSV_COLUMNS)}): {'; '.join(misshapen[:3])}"
            f"{'; ...' if len(misshapen) > 3 else ''}; restore the fixture from git"
        )
    return [dict(zip(_CSV_COLUMNS, fields, strict=True)) for _, fields in numbered]


def _check_rows(csv_path: Path, rows: list[dict[str, str]], data: ImageSet) -> None:
    """Every installed cell listed exactly once, with its installed label and cell type.

    The hash in fixture.json only says the file is the one committed: a hand edit that also
    updated the hash (a merge, a rebase) must still not list a cell twice (the last row would
    silently move it to another split) or under another label than the data's."""
    counts = Counter(row["id"] for row in rows)
    twice = sorted(id_ for id_, n in counts.items() if n > 1)
    known = set(data.ids)
    missing = [id_ for id_ in data.ids if id_ not in counts]
    extra = sorted(set(counts) - known)
    if twice or missing or extra:
        problems = [
            f"{len(items)} {what} ({', '.join(items[:3])}{', ...' if len(items) > 3 else ''})"
            for items, what in (
                (twice, "ids listed more than once"),
                (missing, "installed images not listed"),
                (extra, "ids not among the installed images"),
            )
            if items
        ]
        raise FixtureMismatchError(
            f"{csv_path} lists {len(rows)} rows for {len(data.ids)} installed images: "
            f"{'; '.join(problems)}; restore the fixture from git"
        )
    index = {id_: i for i, id_ in enumerate(data.ids)}
    differ = []
    for row in rows:
        i = index[row["id"]]
        installed = (f"{data.metadata['probability'][i]:.6f}", str(data.metadata["cell_type"][i]))
        if (row["probability"], row["cell_type"]) != installed:
            differ.append(
                f"{row['id']}: {row['probability']},{row['cell_type']} but the data says "
                f"{installed[0]},{installed[1]}"
            )
    if differ:
        raise FixtureMismatchError(
            f"{csv_path} disagrees with the installed labels for {len(differ)} cell(s) "
            f"({'; '.join(differ[:3])}); restore the fixture from git"
        )
