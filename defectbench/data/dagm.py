"""DAGM 2007 weakly supervised defect detection benchmark.

Wieler and Hahn, "Weakly Supervised Learning for Industrial Optical Inspection", DAGM 2007
competition. Ten synthetic textures (Class1..Class10), 512x512 8-bit grayscale PNG, each with a
Train and a Test folder; defective images have a coarse ellipse mask in Label/. Licence: free
for non-commercial research (see the dataset's page).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from defectbench.data import _files
from defectbench.data.image_set import ImageSet
from defectbench.errors import ConfigError, DataError

SPLIT_FOLDERS = {"train": "Train", "test": "Test"}
_CLASS_FOLDER = re.compile(r"^class(\d+)$", re.IGNORECASE)
_DEV_FOLDER = re.compile(r"^class(\d+)_def$", re.IGNORECASE)
_SPLIT_NAMES = {name.lower() for name in SPLIT_FOLDERS.values()}
_ROOT_EXPECTED = "the DAGM 2007 root folder holding Class1/ ... Class10/"
_ROW_FORMAT = "`<id> <0|1> <image file> <...> <label file>` after one header line"


def dagm_classes(root: str | os.PathLike[str]) -> dict[int, Path]:
    """Class index -> the folder holding its Train/ and Test/, sorted by index."""
    root = _files.dataset_root(root, _ROOT_EXPECTED)
    found: dict[int, Path] = {}
    strays: list[Path] = []
    for folder in _files.subdirs(root):
        match = _CLASS_FOLDER.match(folder.name)
        if match is None:
            # the development set's Class1_def/ folders are not part of the benchmark; any
            # other folder with images is a class whose name was mistyped (Clas2/, Class 3/)
            # (a class folder given as root holds Train/ and Test/: `_no_classes` says so)
            named_apart = _DEV_FOLDER.match(folder.name) or folder.name.lower() in _SPLIT_NAMES
            if not named_apart and _files.holds_images(folder):
                strays.append(folder)
            continue
        index = int(match[1])
        if index in found:
            raise DataError(
                f"{root} has two folders for DAGM class {index}: "
                f"{found[index].name}/ and {folder.name}/; keep one"
            )
        # Some redistributions unpack each class one level deeper: Class1/Class1/Train.
        nested = _files.find_subdir(folder, folder.name)
        has_splits = any(_files.find_subdir(folder, s) for s in SPLIT_FOLDERS.values())
        found[index] = nested if nested is not None and not has_splits else folder
    if strays and found:  # none found: `_no_classes` says where the classes may be
        raise DataError(
            f"{root} has folder(s) holding images that are not named Class<n> "
            f"({_files.listing([f.name + '/' for f in strays])}), which would not be read; name "
            "each DAGM class folder Class1 ... Class10, or move other folders out of the root "
            "(the development set's Class<n>_def/ folders are left out by name)"
        )
    return dict(sorted(found.items()))


def load_dagm(
    root: str | os.PathLike[str],
    class_index: int | None = None,
    *,
    check: _files.Check = "verify",
) -> ImageSet:
    """DAGM 2007, all classes or one, Train and Test together, binary labels (1 = defective).

    Layout of the published archives::

        root/Class1/Train/0001.PNG
        root/Class1/Train/Label/0002_label.PNG      (mask: only defective images have one)
        root/Class1/Train/Label/Labels.txt
        root/Class1/Test/...                        (same as Train)

    ``Labels.txt`` has a header line, then one row per image, whitespace separated:
    ``id  defective(0/1)  filename  ...  labelfile``. An image is defective iff its row says 1,
    or, for images without a row, iff ``Label/<stem>_label.PNG`` exists; a row that disagrees
    with the masks is an error. ``Class1/Class1/Train`` (one level deeper) is also accepted.
    Metadata: ``dagm_class`` (int) and ``split`` (``train`` / ``test``); select a split with
    ``subset(np.flatnonzero(s.metadata["split"] == "train"))``.
    """
    if class_index is not None and (
        isinstance(class_index, bool) or not isinstance(class_index, int)
    ):
        raise ConfigError(
            f"DAGM class_index must be an int such as 1 or None for all, got {class_index!r}"
        )
    _files.validate_check(check)
    root = _files.dataset_root(root, _ROOT_EXPECTED)
    classes = dagm_classes(root)
    if not classes:
        raise DataError(_no_classes(root))
    if class_index is not None:
        if class_index not in classes:
            raise DataError(
                f"DAGM class {class_index} not found in {root}; classes found: "
                f"{', '.join(str(i) for i in classes)}"
            )
        classes = {class_index: classes[class_index]}
    paths: list[Path] = []
    labels: list[int] = []
    class_of: list[int] = []
    split_of: list[str] = []
    for index, folder in classes.items():
        _files.reject_loose_images(folder, "only Train/ and Test/ in a DAGM class folder")
        split_dirs = []
        for split, name in SPLIT_FOLDERS.items():
            split_dir = _files.find_subdir(folder, name)
            if split_dir is None:
                raise DataError(
                    f"{folder} has no {name}/ folder; each DAGM 2007 class has Train/ and Test/; "
                    "re-extract the class archive"
                )
            files, defective = _split_labels(split_dir)
            paths += files
            labels += defective
            class_of += [index] * len(files)
            split_of += [split] * len(files)
            split_dirs.append(split_dir)
        _files.reject_nested_images(folder, "DAGM class folder", allowed=split_dirs)
    return _files.build_image_set(
        root,
        paths,
        labels,
        _files.BINARY_CLASS_NAMES,
        {"dagm_class": class_of, "split": split_of},
        check,
    )


def _split_labels(split_dir: Path) -> tuple[list[Path], list[int]]:
    files = _files.nonempty_image_files(split_dir, "DAGM split folder")
    label_dir = _files.find_subdir(split_dir, "Label")
    _files.reject_nested_images(
        split_dir, "DAGM split folder", allowed=[label_dir] if label_dir else []
    )
    if label_dir is None:
        # Without the masks every image would look defect-free: refuse rather than guess.
        raise DataError(
            f"{split_dir} has no Label/ folder; DAGM 2007 keeps the defect masks (*_label.PNG) and "
            "Labels.txt there and no image can be labelled without it; re-extract the class archive"
        )
    mask_names = {p.name.lower() for p in _files.image_files(label_dir)}
    mask_stems = {Path(name).stem for name in mask_names}
    table_path = _labels_txt(label_dir)
    if table_path is None and not mask_names:
        # an empty Label/ is as unusable as a missing one: every image would read defect-free
        raise DataError(
            f"{label_dir} holds neither Labels.txt nor any defect mask (*_label.PNG), so no "
            f"image in {split_dir} could be labelled defective; re-extract the class archive"
        )
    table = _read_labels_txt(table_path) if table_path is not None else {}
    # A mask no image claims is a defective image lost in extraction.
    claimed = {f"{p.stem.lower()}_label" for p in files} | {
        Path(mask).stem.lower() for _, mask, _ in table.values() if mask
    }
    orphans = sorted(mask_stems - claimed)
    if orphans:
        raise DataError(
            f"{label_dir} has {len(orphans)} defect mask(s) whose image is missing from "
            f"{split_dir}: {_files.listing(orphans)}; re-extract the class archive"
        )
    listed_missing = sorted(set(table) - {p.name.lower() for p in files})
    if listed_missing:
        raise DataError(
            f"{table_path} lists {len(listed_missing)} image(s) missing from {split_dir}: "
            f"{_files.listing(listed_missing)}; re-extract the class archive"
        )
    labels: list[int] = []
    conflicts: list[str] = []
    for path in files:
        has_mask = f"{path.stem.lower()}_label" in mask_stems
        row = table.get(path.name.lower())
        if row is None:
            labels.append(int(has_mask))
            continue
        defective, mask_name, line = row
        if defective and not (mask_name.lower() in mask_names if mask_name else has_mask):
            conflicts.append(
                f"line {line} marks {path.name} defective but Label/ has no "
                f"{mask_name or path.stem + '_label.PNG'}"
            )
        elif not defective and has_mask:
            conflicts.append(f"line {line} marks {path.name} defect-free but Label/ has its mask")
        labels.append(defective)
    if conflicts:
        raise DataError(
            f"{table_path} disagrees with the masks in {label_dir}: {_files.listing(conflicts)}; "
            "re-extract the class archive"
        )
    return files, labels


def _labels_txt(label_dir: Path) -> Path | None:
    """Label/Labels.txt in any case, or None; two spellings (an archive extracted twice) or
    a folder of that name are errors, since either could be the table meant."""
    found = sorted(p for p in label_dir.iterdir() if p.name.lower() == "labels.txt")
    if len(found) > 1:
        raise DataError(
            f"{label_dir} has {len(found)} label tables in different case "
            f"({', '.join(p.name for p in found)}); keep one"
        )
    if found and not found[0].is_file():
        raise DataError(
            f"{found[0]} is not a file; DAGM 2007 keeps the image labels in a text file there; "
            "re-extract the class archive"
        )
    return found[0] if found else None


def _read_labels_txt(path: Path) -> dict[str, tuple[int, str | None, int]]:
    """Image name (lower case) -> (defective, label file or None, line number)."""
    rows: dict[str, tuple[int, str | None, int]] = {}
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    # the published tables start with a header line; a table written without one starts with
    # a row, which skipping would drop (its image then labelled from the masks alone)
    first_is_row = bool(lines) and _is_row(lines[0].split())
    for number, line in enumerate(lines, start=1):
        if number == 1 and not first_is_row:
            continue
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 3 or fields[1] not in ("0", "1"):
            raise DataError(
                f"{path} line {number} is {line!r}; expected {_ROW_FORMAT} (DAGM 2007 format)"
            )
        name = fields[2].lower()
        if name in rows:
            raise DataError(f"{path} lists {fields[2]} twice (lines {rows[name][2]} and {number})")
        mask = fields[4] if len(fields) >= 5 and fields[4] != "0" else None
        rows[name] = (int(fields[1]), mask, number)
    return rows


def _is_row(fields: list[str]) -> bool:
    return (
        len(fields) >= 3
        and fields[1] in ("0", "1")
        and Path(fields[2]).suffix.lower() in _files.IMAGE_EXTENSIONS
    )


def _no_classes(root: Path) -> str:
    if any(_files.find_subdir(root, s) for s in SPLIT_FOLDERS.values()):
        return (
            f"{root} looks like a single DAGM class folder (it has Train/ or Test/); "
            "pass its parent folder as root and choose the class with class_index"
        )
    return f"no DAGM class folders (Class1/ ... Class10/) in {root}; expected {_ROOT_EXPECTED}"
