"""Finding, checking and decoding image files for the on-disk dataset loaders.

Shared by `mvtec`, `neu`, `dagm` and `folder`. Every failure is a `DataError` that names the
path, what was expected there and how to fix it, and is raised while the dataset is indexed,
before any training starts. Pixels are decoded lazily, one file per `ImageSet.load(i)`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from defectbench.data.image_set import ImageSet
from defectbench.errors import ConfigError, DataError
from defectbench.io import expand_home

IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff")
# Raster formats PIL also opens that the loaders do not read: a folder holding them is refused
# rather than loaded without them (a dataset re-saved as WebP would lose those images).
_UNREAD_IMAGE_EXTENSIONS = (
    # other names of the formats read above (a camera's `.jpe`, a Windows `.dib`)
    ".jpe",
    ".jfif",
    ".mpo",
    ".apng",
    ".dib",
    ".gif",
    ".webp",
    ".jp2",
    ".j2k",
    ".j2c",
    ".jpc",
    ".jpf",
    ".jpx",
    ".pgm",
    ".ppm",
    ".pbm",
    ".pnm",
    ".pfm",
    ".qoi",
    ".psd",
    ".pcx",
    ".sgi",
    ".tga",
    ".ico",
    ".heic",
    ".avif",
)
CHECKS = ("verify", "decode")
Check = Literal["verify", "decode"]
BINARY_CLASS_NAMES = ("good", "defective")

_MAX_LISTED = 5
# PIL modes that decode to uint8, and the uint8 mode they become. Alpha is dropped, which loses
# nothing only when every pixel is opaque (checked on decode: `_transparency_problem`).
_UINT8_MODES = {
    "L": "L",
    "1": "L",
    "LA": "L",
    "RGB": "RGB",
    "RGBA": "RGB",
    "P": "RGB",
    "PA": "RGB",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
}


def validate_check(check: str) -> None:
    if check not in CHECKS:
        raise ConfigError(
            f"unknown image check {check!r}; choose one of {', '.join(CHECKS)} "
            "('verify' is fast, 'decode' also catches truncated BMP/JPEG/TIFF files)"
        )


def dataset_root(root: str | os.PathLike[str], expected: str) -> Path:
    """The root folder as a Path, or a DataError saying it is missing."""
    return require_dir(expand_home(root, "the dataset folder"), expected)


def require_dir(path: Path, expected: str) -> Path:
    if not path.is_dir():
        state = "is a file, not a folder" if path.exists() else "does not exist"
        raise DataError(f"{path} {state}; expected {expected}")
    return path


def _is_hidden(path: Path) -> bool:
    # macOS zips add __MACOSX/ and ._name.png resource forks that look like images but are not
    return path.name.startswith(".") or path.name == "__MACOSX"


# Hidden folders that tools keep beside a dataset's files, ignored whatever they hold (as
# .DS_Store is): their images are never images of the set. Version-control and data-version
# stores hold compressed or content-addressed objects; Jupyter's checkpoints and thumbnail
# caches hold copies of the set's own images, which read as images would be scored twice;
# macOS metadata (resource forks, Spotlight) and a drive's trash hold no images or ones deleted
# on purpose. Any other folder whose name starts with a dot is refused when it holds images
# (`_reject_hidden_image_folders`): `.extra/` is as likely a person's folder as a tool's, and
# skipping it like a hidden file would drop its images without a word.
_TOOL_FOLDERS = frozenset(
    name.lower()
    for name in (
        "__MACOSX", ".git", ".hg", ".svn", ".dvc", ".ipynb_checkpoints", ".thumbnails",
        ".@__thumb", ".AppleDouble", ".Spotlight-V100", ".fseventsd", ".TemporaryItems",
        ".DocumentRevisions-V100",
        # a cloned dataset's repository pages (README figures), sync tools' old versions and
        # caches, and Python environments (matplotlib ships sample images)
        ".github", ".gitlab", ".stversions", ".dropbox.cache", ".cache", ".venv", ".tox",
    )
)
# .Trash, macOS's .Trashes, and a freedesktop trash on a removable drive (.Trash-1000)
_TRASH_FOLDER = re.compile(r"^\.trash(es|-\d+)?$", re.IGNORECASE)


def _is_tool_folder(name: str) -> bool:
    return name.lower() in _TOOL_FOLDERS or _TRASH_FOLDER.match(name) is not None


def subdirs(folder: Path) -> list[Path]:
    """Visible sub-folders, sorted by name. A hidden one holding images is refused."""
    folders = [p for p in folder.iterdir() if p.is_dir()]
    _reject_hidden_image_folders(folder, [p for p in folders if _is_hidden(p)])
    return sorted((p for p in folders if not _is_hidden(p)), key=lambda p: p.name)


def _reject_hidden_image_folders(folder: Path, hidden: Sequence[Path]) -> None:
    holding = sorted(d for d in hidden if not _is_tool_folder(d.name) and holds_images(d))
    if holding:
        raise DataError(
            f"{folder} has {len(holding)} hidden folder(s) holding images "
            f"({listing([d.name + '/' for d in holding])}), which would not be read: folders "
            "whose names start with a dot are skipped; move the images where they belong in "
            "the dataset (or rename the folder without the leading dot), or move the folder "
            "out of the dataset if its images are not meant to be read"
        )


def reject_case_twins(folders: Sequence[Path], what: str) -> None:
    """Folders whose names differ only in case (`good/` and `Good/`) would be read as two
    classes, one of them wrongly labelled, so refuse them."""
    by_name: dict[str, list[Path]] = {}
    for folder in folders:
        by_name.setdefault(folder.name.lower(), []).append(folder)
    twins = [group for group in by_name.values() if len(group) > 1]
    if twins:
        names = "; ".join(" and ".join(p.name + "/" for p in group) for group in twins)
        raise DataError(
            f"{twins[0][0].parent} has {what} whose names differ only in case ({names}); keep "
            "one spelling (merge them if both hold files)"
        )


def find_subdir(folder: Path, name: str) -> Path | None:
    """The sub-folder called `name`, ignoring case (archives differ: Train/train, Label/label).

    None when there is none; two spellings side by side (an archive extracted twice) are an
    error, since either could hold the files meant."""
    matches = [p for p in subdirs(folder) if p.name.lower() == name.lower()]
    if len(matches) > 1:
        raise DataError(
            f"{folder} has {len(matches)} folders named {name} in different case "
            f"({', '.join(p.name + '/' for p in matches)}); keep one "
            "(merge them if both hold files)"
        )
    return matches[0] if matches else None


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not _is_hidden(path) and path.is_file()


def image_files(folder: Path) -> list[Path]:
    """Image files directly inside `folder` (extension case ignored), sorted by name.

    Images in a format the loaders do not read are refused, not skipped."""
    everything = list(folder.iterdir())
    entries = [p for p in everything if not _is_hidden(p)]
    hidden_images = [
        p for p in everything
        if _is_hidden(p) and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        and _looks_like_image(p)
    ]
    if hidden_images:
        # `.DS_Store` and macOS's `._name.png` resource forks are not images and stay ignored,
        # and so do a download's or rsync's temporary `.name.png.tmp` / `.name.png.XyZ12` (an
        # image's bytes, another extension); a real image whose name starts with a dot would
        # be dropped without a word
        raise DataError(
            f"{folder} holds {len(hidden_images)} hidden image file(s) "
            f"({listing(sorted(hidden_images))}), which would not be read: names starting with "
            "a dot are skipped; rename them without the leading dot, or move them out of the "
            "dataset if they are not meant to be read"
        )
    dangling = [
        p for p in entries
        if p.suffix.lower() in IMAGE_EXTENSIONS + _UNREAD_IMAGE_EXTENSIONS
        and p.is_symlink() and not p.exists()
    ]
    if dangling:
        # an image whose content was never fetched (git-annex, DVC) must not vanish silently
        raise DataError(
            f"{folder} holds {len(dangling)} broken symbolic link(s) named as images "
            f"({listing(sorted(dangling))}); fetch their content (`git annex get`, `dvc pull`) "
            "or delete the links"
        )
    unread = [p for p in entries if p.suffix.lower() in _UNREAD_IMAGE_EXTENSIONS and p.is_file()]
    misnamed = [
        p for p in entries
        if p.suffix.lower() not in IMAGE_EXTENSIONS + _UNREAD_IMAGE_EXTENSIONS
        and p.is_file() and _looks_like_image(p)
    ]
    if misnamed:
        # `img_0007`, `x.png.bak`, `x.png ` would otherwise be skipped as notes or annotations
        raise DataError(
            f"{folder} holds {len(misnamed)} image file(s) whose names do not end in an image "
            f"extension ({listing(sorted(misnamed))}); defectbench finds images by extension "
            f"({' '.join(IMAGE_EXTENSIONS)}, any case): rename them, or move them out of the "
            "dataset if they are not meant to be read"
        )
    if unread:
        raise DataError(
            f"{folder} holds {len(unread)} image(s) in a format defectbench does not read "
            f"({listing(sorted(unread))}); it reads {' '.join(IMAGE_EXTENSIONS)} (any case); "
            "convert them to PNG (a `.jpe` or `.dib` only needs renaming to `.jpg` or `.bmp`), "
            "or move them out of the dataset"
        )
    return sorted((p for p in entries if is_image_file(p)), key=lambda p: p.name)


# Leading bytes of the raster formats a camera or an export writes. Checked on files whose
# extension names no image format, so reading 12 bytes of a notes file is the whole cost.
_IMAGE_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",  # JPEG
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
    b"GIF87a",
    b"GIF89a",
)
# a BMP's "BM" is two letters a text file may start with: its info header's size must be one
# of the published ones too
_BMP_HEADER_SIZES = (12, 40, 52, 56, 64, 108, 124)
# camera RAW files are TIFF inside, but not images to rename: as .tif only their embedded
# preview would be read
_RAW_EXTENSIONS = (".cr2", ".cr3", ".nef", ".nrw", ".dng", ".arw", ".srf", ".sr2", ".orf",
                   ".rw2", ".raf", ".pef", ".srw", ".3fr", ".erf", ".kdc", ".mrw", ".x3f")


def _looks_like_image(path: Path) -> bool:
    if path.suffix.lower() in _RAW_EXTENSIONS:
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(18)
    except OSError:
        return False
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    if head[:2] == b"BM" and len(head) == 18:
        return int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES
    return any(head.startswith(signature) for signature in _IMAGE_SIGNATURES)


def nonempty_image_files(folder: Path, what: str) -> list[Path]:
    files = image_files(folder)
    if not files:
        nested = (
            " (images must sit directly in it; sub-folders are not read)" if subdirs(folder) else ""
        )
        raise DataError(
            f"{what} {folder} contains no images{nested}; expected files ending in "
            f"{' '.join(IMAGE_EXTENSIONS)} (any case); add the images or remove the empty folder"
        )
    return files


def reject_nested_images(folder: Path, what: str, allowed: Sequence[Path] = ()) -> None:
    """Images in sub-folders of a folder whose own images are read would be silently dropped
    (a class folder with a `scratch/` inside), so refuse them; `allowed` sub-folders are read
    by the caller (DAGM's Label/)."""
    nested = [d for d in subdirs(folder) if d not in allowed and holds_images(d)]
    if nested:
        raise DataError(
            f"{what} {folder} has sub-folder(s) holding images ({listing(nested)}), which would "
            "not be read: images must sit directly in their class folder; move them up, or "
            "make each sub-folder a class folder of its own"
        )


def holds_images(folder: Path) -> bool:
    """Whether any image file lies in `folder` or below it, outside tools' folders (`.git/`,
    `__MACOSX/`...). A hidden file counts only if its bytes are an image's (not a macOS
    `._name.png` resource fork); a hidden folder counts, since the loaders would skip it."""
    # os.walk, not rglob: a tool's folder (a large .git/) is pruned before it is walked; like
    # rglob, it does not follow links to folders
    for current, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not _is_tool_folder(name)]
        for name in files:
            path = Path(current, name)
            if path.suffix.lower() in IMAGE_EXTENSIONS + _UNREAD_IMAGE_EXTENSIONS and (
                not name.startswith(".") or _looks_like_image(path)
            ):
                return True
    return False


def reject_loose_images(folder: Path, expected: str) -> None:
    """Images lying next to the class folders would be silently dropped, so refuse them."""
    loose = image_files(folder)
    if loose:
        raise DataError(
            f"{folder} has {len(loose)} image(s) directly inside it ({listing(loose)}); "
            f"expected {expected}; move them into the right folder"
        )


def listing(items: Sequence[object]) -> str:
    shown = ", ".join(str(getattr(p, "name", p)) for p in items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def _mode_problem(image: Image.Image) -> str | None:
    if image.mode not in _UINT8_MODES:
        return (
            f"PIL mode {image.mode!r} (16-bit, 32-bit or float pixels), which does not fit uint8 "
            "without rescaling; defectbench reads 8-bit grayscale or colour only; convert the "
            "file to 8-bit first"
        )
    return None


def _header_problem(image: Image.Image) -> str | None:
    """What the header alone shows cannot be read as one uint8 image (before any decoding)."""
    mode_problem = _mode_problem(image)
    if mode_problem:
        return mode_problem
    # PIL opens 48- and 64-bit colour (a 16-bit camera's RGB PNG or TIFF) as mode RGB/RGBA and
    # keeps only the high byte of each sample: 12-bit data would read as a nearly black image.
    # The sample size is only in the tile's raw mode ("RGB;16B", "RGBA;16L", "CMYK;16N").
    for tile in image.tile:
        args = tile[3] if len(tile) > 3 else None
        rawmode = args[0] if isinstance(args, tuple) and args else args
        # ";16B", ";16L", ";16N": 16-bit samples; not "BGR;16" (5-6-5 pixels, 8-bit range)
        if isinstance(rawmode, str) and re.search(r";(16|32)[BLN]", rawmode):
            return (
                f"16- or 32-bit samples (raw mode {rawmode!r}), which PIL would cut to their high "
                "byte; defectbench reads 8-bit grayscale or colour only; convert the file to "
                "8-bit first, rescaling to the range your camera uses"
            )
    frames = _full_pages(image)
    if frames > 1:
        return (
            f"{frames} frames or pages, of which only the first would be read; save each page "
            "as a file of its own"
        )
    return None


def _full_pages(image: Image.Image) -> int:
    """Frames that are images of their own: not a camera JPEG's MPF preview (Pillow opens it
    as a second MPO frame) nor a TIFF's reduced-resolution copies (NewSubfileType bit 0)."""
    frames = getattr(image, "n_frames", 1)
    if frames <= 1 or image.format == "MPO":
        return 1
    if image.format != "TIFF":
        return frames
    full = 0
    try:
        for index in range(frames):
            image.seek(index)
            full += not int(image.tag_v2.get(254, 0)) & 1
    finally:
        image.seek(0)
    return full


def _problem(path: Path, check: str) -> str | None:
    try:
        with Image.open(path) as image:
            # the header says the mode and sample size: refused while indexing, not later
            header_problem = _header_problem(image)
            if header_problem:
                return f"{path} ({header_problem})"
            image.verify()
        if check == "decode":
            # verify() checks the PNG chunk checksums that decoding alone ignores (a flipped bit
            # in the last IDAT chunk decodes to wrong pixels), so "decode" runs both
            with Image.open(path) as image:
                image.load()
                transparency = _transparency_problem(image)
            if transparency:
                return f"{path} ({transparency})"
    # verify() is documented to raise "suitable exceptions" of many types (SyntaxError,
    # struct.error, EOFError, OSError...), so any exception here means a broken file.
    except Exception as exc:  # noqa: BLE001
        return f"{path} ({type(exc).__name__}: {exc})"
    return None


def _transparency_problem(image: Image.Image) -> str | None:
    """Dropping an alpha channel loses information only where a pixel is not fully opaque."""
    if image.mode not in ("LA", "RGBA", "PA") and "transparency" not in image.info:
        return None
    if image.convert("RGBA").getchannel("A").getextrema()[0] == 255:
        return None
    return (
        "transparent pixels, whose hidden colour would be read as if opaque; flatten the image "
        "onto the background your camera would show, or save it without an alpha channel"
    )


def check_images(paths: Sequence[Path], check: str) -> None:
    """Raise one DataError listing every file PIL cannot read.

    'verify' runs PIL's `verify()`: it catches non-images and corrupt or truncated PNGs but not
    every truncated BMP/JPEG/TIFF, which then fail at load time; 'decode' also decodes each
    file. Both refuse 16-bit samples and multi-page files from the header.
    """
    problems = [p for p in (_problem(path, check) for path in paths) if p is not None]
    if problems:
        shown = "; ".join(problems[:_MAX_LISTED])
        more = f"; and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise DataError(
            f"{len(problems)} of {len(paths)} image files cannot be read: {shown}{more}; "
            "re-download or re-extract the dataset, or delete the broken files"
        )


def read_image(path: Path) -> np.ndarray:
    """Decode one file to uint8: (H, W) for grayscale, (H, W, 3) for colour."""
    try:
        with Image.open(path) as image:
            problem = _header_problem(image)
            image.load()
            problem = problem or _transparency_problem(image)
            if problem:
                raise DataError(f"{path} has {problem}")
            target = _UINT8_MODES[image.mode]
            return np.array(image if image.mode == target else image.convert(target), np.uint8)
    # DecompressionBombError is not an OSError; it means the file is too large to decode safely.
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(
            f"cannot decode image {path} ({type(exc).__name__}: {exc}); re-download or delete it"
        ) from exc


def _reject_same_file_twice(paths: Sequence[Path]) -> None:
    """One image of the set reached under two names (a symbolic link into another class
    folder, a linked class folder) would be scored twice, possibly with two labels. Links
    into a store outside the set (git-annex and DVC keep identical contents as one object)
    are different images that happen to have the same bytes, and are read as such."""
    by_target: dict[Path, list[Path]] = {}
    for path in paths:
        by_target.setdefault(path.resolve(), []).append(path)
    repeats: list[str] = []
    for target, names in by_target.items():
        # the file sits in the set under one of the names: the others are links to it
        if len(names) > 1 and any(n.parent.resolve() / n.name == target for n in names):
            repeats.append(f"{' and '.join(map(str, names))} are one file")
    if repeats:
        raise DataError(
            f"{len(repeats)} image(s) are the same file as another image of the set, through a "
            f"symbolic link ({'; '.join(repeats[:_MAX_LISTED])}); each image must appear once: "
            "remove the link, or copy the file if it belongs in both places"
        )


def _reject_undecodable_names(root: Path, ids: Sequence[str]) -> None:
    """A file or folder name that is not UTF-8 (a Latin-1 archive unpacked on Linux) reaches
    Python as lone surrogates: the set would load, and then every id written to JSON, CSV or
    a report would fail far from here. Refuse it while indexing, with the bytes shown."""
    bad = [id_ for id_ in ids if not _encodes_as_utf8(id_)]
    if bad:
        shown = [os.fsencode(id_).decode("utf-8", "backslashreplace") for id_ in bad]
        raise DataError(
            f"{len(bad)} file or folder name(s) under {_printable(str(root))} are not valid "
            f"UTF-8 ({listing(shown)}); rename them to UTF-8 (for Latin-1 names, `convmv -r -f "
            "latin1 -t utf-8 FOLDER` shows the renames and `--notest` makes them)"
        )


def _encodes_as_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(text: str) -> str:
    return os.fsencode(text).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class LazyImages:
    """`ImageSet.loader` that decodes `paths[i]` on each call (a class so it can be pickled)."""

    paths: tuple[Path, ...]

    def __call__(self, index: int) -> np.ndarray:
        return read_image(self.paths[index])


def one_hot(indices: Sequence[int], num_classes: int) -> np.ndarray:
    labels = np.zeros((len(indices), num_classes), dtype=np.int8)
    labels[np.arange(len(indices)), np.asarray(indices, dtype=np.int64)] = 1
    return labels


def build_image_set(
    root: Path,
    paths: Sequence[Path],
    labels: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    metadata: Mapping[str, Sequence[object]],
    check: str,
) -> ImageSet:
    """Check every file, then wrap paths, labels and metadata in a lazily decoding ImageSet."""
    if not paths:
        raise DataError(f"no images found under {root}; see the loader's docstring for the layout")
    ids = tuple(p.relative_to(root).as_posix() for p in paths)
    _reject_undecodable_names(root, ids)
    _reject_same_file_twice(paths)
    check_images(paths, check)
    return ImageSet(
        ids=ids,
        labels=np.asarray(labels, dtype=np.int8),
        class_names=tuple(class_names),
        loader=LazyImages(tuple(paths)),
        metadata={key: np.asarray(values) for key, values in metadata.items()},
    )
