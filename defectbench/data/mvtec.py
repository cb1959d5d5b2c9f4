"""MVTec AD, read from the folder tree the dataset is published in.

Bergmann et al., "MVTec AD - A Comprehensive Real-World Dataset for Unsupervised Anomaly
Detection", CVPR 2019. 15 categories (bottle, cable, capsule, carpet, grid, hazelnut, leather,
metal_nut, pill, screw, tile, toothbrush, transistor, wood, zipper); defect-free training images
only, a test set with good and defective images. Licence CC BY-NC-SA 4.0.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from defectbench.data import _files
from defectbench.data.image_set import ImageSet
from defectbench.errors import ConfigError, DataError

SPLITS = ("train", "test")
GOOD = "good"
_MASK_SUFFIX = "_mask"
_ROOT_EXPECTED = "the MVTec AD root folder holding one folder per category (bottle/, cable/, ...)"


def mvtec_categories(root: str | os.PathLike[str]) -> list[str]:
    """Category folders under `root` (those with a train/ or test/ folder), sorted."""
    root = _files.dataset_root(root, _ROOT_EXPECTED)
    return [
        d.name for d in _files.subdirs(root)
        if any(_files.find_subdir(d, split) is not None for split in SPLITS)
    ]


def load_mvtec_ad(
    root: str | os.PathLike[str],
    category: str,
    split: str = "test",
    *,
    check: _files.Check = "verify",
) -> ImageSet:
    """One MVTec AD category and split, with binary labels (1 = defective).

    Layout, as unpacked from ``mvtec_anomaly_detection.tar.xz``::

        root/<category>/train/good/000.png
        root/<category>/test/good/000.png
        root/<category>/test/<defect_type>/000.png
        root/<category>/ground_truth/<defect_type>/000_mask.png   (not read: labels are per image)

    An image is defective when its folder is not ``good``. Metadata ``defect_type`` is the folder
    name (``good`` included). Ids are paths relative to ``root``, e.g.
    ``bottle/test/broken_large/000.png``.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown MVTec AD split {split!r}; choose one of {', '.join(SPLITS)}")
    _files.validate_check(check)
    root = _files.dataset_root(root, _ROOT_EXPECTED)
    categories = mvtec_categories(root)
    if category not in categories:
        raise DataError(_unknown_category(root, category, categories))
    split_dir = _files.require_dir(
        _files.find_subdir(root / category, split) or root / category / split,
        f"MVTec AD's {split}/ folder with good/"
        + (" and one folder per defect type" if split == "test" else ""),
    )
    _files.reject_loose_images(split_dir, "one folder per defect type (good/, <defect_type>/)")
    type_dirs = _files.subdirs(split_dir)
    _files.reject_case_twins(type_dirs, "defect-type folders")
    type_names = [d.name for d in type_dirs]
    if GOOD not in (name.lower() for name in type_names):
        raise DataError(
            f"{split_dir} has no good/ folder (found: {', '.join(type_names) or 'none'}); MVTec AD "
            f"keeps the defect-free {split} images in {split}/good/; re-extract the category"
        )
    # `good - Copy/` or `good_old/` beside good/ would be read as a defect type: every
    # defect-free image in it labelled defective
    good_like = [n for n in type_names if n.lower() != GOOD and _normalised(n).startswith(GOOD)]
    if good_like:
        raise DataError(
            f"{split_dir} has folder(s) named like good/ but not good/ "
            f"({', '.join(n + '/' for n in good_like)}), which would be read as defect types and "
            "their images labelled defective; merge them into good/, or rename them after the "
            "defect they hold"
        )
    paths, labels, defect_types = [], [], []
    stems_by_type: dict[str, set[str]] = {}
    for type_dir in type_dirs:
        files = _files.nonempty_image_files(type_dir, "defect-type folder")
        _files.reject_nested_images(type_dir, "defect-type folder")
        paths += files
        labels += [int(type_dir.name.lower() != GOOD)] * len(files)
        defect_types += [type_dir.name] * len(files)
        stems_by_type[type_dir.name.lower()] = {p.stem.lower() for p in files}
    if split == "test":
        _reject_masks_without_images(root / category, split_dir, stems_by_type)
    return _files.build_image_set(
        root, paths, labels, _files.BINARY_CLASS_NAMES, {"defect_type": defect_types}, check
    )


def _reject_masks_without_images(
    category_dir: Path, test_dir: Path, stems_by_type: dict[str, set[str]]
) -> None:
    """Every mask in ground_truth/ belongs to a defective test image: a mask whose image is
    not in test/ (a defect-type folder lost in extraction, a deleted file) means defective
    images the set would silently lack. Masks are not otherwise read."""
    truth_dir = _files.find_subdir(category_dir, "ground_truth")
    if truth_dir is None:
        return
    orphans: list[str] = []
    for mask_dir in _files.subdirs(truth_dir):
        stems = stems_by_type.get(mask_dir.name.lower(), set())
        for mask in _files.image_files(mask_dir):
            stem = mask.stem.lower()
            image_stem = stem[: -len(_MASK_SUFFIX)] if stem.endswith(_MASK_SUFFIX) else stem
            if image_stem not in stems:
                orphans.append(f"{mask_dir.name}/{mask.name}")
    if orphans:
        raise DataError(
            f"{truth_dir} has {len(orphans)} defect mask(s) whose image is missing from "
            f"{test_dir} ({_files.listing(orphans)}): those defective images would not be "
            "read; re-extract the category from mvtec_anomaly_detection.tar.xz (or delete the "
            "masks of images removed on purpose)"
        )


def _normalised(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def _unknown_category(root: Path, category: str, found: list[str]) -> str:
    message = f"unknown MVTec AD category {category!r} in {root}; "
    if found:
        message += f"categories found: {', '.join(found)}"
        close = difflib.get_close_matches(category, found, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
    elif any(_files.find_subdir(root, split) is not None for split in SPLITS):
        message += f"{root} looks like a single category folder; pass its parent folder as root"
    else:
        message += "no category folders found (expected root/<category>/train/ and test/)"
    return message
