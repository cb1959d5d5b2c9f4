"""NEU surface defect database, classification set (NEU-CLS).

Song and Yan, "A noise robust method based on completed local binary patterns for hot-rolled
steel strip surface defects", Applied Surface Science 2013. 1,800 grayscale 200x200 BMP images
of hot-rolled steel, 300 per class, six defect classes and no defect-free class.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from defectbench.data import _files
from defectbench.data.image_set import ImageSet
from defectbench.errors import DataError

NEU_CLASSES = ("Cr", "In", "Pa", "PS", "RS", "Sc")
NEU_CLASS_NAMES = {
    "Cr": "crazing",
    "In": "inclusion",
    "Pa": "patches",
    "PS": "pitted surface",
    "RS": "rolled-in scale",
    "Sc": "scratches",
}
# Lower-cased folder or file-prefix spellings seen in the redistributions (NEU-DET's
# "rolled-in_scale_1.jpg", Kaggle's "Pitted/" folders) -> the published abbreviation.
_ALIASES = {
    **{code.lower(): code for code in NEU_CLASSES},
    **{name.replace(" ", "_"): code for code, name in NEU_CLASS_NAMES.items()},
    "pitted": "PS",
    "rolled": "RS",
}
_FLAT_NAME = re.compile(r"^(?P<prefix>.+)_(?P<number>\d+)$")
_LAYOUT = (
    "class folders Cr/ In/ Pa/ PS/ RS/ Sc/, or the original flat folder of files named "
    "<Class>_<n>.bmp (Cr_1.bmp ... Sc_300.bmp)"
)


def load_neu_cls(root: str | os.PathLike[str], *, check: _files.Check = "verify") -> ImageSet:
    """NEU-CLS as a six-class set: labels ``(N, 6)`` one-hot int8 over ``NEU_CLASSES``.

    Two layouts are accepted::

        root/Cr_1.bmp, root/In_1.bmp, ..., root/Sc_300.bmp    (as published: one flat folder)
        root/Cr/*.bmp, root/In/*.bmp, ..., root/Sc/*.bmp       (one folder per class)

    NEU-DET's ``IMAGES/`` folder (``crazing_1.jpg`` ...) is the flat layout with long names; its
    bounding boxes are not read. Class folders and file prefixes are matched ignoring case and
    may also use the long names (``crazing``, ``pitted_surface``, ``rolled-in_scale``...). All
    six classes must be present.
    Metadata ``defect_class`` holds the abbreviation. NEU has no defect-free class, so there is
    no binary view of it.
    """
    _files.validate_check(check)
    root = _files.dataset_root(root, f"the NEU-CLS folder with {_LAYOUT}")
    class_dirs = [d for d in _files.subdirs(root) if d.name.lower() in _ALIASES]
    loose = _files.image_files(root)
    if class_dirs and loose:
        raise DataError(
            f"{root} mixes class folders ({', '.join(d.name for d in class_dirs)}) with "
            f"{len(loose)} loose images; expected one layout: {_LAYOUT}"
        )
    if class_dirs:
        paths, codes = _folder_layout(root, class_dirs)
    elif loose:
        paths, codes = _flat_layout(root, loose)
    else:
        others = [d.name for d in _files.subdirs(root)]
        if any(name.lower() == "images" for name in others):
            hint = (
                "; this looks like NEU-DET: point root at its IMAGES/ folder (boxes are not read)"
            )
        elif others:
            hint = f"; found folders {', '.join(others)}: point root at the one holding the images"
        else:
            hint = ""
        raise DataError(f"no NEU-CLS images in {root}; expected {_LAYOUT}{hint}")
    _require_all_classes(root, codes)
    indices = [NEU_CLASSES.index(code) for code in codes]
    return _files.build_image_set(
        root,
        paths,
        _files.one_hot(indices, len(NEU_CLASSES)),
        NEU_CLASSES,
        {"defect_class": codes},
        check,
    )


def _folder_layout(root: Path, class_dirs: list[Path]) -> tuple[list[Path], list[str]]:
    by_code: dict[str, Path] = {}
    for folder in class_dirs:
        code = _ALIASES[folder.name.lower()]
        if code in by_code:
            raise DataError(
                f"{root} has two folders for NEU class {code}: {by_code[code].name}/ and "
                f"{folder.name}/; merge them into one"
            )
        by_code[code] = folder
    unknown = [d for d in _files.subdirs(root) if d not in class_dirs and _files.holds_images(d)]
    if unknown:
        raise DataError(
            f"{root} has image folders that are not NEU classes: "
            f"{', '.join(d.name for d in unknown)}; expected only {'/ '.join(NEU_CLASSES)}/; "
            "rename or remove them"
        )
    paths: list[Path] = []
    codes: list[str] = []
    for code in NEU_CLASSES:
        if code in by_code:
            folder = by_code[code]
            files = _files.nonempty_image_files(folder, f"NEU class {code} folder")
            _files.reject_nested_images(folder, f"NEU class {code} folder")
            _reject_foreign_names(folder, code, files)
            paths += files
            codes += [code] * len(files)
    return paths, codes


def _reject_foreign_names(folder: Path, code: str, files: list[Path]) -> None:
    """A file named after another class (Sc_7.bmp in Cr/) would take the folder's class: in
    the published sets name and folder always agree, so a disagreement is a bad merge."""
    foreign = [
        path
        for path in files
        if (match := _FLAT_NAME.match(path.stem))
        and _ALIASES.get(match["prefix"].lower(), code) != code
    ]
    if foreign:
        raise DataError(
            f"NEU class {code} folder {folder} holds {len(foreign)} file(s) named after another "
            f"class ({_files.listing(foreign)}); move each into its own class folder"
        )


def _flat_layout(root: Path, files: list[Path]) -> tuple[list[Path], list[str]]:
    nested = [d for d in _files.subdirs(root) if _files.holds_images(d)]
    if nested:
        raise DataError(
            f"{root} holds NEU images directly and in sub-folder(s) "
            f"({_files.listing(nested)}), which would not be read; expected one layout: {_LAYOUT}"
        )
    named: list[tuple[Path, str]] = []
    bad: list[Path] = []
    for path in files:
        match = _FLAT_NAME.match(path.stem)
        code = _ALIASES.get(match["prefix"].lower()) if match else None
        if code is None:
            bad.append(path)
        else:
            named.append((path, code))
    if bad:
        raise DataError(
            f"{len(bad)} file(s) in {root} are not named <Class>_<n> with Class one of "
            f"{', '.join(NEU_CLASSES)}: {_files.listing(bad)}; rename or remove them"
        )
    # Group by class in NEU_CLASSES order, keeping name order within a class.
    named.sort(key=lambda item: NEU_CLASSES.index(item[1]))
    return [path for path, _ in named], [code for _, code in named]


def _require_all_classes(root: Path, codes: list[str]) -> None:
    missing = [code for code in NEU_CLASSES if code not in set(codes)]
    if missing:
        raise DataError(
            f"NEU-CLS in {root} has no images of class {', '.join(missing)}; all six classes "
            f"({', '.join(NEU_CLASSES)}) are expected; re-extract the dataset"
        )
