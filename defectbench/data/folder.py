"""A user's own images, one folder per class (the torchvision ImageFolder convention)."""

from __future__ import annotations

import os

import numpy as np

from defectbench.data import _files
from defectbench.data.image_set import ImageSet
from defectbench.errors import DataError

GOOD = "good"
DEFECT = "defect"
# `defective` is the name the binary sets give their positive class
DEFECT_SPELLINGS = (DEFECT, "defective")
_LAYOUT = "good/ and defect/ folders (binary), or one folder per class (at least two)"


def load_image_folder(root: str | os.PathLike[str], *, check: _files.Check = "verify") -> ImageSet:
    """Images sorted into class folders under ``root``.

    Binary layout (folder names matched ignoring case; other spellings such as ok/ng are not
    recognised, rename them)::

        root/good/*.png      -> label 0
        root/defect/*.png    -> label 1 (class_names ``("good", "defective")``; the
                                folder may also be called defective/)

    Any other set of two or more folders is multi-class::

        root/<class>/*.png   -> labels (N, C) one-hot int8, class_names = sorted folder names

    If one class folder is ``good``, ``binary_view`` turns the multi-class set into good vs
    defective. Images must sit directly in their class folder. Metadata ``class`` is the folder
    name.
    """
    _files.validate_check(check)
    root = _files.dataset_root(root, f"a folder holding {_LAYOUT}")
    _files.reject_loose_images(root, _LAYOUT)
    folders = _files.subdirs(root)
    _files.reject_case_twins(folders, "class folders")
    names = [folder.name for folder in folders]
    if len(folders) < 2:
        found = f"only {names[0]}/" if names else "no class folders"
        raise DataError(f"{root} has {found}; expected {_LAYOUT}")
    paths, classes = [], []
    for folder in folders:
        files = _files.nonempty_image_files(folder, "class folder")
        _files.reject_nested_images(folder, "class folder")
        paths += files
        classes += [folder.name] * len(files)
    lowered = sorted(name.lower() for name in names)
    if len(lowered) == 2 and lowered[0] in DEFECT_SPELLINGS and lowered[1] == GOOD:
        labels = np.array([int(name.lower() != GOOD) for name in classes], dtype=np.int8)
        class_names = _files.BINARY_CLASS_NAMES
    else:
        labels = _files.one_hot([names.index(name) for name in classes], len(names))
        class_names = tuple(names)
    return _files.build_image_set(root, paths, labels, class_names, {"class": classes}, check)


def binary_view(images: ImageSet, good_class: str = GOOD) -> ImageSet:
    """A multi-class set as good (0) vs defective (1): defective when any other class is set.

    Ids, pixels and metadata are shared with ``images``; class_names become
    ``("good", "defective")``.
    """
    if not images.is_multilabel:
        raise DataError(
            f"binary_view needs a multi-class set with labels (N, C); this one is already binary "
            f"(class_names {images.class_names})"
        )
    # case ignored, as the loaders match folder names (a `Good/` folder)
    matches = [i for i, name in enumerate(images.class_names) if name.lower() == good_class.lower()]
    if len(matches) != 1:
        raise DataError(
            f"no {good_class!r} class among {', '.join(images.class_names)}; name the defect-free "
            "class with good_class=... (sets without one, such as NEU-CLS, have no binary view)"
        )
    good_column = matches[0]
    defect_columns = [i for i in range(len(images.class_names)) if i != good_column]
    return ImageSet(
        ids=images.ids,
        labels=images.labels[:, defect_columns].any(axis=1).astype(np.int8),
        class_names=_files.BINARY_CLASS_NAMES,
        loader=images.loader,
        metadata=dict(images.metadata),
    )
