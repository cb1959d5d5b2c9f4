"""On-disk dataset loaders, each against a tiny tree in its published layout."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectbench.data.dagm import load_dagm
from defectbench.data.folder import binary_view, load_image_folder
from defectbench.data.image_set import ImageSet, in_memory
from defectbench.data.mvtec import load_mvtec_ad, mvtec_categories
from defectbench.data.neu import NEU_CLASSES, load_neu_cls
from defectbench.errors import ConfigError, DataError

SIZE = 8


def write_image(path: Path, mode: str = "L", value: int = 0) -> Path:
    """An 8x8 image in the format the extension names; pixel (0, 0) holds `value`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (SIZE, SIZE, 3) if mode == "RGB" else (SIZE, SIZE)
    pixels = np.zeros(shape, dtype=np.uint8)
    pixels[0, 0] = value
    Image.fromarray(pixels, mode).save(path)
    return path


def truncate(path: Path, drop: int | None = None) -> None:
    """Cut `drop` bytes off the end (default: half the file)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - (len(data) // 2 if drop is None else drop)])


# --- trees in the published layouts --------------------------------------------------------


def mvtec_tree(root: Path) -> Path:
    """bottle (RGB): train 3 good; test 2 good, 2 broken_large, 1 contamination. grid (gray)."""
    for name in ("000", "001", "002"):
        write_image(root / "bottle/train/good" / f"{name}.png", "RGB")
    for name in ("000", "001"):
        write_image(root / "bottle/test/good" / f"{name}.png", "RGB")
        write_image(root / "bottle/test/broken_large" / f"{name}.png", "RGB", value=200)
        write_image(root / "bottle/ground_truth/broken_large" / f"{name}_mask.png")
    write_image(root / "bottle/test/contamination/000.png", "RGB", value=201)
    write_image(root / "bottle/ground_truth/contamination/000_mask.png")
    (root / "bottle/license.txt").write_text("CC BY-NC-SA 4.0")
    write_image(root / "grid/train/good/000.png")
    write_image(root / "grid/test/good/000.png")
    write_image(root / "grid/test/bent/000.png", value=7)
    return root


def neu_flat_tree(root: Path, per_class: int = 2) -> Path:
    for code in NEU_CLASSES:
        for n in range(1, per_class + 1):
            write_image(root / f"{code}_{n}.bmp", value=NEU_CLASSES.index(code))
    return root


def neu_folder_tree(root: Path, folders: dict[str, str] | None = None) -> Path:
    folders = folders or {code: code for code in NEU_CLASSES}
    for code, folder in folders.items():
        for n in (1, 2):
            write_image(root / folder / f"{code}_{n}.bmp", value=NEU_CLASSES.index(code))
    return root


def labels_txt(path: Path, rows: list[tuple[str, int]]) -> None:
    """Labels.txt as published: a header line, then id, defective, file, 0, label file (or 0)."""
    lines = ["1"]
    for number, (name, defective) in enumerate(rows, start=1):
        mask = f"{Path(name).stem}_label.PNG" if defective else "0"
        lines.append(f"{number}\t{defective}\t{name}\t0\t{mask}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def dagm_split(
    folder: Path, names: list[str], defective: set[str], with_table: bool = True
) -> None:
    for name in names:
        write_image(folder / f"{name}.PNG", value=int(name) % 256)
        if name in defective:
            write_image(folder / "Label" / f"{name}_label.PNG", value=255)
    (folder / "Label").mkdir(parents=True, exist_ok=True)
    if with_table:
        labels_txt(folder / "Label/Labels.txt", [(f"{n}.PNG", int(n in defective)) for n in names])


def dagm_tree(root: Path, classes: tuple[int, ...] = (1, 2, 10)) -> Path:
    """Each class: Train 0001-0003 (0002 defective), Test 0004-0005 (0005 defective)."""
    for index in classes:
        dagm_split(root / f"Class{index}/Train", ["0001", "0002", "0003"], {"0002"})
        dagm_split(root / f"Class{index}/Test", ["0004", "0005"], {"0005"})
    return root


def folder_tree(root: Path, classes: dict[str, int]) -> Path:
    for name, count in classes.items():
        for n in range(count):
            write_image(root / name / f"{n:03d}.png")
    return root


def assert_lazy_pixels(images: ImageSet, shape: tuple[int, ...]) -> None:
    first = images.load(0)
    assert first.dtype == np.uint8
    assert first.shape == shape


# --- MVTec AD ------------------------------------------------------------------------------


def test_mvtec_test_split_labels_ids_and_defect_types(tmp_path: Path) -> None:
    images = load_mvtec_ad(mvtec_tree(tmp_path), "bottle")
    assert images.ids == (
        "bottle/test/broken_large/000.png",
        "bottle/test/broken_large/001.png",
        "bottle/test/contamination/000.png",
        "bottle/test/good/000.png",
        "bottle/test/good/001.png",
    )
    assert images.labels.tolist() == [1, 1, 1, 0, 0]
    assert images.labels.dtype == np.int8
    assert images.class_names == ("good", "defective")
    assert images.metadata["defect_type"].tolist() == [
        "broken_large",
        "broken_large",
        "contamination",
        "good",
        "good",
    ]
    assert_lazy_pixels(images, (SIZE, SIZE, 3))
    assert images.load(2)[0, 0].tolist() == [201, 201, 201]


def test_mvtec_train_split_is_all_good_and_grayscale_stays_2d(tmp_path: Path) -> None:
    root = mvtec_tree(tmp_path)
    assert len(load_mvtec_ad(root, "bottle", "train")) == 3
    grid = load_mvtec_ad(root, "grid", split="train")
    assert grid.labels.tolist() == [0]
    assert_lazy_pixels(grid, (SIZE, SIZE))
    assert load_mvtec_ad(root, "grid").labels.tolist() == [1, 0]


def test_mvtec_categories_are_the_folders_with_train_or_test(tmp_path: Path) -> None:
    root = mvtec_tree(tmp_path)
    (root / "not_a_category").mkdir()
    (root / "readme.txt").write_text("MVTec AD")
    assert mvtec_categories(root) == ["bottle", "grid"]


def test_mvtec_unknown_category_lists_found_and_suggests(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"'bottel'.*found: bottle, grid; did you mean 'bottle'"):
        load_mvtec_ad(mvtec_tree(tmp_path), "bottel")


def test_mvtec_category_folder_given_as_root_says_pass_parent(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="single category folder; pass its parent"):
        load_mvtec_ad(mvtec_tree(tmp_path) / "bottle", "bottle")


def test_mvtec_unknown_split_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"split 'val'.*train, test"):
        load_mvtec_ad(mvtec_tree(tmp_path), "bottle", split="val")


def test_mvtec_missing_good_folder(tmp_path: Path) -> None:
    root = tmp_path / "mvtec"
    write_image(root / "cable/test/cut/000.png")
    with pytest.raises(DataError, match=r"test has no good/ folder \(found: cut\)"):
        load_mvtec_ad(root, "cable")


def test_mvtec_missing_test_folder(tmp_path: Path) -> None:
    root = tmp_path / "mvtec"
    write_image(root / "cable/train/good/000.png")
    with pytest.raises(
        DataError, match=r"cable/test does not exist; expected MVTec AD's test/ folder"
    ):
        load_mvtec_ad(root, "cable")


def test_mvtec_empty_defect_folder(tmp_path: Path) -> None:
    root = mvtec_tree(tmp_path)
    (root / "bottle/test/scratch").mkdir()
    with pytest.raises(DataError, match=r"defect-type folder .*scratch contains no images"):
        load_mvtec_ad(root, "bottle")


def test_mvtec_loose_images_beside_defect_folders(tmp_path: Path) -> None:
    root = mvtec_tree(tmp_path)
    write_image(root / "bottle/test/stray.png")
    with pytest.raises(DataError, match=r"1 image\(s\) directly inside it \(stray.png\)"):
        load_mvtec_ad(root, "bottle")


# --- NEU-CLS -------------------------------------------------------------------------------


def _assert_neu(images: ImageSet, per_class: int = 2) -> None:
    assert images.class_names == NEU_CLASSES
    assert images.labels.shape == (6 * per_class, 6)
    assert images.labels.dtype == np.int8
    assert (images.labels.sum(axis=1) == 1).all()
    assert images.labels.sum(axis=0).tolist() == [per_class] * 6
    expected = np.repeat(NEU_CLASSES, per_class)
    assert images.metadata["defect_class"].tolist() == expected.tolist()
    assert images.labels.argmax(axis=1).tolist() == np.repeat(np.arange(6), per_class).tolist()
    assert_lazy_pixels(images, (SIZE, SIZE))
    last = images.load(len(images) - 1)
    assert last[0, 0] == 5  # the Sc file written with value 5


def test_neu_flat_published_layout(tmp_path: Path) -> None:
    images = load_neu_cls(neu_flat_tree(tmp_path, per_class=3))
    _assert_neu(images, per_class=3)
    assert images.ids[:3] == ("Cr_1.bmp", "Cr_2.bmp", "Cr_3.bmp")
    assert images.ids[-1] == "Sc_3.bmp"


def test_neu_class_folders(tmp_path: Path) -> None:
    images = load_neu_cls(neu_folder_tree(tmp_path))
    _assert_neu(images)
    assert images.ids[0] == "Cr/Cr_1.bmp"


def test_neu_class_folders_with_long_names(tmp_path: Path) -> None:
    long_names = {
        "Cr": "Crazing",
        "In": "inclusion",
        "Pa": "patches",
        "PS": "pitted_surface",
        "RS": "Rolled",
        "Sc": "scratches",
    }
    images = load_neu_cls(neu_folder_tree(tmp_path, long_names))
    _assert_neu(images)
    assert images.ids[6] == "pitted_surface/PS_1.bmp"


def test_neu_kaggle_pitted_folder_is_pitted_surface(tmp_path: Path) -> None:
    # the Kaggle redistribution names the folder Pitted/, not PS/ or pitted_surface/
    folders = {code: code for code in NEU_CLASSES} | {"PS": "Pitted"}
    images = load_neu_cls(neu_folder_tree(tmp_path, folders))
    _assert_neu(images)
    assert images.ids[6:8] == ("Pitted/PS_1.bmp", "Pitted/PS_2.bmp")


def test_neu_flat_with_unparseable_name(tmp_path: Path) -> None:
    root = neu_flat_tree(tmp_path)
    write_image(root / "Xx_1.bmp")
    write_image(root / "scan.bmp")
    with pytest.raises(
        DataError, match=r"2 file\(s\) .* not named <Class>_<n>.*: Xx_1.bmp, scan.bmp; rename"
    ):
        load_neu_cls(root)


def test_neu_missing_class(tmp_path: Path) -> None:
    root = neu_flat_tree(tmp_path)
    for path in root.glob("RS_*.bmp"):
        path.unlink()
    with pytest.raises(DataError, match="no images of class RS; all six classes"):
        load_neu_cls(root)


def test_neu_missing_class_folder(tmp_path: Path) -> None:
    folders = {code: code for code in NEU_CLASSES if code != "In"}
    with pytest.raises(DataError, match="no images of class In"):
        load_neu_cls(neu_folder_tree(tmp_path, folders))


def test_neu_empty_class_folder(tmp_path: Path) -> None:
    root = neu_folder_tree(tmp_path)
    for path in (root / "Pa").iterdir():
        path.unlink()
    with pytest.raises(DataError, match=r"NEU class Pa folder .*Pa contains no images"):
        load_neu_cls(root)


def test_neu_mixed_layouts(tmp_path: Path) -> None:
    root = neu_folder_tree(tmp_path)
    write_image(root / "Cr_99.bmp")
    with pytest.raises(DataError, match="mixes class folders .* with 1 loose images"):
        load_neu_cls(root)


def test_neu_two_folders_for_one_class(tmp_path: Path) -> None:
    root = neu_folder_tree(tmp_path)
    write_image(root / "crazing/Cr_3.bmp")
    with pytest.raises(DataError, match=r"two folders for NEU class Cr: Cr/ and crazing/"):
        load_neu_cls(root)


def test_neu_unknown_image_folder(tmp_path: Path) -> None:
    root = neu_folder_tree(tmp_path)
    write_image(root / "Dent/1.bmp")
    with pytest.raises(DataError, match="image folders that are not NEU classes: Dent"):
        load_neu_cls(root)


def test_neu_root_without_images_points_at_subfolders(tmp_path: Path) -> None:
    neu_folder_tree(tmp_path / "train")
    (tmp_path / "valid").mkdir()
    with pytest.raises(DataError, match="found folders train, valid: point root at the one"):
        load_neu_cls(tmp_path)


def test_neu_det_images_folder_loads_and_its_root_is_pointed_at(tmp_path: Path) -> None:
    long_names = (
        "crazing",
        "inclusion",
        "patches",
        "pitted_surface",
        "rolled-in_scale",
        "scratches",
    )
    for code, name in zip(NEU_CLASSES, long_names, strict=True):
        write_image(
            tmp_path / "NEU-DET/IMAGES" / f"{name}_1.jpg", value=10 * NEU_CLASSES.index(code)
        )
    (tmp_path / "NEU-DET/ANNOTATIONS").mkdir()
    images = load_neu_cls(tmp_path / "NEU-DET/IMAGES")
    assert images.metadata["defect_class"].tolist() == list(NEU_CLASSES)
    with pytest.raises(DataError, match=r"looks like NEU-DET: point root at its IMAGES/"):
        load_neu_cls(tmp_path / "NEU-DET")


# --- DAGM 2007 -----------------------------------------------------------------------------


def test_dagm_all_classes_in_numeric_order(tmp_path: Path) -> None:
    images = load_dagm(dagm_tree(tmp_path))
    assert len(images) == 15
    assert images.ids[:5] == (
        "Class1/Train/0001.PNG",
        "Class1/Train/0002.PNG",
        "Class1/Train/0003.PNG",
        "Class1/Test/0004.PNG",
        "Class1/Test/0005.PNG",
    )
    assert images.ids[-1] == "Class10/Test/0005.PNG"
    assert images.labels.tolist() == [0, 1, 0, 0, 1] * 3
    assert images.metadata["dagm_class"].tolist() == [1] * 5 + [2] * 5 + [10] * 5
    assert (
        images.metadata["split"].tolist()
        == ["train"] * 3 + ["test"] * 2 + (["train"] * 3 + ["test"] * 2) * 2
    )
    assert_lazy_pixels(images, (SIZE, SIZE))
    assert images.load(4)[0, 0] == 5


def test_dagm_one_class_and_split_subset(tmp_path: Path) -> None:
    images = load_dagm(dagm_tree(tmp_path), class_index=10)
    assert set(images.metadata["dagm_class"].tolist()) == {10}
    train = images.subset(np.flatnonzero(images.metadata["split"] == "train"))
    assert train.ids == (
        "Class10/Train/0001.PNG",
        "Class10/Train/0002.PNG",
        "Class10/Train/0003.PNG",
    )
    assert train.labels.tolist() == [0, 1, 0]
    assert train.load(2)[0, 0] == 3


def test_dagm_labels_from_masks_when_labels_txt_is_absent(tmp_path: Path) -> None:
    dagm_split(tmp_path / "Class3/Train", ["0001", "0002"], {"0001"}, with_table=False)
    dagm_split(tmp_path / "Class3/Test", ["0003", "0004"], {"0004"}, with_table=False)
    assert load_dagm(tmp_path).labels.tolist() == [1, 0, 0, 1]


def test_dagm_empty_label_folder_is_refused_not_read_as_all_good(tmp_path: Path) -> None:
    dagm_split(tmp_path / "Class3/Train", ["0001", "0002"], {"0001"}, with_table=False)
    dagm_split(tmp_path / "Class3/Test", ["0003"], set(), with_table=False)
    with pytest.raises(
        DataError, match=r"Test/Label holds neither Labels.txt nor any defect mask.*re-extract"
    ):
        load_dagm(tmp_path)


def test_dagm_root_one_level_too_high_is_not_called_a_mistyped_class(tmp_path: Path) -> None:
    dagm_tree(tmp_path / "DAGM2007", classes=(1,))
    with pytest.raises(DataError, match=r"no DAGM class folders \(Class1/ ... Class10/\)"):
        load_dagm(tmp_path)


def test_dagm_folder_of_images_not_named_class_n_is_refused(tmp_path: Path) -> None:
    dagm_tree(tmp_path, classes=(1,))
    dagm_tree(tmp_path / "tmp", classes=(2,))
    (tmp_path / "tmp/Class2").rename(tmp_path / "Clas2")
    dagm_split(tmp_path / "Class1_def/Train", ["0001"], {"0001"})  # development set: left out
    (tmp_path / "notes").mkdir()
    with pytest.raises(DataError, match=r"not named Class<n> \(Clas2/\), which would not be read"):
        load_dagm(tmp_path)
    (tmp_path / "Clas2").rename(tmp_path / "Class2")
    assert sorted(set(load_dagm(tmp_path).metadata["dagm_class"].tolist())) == [1, 2]


def test_dagm_labels_txt_with_names_in_other_case(tmp_path: Path) -> None:
    root = dagm_tree(tmp_path, classes=(4,))
    labels_txt(
        root / "Class4/Train/Label/Labels.txt", [("0001.png", 0), ("0002.png", 1), ("0003.png", 0)]
    )
    assert load_dagm(root).labels.tolist() == [0, 1, 0, 0, 1]


def test_dagm_nested_class_folders(tmp_path: Path) -> None:
    dagm_tree(tmp_path / "Class7", classes=(7,))
    images = load_dagm(tmp_path)
    assert images.ids[0] == "Class7/Class7/Train/0001.PNG"
    assert images.labels.tolist() == [0, 1, 0, 0, 1]


def test_dagm_unknown_class_index_lists_found(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"DAGM class 4 not found in .*; classes found: 1, 2, 10"):
        load_dagm(dagm_tree(tmp_path), class_index=4)


@pytest.mark.parametrize("bad", ["Class1", 1.0, True], ids=["str", "float", "bool"])
def test_dagm_class_index_must_be_int(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ConfigError, match="class_index must be an int"):
        load_dagm(dagm_tree(tmp_path), class_index=bad)  # type: ignore[arg-type]


def test_dagm_labels_txt_defective_without_mask(tmp_path: Path) -> None:
    root = dagm_tree(tmp_path, classes=(1,))
    (root / "Class1/Train/Label/0002_label.PNG").unlink()
    with pytest.raises(
        DataError,
        match=r"Labels.txt disagrees .*line 3 marks 0002.PNG defective but "
        r"Label/ has no 0002_label.PNG",
    ):
        load_dagm(root)


def test_dagm_labels_txt_good_but_mask_exists(tmp_path: Path) -> None:
    root = dagm_tree(tmp_path, classes=(1,))
    write_image(root / "Class1/Test/Label/0004_label.PNG")
    with pytest.raises(
        DataError, match="line 2 marks 0004.PNG defect-free but Label/ has its mask"
    ):
        load_dagm(root)


def test_dagm_labels_txt_malformed_row(tmp_path: Path) -> None:
    root = dagm_tree(tmp_path, classes=(1,))
    (root / "Class1/Train/Label/Labels.txt").write_text("1\n1\tyes\t0001.PNG\n")
    with pytest.raises(DataError, match=r"Labels.txt line 2 is '1\\tyes\\t0001.PNG'; expected"):
        load_dagm(root)


def test_dagm_labels_txt_lists_missing_image(tmp_path: Path) -> None:
    root = dagm_tree(tmp_path, classes=(1,))
    (root / "Class1/Test/0004.PNG").unlink()
    with pytest.raises(DataError, match=r"lists 1 image\(s\) missing from .*Test: 0004.png"):
        load_dagm(root)


def test_dagm_missing_label_folder(tmp_path: Path) -> None:
    write_image(tmp_path / "Class1/Train/0001.PNG")
    write_image(tmp_path / "Class1/Test/0002.PNG")
    with pytest.raises(
        DataError, match="Train has no Label/ folder; DAGM 2007 keeps the defect masks"
    ):
        load_dagm(tmp_path)


def test_dagm_missing_test_folder(tmp_path: Path) -> None:
    dagm_split(tmp_path / "Class1/Train", ["0001"], set())
    with pytest.raises(DataError, match="Class1 has no Test/ folder"):
        load_dagm(tmp_path)


def test_dagm_class_folder_given_as_root(tmp_path: Path) -> None:
    root = dagm_tree(tmp_path, classes=(1,))
    with pytest.raises(
        DataError, match=r"Class1 looks like a single DAGM class folder .*; pass its parent"
    ):
        load_dagm(root / "Class1")


def test_dagm_root_without_class_folders(tmp_path: Path) -> None:
    (tmp_path / "Class1_def").mkdir()
    with pytest.raises(DataError, match=r"no DAGM class folders \(Class1/ ... Class10/\)"):
        load_dagm(tmp_path)


# --- generic class folders -----------------------------------------------------------------


def test_folder_good_and_defect_is_binary(tmp_path: Path) -> None:
    images = load_image_folder(folder_tree(tmp_path, {"Good": 2, "defect": 3}))
    assert images.class_names == ("good", "defective")
    assert images.ids == (
        "Good/000.png",
        "Good/001.png",
        "defect/000.png",
        "defect/001.png",
        "defect/002.png",
    )
    assert images.labels.tolist() == [0, 0, 1, 1, 1]
    assert images.metadata["class"].tolist() == ["Good", "Good", "defect", "defect", "defect"]


def test_folder_multi_class_one_hot_and_binary_view(tmp_path: Path) -> None:
    images = load_image_folder(folder_tree(tmp_path, {"scratch": 1, "good": 2, "dent": 1}))
    assert images.class_names == ("dent", "good", "scratch")
    assert images.labels.dtype == np.int8
    assert images.labels.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]]
    binary = binary_view(images)
    assert binary.class_names == ("good", "defective")
    assert binary.labels.tolist() == [1, 0, 0, 1]
    assert binary.ids == images.ids
    assert binary.metadata["class"].tolist() == ["dent", "good", "good", "scratch"]
    assert_lazy_pixels(binary, (SIZE, SIZE))


def test_folder_two_other_names_stay_multi_class(tmp_path: Path) -> None:
    images = load_image_folder(folder_tree(tmp_path, {"ok": 1, "ng": 1}))
    assert images.class_names == ("ng", "ok")
    assert images.labels.shape == (2, 2)


def test_folder_good_and_one_defect_type_stays_multi_class(tmp_path: Path) -> None:
    # only defect/ (or defective/) beside good/ is the binary layout; good/ and crack/ is
    # two classes, made good vs defective by binary_view
    images = load_image_folder(folder_tree(tmp_path, {"good": 1, "crack": 2}))
    assert images.class_names == ("crack", "good")
    assert images.labels.tolist() == [[1, 0], [1, 0], [0, 1]]
    assert binary_view(images).labels.tolist() == [1, 1, 0]


def test_folder_defective_is_a_spelling_of_defect(tmp_path: Path) -> None:
    images = load_image_folder(folder_tree(tmp_path, {"good": 2, "Defective": 1}))
    assert images.class_names == ("good", "defective")
    assert images.labels.tolist() == [1, 0, 0]


def test_binary_view_matches_the_good_class_ignoring_case(tmp_path: Path) -> None:
    images = load_image_folder(folder_tree(tmp_path, {"Good": 1, "crack": 1, "finger": 1}))
    assert images.ids == ("Good/000.png", "crack/000.png", "finger/000.png")
    assert binary_view(images).labels.tolist() == [0, 1, 1]


def test_mvtec_folder_named_like_good_is_refused_not_labelled_defective(tmp_path: Path) -> None:
    mvtec_tree(tmp_path)
    write_image(tmp_path / "bottle/test/good - Copy/000.png", "RGB")
    with pytest.raises(DataError, match=r"named like good/ but not good/ \(good - Copy/\)"):
        load_mvtec_ad(tmp_path, "bottle")


@pytest.mark.parametrize("name", ["_good", "(good)"])
def test_mvtec_good_folder_behind_punctuation_is_refused_too(tmp_path: Path, name: str) -> None:
    mvtec_tree(tmp_path)
    write_image(tmp_path / "bottle/test" / name / "000.png", "RGB")
    with pytest.raises(DataError, match=r"named like good/ but not good/"):
        load_mvtec_ad(tmp_path, "bottle")


def test_mvtec_capitalised_split_folders(tmp_path: Path) -> None:
    mvtec_tree(tmp_path)
    (tmp_path / "bottle/test").rename(tmp_path / "bottle/Test")
    (tmp_path / "bottle/train").rename(tmp_path / "bottle/Train")
    assert "bottle" in mvtec_categories(tmp_path)
    assert len(load_mvtec_ad(tmp_path, "bottle")) == 5


def test_binary_view_needs_a_good_class(tmp_path: Path) -> None:
    images = load_image_folder(folder_tree(tmp_path, {"ok": 1, "ng": 1}))
    with pytest.raises(
        DataError, match=r"no 'good' class among ng, ok; name the defect-free class"
    ):
        binary_view(images)
    assert binary_view(images, good_class="ok").labels.tolist() == [1, 0]


def test_binary_view_of_a_binary_set(tmp_path: Path) -> None:
    images = load_image_folder(folder_tree(tmp_path, {"good": 1, "defect": 1}))
    with pytest.raises(DataError, match="already binary"):
        binary_view(images)


def test_folder_needs_two_classes(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"has only good/; expected good/ and defect/ folders"):
        load_image_folder(folder_tree(tmp_path, {"good": 2}))


def test_folder_images_in_a_class_sub_folder_are_refused_not_dropped(tmp_path: Path) -> None:
    root = folder_tree(tmp_path, {"good": 1, "defect": 1})
    write_image(root / "defect" / "scratch" / "d.png")
    with pytest.raises(
        DataError,
        match=r"class folder .*defect has sub-folder\(s\) holding "
        r"images \(scratch\), which would not be read",
    ):
        load_image_folder(root)


def test_folder_images_of_several_sizes_preprocess_in_order(tmp_path: Path) -> None:
    from defectbench.data.preprocess import Preprocess, preprocess_set

    root = folder_tree(tmp_path, {"good": 1, "defect": 1})
    big = np.full((20, 30), 200, dtype=np.uint8)
    Image.fromarray(big, "L").save(root / "defect" / "001.png")
    images = load_image_folder(root)
    pre = Preprocess(16)
    together = preprocess_set(images, pre)
    one_by_one = np.concatenate([pre([images.load(i)]) for i in range(len(images))])
    np.testing.assert_array_equal(together, one_by_one)
    assert together.shape == (3, 3, 16, 16)


def test_folder_loose_images(tmp_path: Path) -> None:
    root = folder_tree(tmp_path, {"good": 1, "defect": 1})
    write_image(root / "unsorted.jpg")
    with pytest.raises(DataError, match=r"1 image\(s\) directly inside it \(unsorted.jpg\)"):
        load_image_folder(root)


def test_folder_empty_class_and_nested_images(tmp_path: Path) -> None:
    root = folder_tree(tmp_path, {"good": 1})
    write_image(root / "defect/scratch/000.png")
    with pytest.raises(
        DataError,
        match=r"class folder .*defect contains no images \(images must sit "
        r"directly in it; sub-folders are not read\)",
    ):
        load_image_folder(root)


def test_folder_extensions_any_case_and_junk_ignored(tmp_path: Path) -> None:
    for name in ("a.PNG", "b.Bmp", "c.jpg", "d.JPEG", "e.tif", "f.TIFF"):
        write_image(tmp_path / "defect" / name)
    write_image(tmp_path / "good/000.png")
    (tmp_path / "good/notes.txt").write_text("not an image")
    (tmp_path / "good/.DS_Store").write_bytes(b"\0\0")
    (tmp_path / "good/._000.png").write_bytes(b"\0\x05\x16\x07 AppleDouble")
    write_image(tmp_path / "__MACOSX/good/000.png")
    images = load_image_folder(tmp_path)
    assert images.ids == (
        "defect/a.PNG",
        "defect/b.Bmp",
        "defect/c.jpg",
        "defect/d.JPEG",
        "defect/e.tif",
        "defect/f.TIFF",
        "good/000.png",
    )
    assert [images.load(i).shape for i in range(len(images))] == [(SIZE, SIZE)] * 7


def test_pixel_modes_become_uint8_gray_or_rgb(tmp_path: Path) -> None:
    write_image(tmp_path / "good/gray.png")
    (tmp_path / "defect").mkdir()
    Image.new("RGBA", (SIZE, SIZE), (10, 20, 30, 255)).save(tmp_path / "good/rgba.png")
    Image.new("P", (SIZE, SIZE)).save(tmp_path / "good/palette.png")
    Image.new("1", (SIZE, SIZE), 1).save(tmp_path / "defect/bilevel.png")
    images = load_image_folder(tmp_path, check="decode")
    assert images.ids == ("defect/bilevel.png", "good/gray.png", "good/palette.png",
                          "good/rgba.png")
    assert images.load(0).shape == (SIZE, SIZE) and images.load(0).max() == 255
    assert images.load(2).shape == (SIZE, SIZE, 3)
    assert images.load(3)[0, 0].tolist() == [10, 20, 30]


@pytest.mark.parametrize("check", ["verify", "decode"])
@pytest.mark.parametrize("name, bits", [("rgb48.png", "RGB;16B"), ("rgb48.tif", "RGB;16"),
                                        ("rgba64.png", "RGBA;16B")])
def test_16_bit_colour_is_refused_not_cut_to_its_high_byte(
    tmp_path: Path, check: str, name: str, bits: str
) -> None:
    # PIL opens these as mode RGB/RGBA and keeps the high byte: 12-bit data reads near-black
    write_image(tmp_path / "good/gray.png")
    channels = 4 if "RGBA" in bits else 3
    pixels = np.full((SIZE, SIZE, channels), 2944, dtype=np.uint16)  # a 12-bit camera's range
    path = tmp_path / "defect" / name
    path.parent.mkdir()
    _write_16_bit_colour(path, pixels)
    with Image.open(path) as opened:
        assert opened.mode in ("RGB", "RGBA")  # the trap: the mode alone looks 8-bit
    with pytest.raises(DataError, match=rf"{name} \(16- or 32-bit samples .*{bits}.*8-bit"):
        load_image_folder(tmp_path, check=check)


def _write_16_bit_colour(path: Path, pixels: np.ndarray) -> None:
    """PIL cannot write 48/64-bit colour; write the PNG chunks or a minimal TIFF by hand."""
    import struct
    import zlib

    height, width, channels = pixels.shape
    if path.suffix == ".png":
        def chunk(kind: bytes, data: bytes) -> bytes:
            body = kind + data
            return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

        color_type = 6 if channels == 4 else 2
        raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels)
        path.write_bytes(
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b"")
        )
        return
    data = pixels.astype("<u2").tobytes()
    entries = [  # tag, type (3 short, 4 long), count, value
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 16), (259, 3, 1, 1),
        (262, 3, 1, 2), (273, 4, 1, 0), (277, 3, 1, channels), (278, 4, 1, height),
        (279, 4, 1, len(data)), (284, 3, 1, 1),
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    offset = 8 + ifd_size
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = offset if tag == 273 else value
        packed = struct.pack("<HI", value, 0)[:4] if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    path.write_bytes(b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + data)


def _two_page_tiff(path: Path, second_is_thumbnail: bool) -> None:
    """An 8x8 page, then a 4x4 one that NewSubfileType marks as a reduced-resolution copy of
    it or as a page of its own (PIL cannot write that tag per page)."""
    import struct

    pages = [(np.full((8, 8), 100, np.uint8), 0), (np.full((4, 4), 200, np.uint8),
                                                   int(second_is_thumbnail))]
    blob = bytearray(b"II*\0" + struct.pack("<I", 0))  # the first IFD's offset: set below
    pixel_offsets = []
    for pixels, _ in pages:
        pixel_offsets.append(len(blob))
        blob += pixels.tobytes()
    next_ifd_at = 4
    for (pixels, subfile), pixel_offset in zip(pages, pixel_offsets, strict=True):
        struct.pack_into("<I", blob, next_ifd_at, len(blob))
        height, width = pixels.shape
        entries = [(254, 4, subfile), (256, 4, width), (257, 4, height), (258, 3, 8),
                   (259, 3, 1), (262, 3, 1), (273, 4, pixel_offset), (277, 3, 1),
                   (278, 4, height), (279, 4, pixels.size)]
        blob += struct.pack("<H", len(entries))
        for tag, kind, value in entries:
            packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
            blob += struct.pack("<HHI", tag, kind, 1) + packed
        next_ifd_at = len(blob)
        blob += struct.pack("<I", 0)
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize("second_is_thumbnail", [True, False], ids=["thumbnail", "page"])
def test_a_tiff_thumbnail_is_no_second_page(tmp_path: Path, second_is_thumbnail: bool) -> None:
    write_image(tmp_path / "good/gray.png")
    (tmp_path / "defect").mkdir()
    _two_page_tiff(tmp_path / "defect/scan.tif", second_is_thumbnail)
    if second_is_thumbnail:
        images = load_image_folder(tmp_path, check="decode")
        assert images.load(0).shape == (8, 8) and images.load(0).max() == 100
    else:
        with pytest.raises(DataError, match=r"scan.tif \(2 frames or pages"):
            load_image_folder(tmp_path)


def test_a_camera_jpeg_with_its_preview_reads_as_one_image(tmp_path: Path) -> None:
    # cameras embed a reduced preview (MPF); Pillow opens it as a second MPO frame
    write_image(tmp_path / "good/gray.png")
    (tmp_path / "defect").mkdir()
    Image.new("RGB", (SIZE, SIZE), (200, 10, 10)).save(
        tmp_path / "defect/cam.jpg", format="MPO", save_all=True,
        append_images=[Image.new("RGB", (4, 4))])
    with Image.open(tmp_path / "defect/cam.jpg") as opened:
        assert opened.format == "MPO" and opened.n_frames == 2
    images = load_image_folder(tmp_path, check="decode")
    assert images.load(0).shape == (SIZE, SIZE, 3)


def test_a_565_bmp_is_8_bit_range_and_read(tmp_path: Path) -> None:
    # PIL's raw mode "BGR;16" is 5-6-5 packed pixels, not 16-bit samples
    import struct

    write_image(tmp_path / "good/gray.png")
    row = struct.pack("<H", 0xF800) * SIZE  # pure red; 16 bytes, already 4-aligned
    pixels = row * SIZE
    info = struct.pack("<IiiHHIIiiII", 40, SIZE, SIZE, 1, 16, 3, len(pixels), 2835, 2835, 0, 0)
    masks = struct.pack("<III", 0xF800, 0x07E0, 0x001F)
    offset = 14 + len(info) + len(masks)
    (tmp_path / "defect").mkdir()
    (tmp_path / "defect/red.bmp").write_bytes(
        b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + masks + pixels)
    images = load_image_folder(tmp_path, check="decode")
    assert images.load(0)[0, 0].tolist() == [255, 0, 0]


def test_a_multi_page_tiff_is_refused_not_read_as_its_first_page(tmp_path: Path) -> None:
    write_image(tmp_path / "good/gray.png")
    (tmp_path / "defect").mkdir()
    pages = [Image.new("L", (SIZE, SIZE), value) for value in (0, 100, 200)]
    pages[0].save(tmp_path / "defect/stack.tif", save_all=True, append_images=pages[1:])
    with pytest.raises(DataError, match=r"stack.tif \(3 frames or pages.*file of its own"):
        load_image_folder(tmp_path)


def test_decode_check_also_verifies_png_checksums(tmp_path: Path) -> None:
    # a flipped bit inside the compressed data can decode to wrong pixels without an error;
    # only the chunk's CRC, which verify() checks, tells
    folder_tree(tmp_path, {"good": 1, "defect": 1})
    path = tmp_path / "defect/flipped.png"
    Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64).astype(np.uint8)).save(
        path
    )
    data = bytearray(path.read_bytes())
    idat = data.index(b"IDAT")
    data[idat + 4 + 10] ^= 0x01
    path.write_bytes(bytes(data))
    for check in ("verify", "decode"):
        with pytest.raises(DataError, match=r"flipped.png \(\w+Error: .*(CRC|checksum|crc)"):
            load_image_folder(tmp_path, check=check)


def test_an_image_too_large_to_decode_safely_is_a_data_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PIL's DecompressionBombError is no OSError: uncaught, it escaped without the file's name
    images = load_image_folder(folder_tree(tmp_path, {"good": 1, "defect": 1}))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # an 8x8 image is over twice that
    with pytest.raises(
        DataError, match=r"cannot decode image .*defect/000\.png \(DecompressionBombError"
    ):
        images.load(0)


@pytest.mark.parametrize("name", ["img_0007", "002.png.bak", "002.png ", "003.pn"])
def test_images_without_an_image_extension_are_refused_not_skipped(
    tmp_path: Path, name: str
) -> None:
    folder_tree(tmp_path, {"good": 2, "defect": 1})
    Image.new("L", (SIZE, SIZE)).save(tmp_path / "defect" / name, format="PNG")
    with pytest.raises(DataError, match=r"1 image file\(s\) whose names do not end in an image"):
        load_image_folder(tmp_path)


def test_files_that_only_look_like_images_at_first_glance_are_left_alone(tmp_path: Path) -> None:
    folder_tree(tmp_path, {"good": 2, "defect": 1})
    (tmp_path / "good/NOTES").write_text("BMW line 3: camera moved on Tuesday")  # "BM"
    (tmp_path / "defect/IMG_0001.CR2").write_bytes(b"II*\0" + bytes(64))  # RAW: TIFF inside
    assert len(load_image_folder(tmp_path)) == 3


def test_links_into_a_content_store_are_distinct_images(tmp_path: Path) -> None:
    # git-annex and DVC keep identical contents as one object: two images, one target
    folder_tree(tmp_path, {"good": 1, "defect": 1})
    store = tmp_path / ".git/annex/objects"
    write_image(store / "SHA256E-s1--abc.png")
    for name in ("good/a.png", "good/b.png"):
        (tmp_path / name).symlink_to(store / "SHA256E-s1--abc.png")
    assert len(load_image_folder(tmp_path)) == 4


def test_a_linked_class_folder_is_refused(tmp_path: Path) -> None:
    folder_tree(tmp_path, {"good": 1, "defect": 2})
    (tmp_path / "scratch").symlink_to(tmp_path / "defect")
    with pytest.raises(DataError, match=r"defect/000.png and \S+/scratch/000.png are one file"):
        load_image_folder(tmp_path)


def test_one_file_under_two_names_is_refused(tmp_path: Path) -> None:
    folder_tree(tmp_path, {"good": 2, "defect": 1})
    (tmp_path / "defect/linked.png").symlink_to(tmp_path / "good/000.png")
    with pytest.raises(
        DataError, match=r"defect/linked.png and \S+/good/000.png are one file.*remove the link"
    ):
        load_image_folder(tmp_path)


@pytest.mark.parametrize("check", ["verify", "decode"])
def test_wide_pixels_are_refused_while_indexing(tmp_path: Path, check: str) -> None:
    write_image(tmp_path / "good/gray.png")
    (tmp_path / "defect").mkdir()
    Image.new("I;16", (SIZE, SIZE), 1000).save(tmp_path / "defect/wide.png")
    with pytest.raises(DataError, match=r"wide.png \(PIL mode 'I;16'.*convert the file to 8-bit"):
        load_image_folder(tmp_path, check=check)


@pytest.mark.parametrize("mode, colour", [("RGBA", (255, 0, 0, 0)), ("LA", (200, 10))])
def test_transparent_pixels_are_refused_not_read_as_opaque(
    tmp_path: Path, mode: str, colour: tuple
) -> None:
    # a transparent pixel's hidden colour (here red) would otherwise be read as the image
    write_image(tmp_path / "good/gray.png")
    (tmp_path / "defect").mkdir()
    Image.new(mode, (SIZE, SIZE), colour).save(tmp_path / "defect/alpha.png")
    with pytest.raises(DataError, match="alpha.png .*transparent pixels.*flatten"):
        load_image_folder(tmp_path, check="decode")
    images = load_image_folder(tmp_path)  # 'verify' does not decode: refused at load instead
    with pytest.raises(DataError, match="alpha.png has transparent pixels"):
        images.load(0)


def test_one_transparent_pixel_among_opaque_ones_is_refused(tmp_path: Path) -> None:
    write_image(tmp_path / "good/gray.png")
    (tmp_path / "defect").mkdir()
    image = Image.new("RGBA", (SIZE, SIZE), (10, 10, 10, 255))
    image.putpixel((3, 3), (255, 0, 0, 0))
    image.save(tmp_path / "defect/alpha.png")
    with pytest.raises(DataError, match="alpha.png .*transparent pixels"):
        load_image_folder(tmp_path, check="decode")


def test_loader_pickles_for_worker_processes(tmp_path: Path) -> None:
    images = load_image_folder(folder_tree(tmp_path, {"good": 1, "defect": 1}))
    loader = pickle.loads(pickle.dumps(images.loader))
    np.testing.assert_array_equal(loader(1), images.load(1))


def test_subsets_and_in_memory_sets_pickle_too(tmp_path: Path) -> None:
    images = load_dagm(dagm_tree(tmp_path))  # the docstring's way to pick a split is subset()
    test = images.subset(images.metadata["split"] == "test")
    copy = pickle.loads(pickle.dumps(test))
    assert copy.ids == test.ids and len(copy) == 6
    for i in range(len(test)):
        np.testing.assert_array_equal(copy.load(i), test.load(i))
    pixels = np.arange(2 * SIZE * SIZE, dtype=np.uint8).reshape(2, SIZE, SIZE)
    decoded = in_memory(["a", "b"], np.array([0, 1]), pixels).subset([1])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(decoded)).load(0), pixels[1])


# --- nothing is dropped without a word -----------------------------------------------------


def test_mvtec_images_in_a_defect_type_sub_folder_are_refused(tmp_path: Path) -> None:
    mvtec_tree(tmp_path)
    write_image(tmp_path / "bottle/test/contamination/more/001.png", "RGB")
    with pytest.raises(
        DataError, match=r"contamination has sub-folder\(s\) holding images \(more\)"
    ):
        load_mvtec_ad(tmp_path, "bottle")


def test_neu_images_in_a_class_sub_folder_are_refused(tmp_path: Path) -> None:
    neu_folder_tree(tmp_path)
    write_image(tmp_path / "Cr/more/Cr_3.bmp")
    with pytest.raises(DataError, match=r"Cr .*sub-folder\(s\) holding images \(more\)"):
        load_neu_cls(tmp_path)


def test_neu_flat_set_with_a_sub_folder_of_images_is_refused(tmp_path: Path) -> None:
    neu_flat_tree(tmp_path)
    write_image(tmp_path / "extra/Cr_9.bmp")
    (tmp_path / "__MACOSX").mkdir()
    write_image(tmp_path / "__MACOSX/._Cr_1.bmp")  # resource forks are not images: ignored
    with pytest.raises(DataError, match=r"directly and in sub-folder\(s\) \(extra\)"):
        load_neu_cls(tmp_path)


def test_neu_file_named_after_another_class_is_refused(tmp_path: Path) -> None:
    neu_folder_tree(tmp_path)
    write_image(tmp_path / "Cr/Sc_7.bmp")
    with pytest.raises(
        DataError, match=r"class Cr folder .* named after another class \(Sc_7.bmp\)"
    ):
        load_neu_cls(tmp_path)


@pytest.mark.parametrize("extension", [".webp", ".GIF"])
def test_images_in_a_format_not_read_are_refused_not_skipped(
    tmp_path: Path, extension: str
) -> None:
    folder_tree(tmp_path, {"good": 2, "defect": 1})
    Image.new("L", (SIZE, SIZE)).save(tmp_path / f"defect/002{extension}")
    with pytest.raises(
        DataError, match=rf"1 image\(s\) in a format .*002\{extension}.*convert them"
    ):
        load_image_folder(tmp_path)


def test_every_extension_pillow_reads_as_a_read_format_is_read_or_refused() -> None:
    """A dataset saved with another name of a read format (`.jpe`, `.dib`, `.apng`) must not
    be skipped as if it were not an image; Pillow's registry says which names those are."""
    from PIL import Image as PILImage

    from defectbench.data._files import _UNREAD_IMAGE_EXTENSIONS, IMAGE_EXTENSIONS

    read_formats = {"JPEG", "MPO", "PNG", "BMP", "DIB", "TIFF"}
    aliases = {
        ext for ext, fmt in PILImage.registered_extensions().items() if fmt in read_formats
    }
    assert {".jpe", ".dib", ".apng"} <= aliases  # the registry is the one this test expects
    assert aliases <= set(IMAGE_EXTENSIONS) | set(_UNREAD_IMAGE_EXTENSIONS)


@pytest.mark.parametrize("extension", [".jpe", ".DIB"])
def test_other_names_of_read_formats_are_refused_not_skipped(
    tmp_path: Path, extension: str
) -> None:
    folder_tree(tmp_path, {"good": 2, "defect": 1})
    fmt = "JPEG" if extension == ".jpe" else "BMP"
    Image.new("L", (SIZE, SIZE)).save(tmp_path / f"defect/002{extension}", format=fmt)
    with pytest.raises(DataError, match=rf"1 image\(s\) in a format .*002\{extension}"):
        load_image_folder(tmp_path)


def test_two_spellings_of_one_folder_are_refused(tmp_path: Path) -> None:
    dagm_tree(tmp_path, classes=(1,))
    write_image(tmp_path / "Class1/Train/label/0001_label.PNG")
    with pytest.raises(
        DataError, match=r"2 folders named Label in different case \(Label/, label/\)"
    ):
        load_dagm(tmp_path)


@pytest.mark.parametrize("with_table", [False, True], ids=["masks-only", "labels-txt"])
def test_dagm_mask_without_its_image_is_refused(tmp_path: Path, with_table: bool) -> None:
    dagm_split(tmp_path / "Class3/Train", ["0001", "0002"], {"0001"}, with_table=with_table)
    dagm_split(tmp_path / "Class3/Test", ["0003"], set(), with_table=with_table)
    write_image(tmp_path / "Class3/Train/Label/0009_label.PNG", value=255)
    with pytest.raises(DataError, match=r"1 defect mask\(s\) whose image is missing .*0009_label"):
        load_dagm(tmp_path)


# --- errors every loader shares ------------------------------------------------------------

LOADERS: dict[str, tuple[Callable[[Path], Path], Callable[..., ImageSet], str]] = {
    # name: (build a tree, load it, one image file in it)
    "dagm": (dagm_tree, load_dagm, "Class2/Test/0004.PNG"),
    "folder": (
        lambda root: folder_tree(root, {"good": 2, "defect": 2}),
        load_image_folder,
        "defect/001.png",
    ),
    "mvtec": (
        mvtec_tree,
        lambda root, **kw: load_mvtec_ad(root, "bottle", **kw),
        "bottle/test/good/001.png",
    ),
    "neu": (neu_flat_tree, load_neu_cls, "PS_2.bmp"),
}
LOADER_NAMES = sorted(LOADERS)


@pytest.mark.parametrize("name", LOADER_NAMES)
def test_missing_root_names_the_path(tmp_path: Path, name: str) -> None:
    _, load, _ = LOADERS[name]
    with pytest.raises(DataError, match=r"nowhere does not exist; expected"):
        load(tmp_path / "nowhere")


@pytest.mark.parametrize("name", LOADER_NAMES)
def test_root_that_is_a_file(tmp_path: Path, name: str) -> None:
    _, load, _ = LOADERS[name]
    (tmp_path / "data.zip").write_bytes(b"PK")
    with pytest.raises(DataError, match=r"data.zip is a file, not a folder"):
        load(tmp_path / "data.zip")


@pytest.mark.parametrize("name", LOADER_NAMES)
def test_text_file_named_as_image_fails_at_indexing(tmp_path: Path, name: str) -> None:
    build, load, image = LOADERS[name]
    root = build(tmp_path)
    (root / image).write_text("this is not an image")
    with pytest.raises(
        DataError,
        match=rf"1 of \d+ image files cannot be read: .*{Path(image).name} "
        r"\(UnidentifiedImageError.*re-download",
    ):
        load(root)


@pytest.mark.parametrize("name", LOADER_NAMES)
def test_unknown_check_is_a_config_error(tmp_path: Path, name: str) -> None:
    build, load, _ = LOADERS[name]
    with pytest.raises(
        ConfigError, match="unknown image check 'full'; choose one of verify, decode"
    ):
        load(build(tmp_path), check="full")


@pytest.mark.parametrize("name", LOADER_NAMES)
def test_every_image_decodes(tmp_path: Path, name: str) -> None:
    build, load, _ = LOADERS[name]
    images = load(build(tmp_path), check="decode")
    assert len(images) > 0
    assert all(pixels.shape[:2] == (SIZE, SIZE) for pixels in images.load_all())


@pytest.mark.parametrize("drop", [None, 12], ids=["half", "no-iend-chunk"])
def test_truncated_png_fails_at_indexing(tmp_path: Path, drop: int | None) -> None:
    root = mvtec_tree(tmp_path)
    truncate(root / "bottle/test/good/001.png", drop)
    with pytest.raises(DataError, match=r"cannot be read: .*good/001.png"):
        load_mvtec_ad(root, "bottle")


def test_truncated_bmp_fails_at_load_or_with_decode_check(tmp_path: Path) -> None:
    root = neu_flat_tree(tmp_path)
    truncate(root / "In_2.bmp")
    # PIL's verify() does not read BMP pixel data, so the default check lets it through...
    images = load_neu_cls(root)
    index = images.ids.index("In_2.bmp")
    images.load(index - 1)
    with pytest.raises(
        DataError,
        match=r"cannot decode image .*In_2.bmp \(OSError: image file is "
        r"truncated.*re-download or delete it",
    ):
        images.load(index)
    # ...and check="decode" catches it before training starts.
    with pytest.raises(DataError, match=r"1 of 12 image files cannot be read: .*In_2.bmp"):
        load_neu_cls(root, check="decode")


def test_file_deleted_after_indexing(tmp_path: Path) -> None:
    images = load_dagm(dagm_tree(tmp_path, classes=(1,)))
    (tmp_path / "Class1/Train/0003.PNG").unlink()
    with pytest.raises(DataError, match=r"cannot decode image .*0003.PNG \(FileNotFoundError"):
        images.load(2)


def test_many_corrupt_files_are_listed_together(tmp_path: Path) -> None:
    root = neu_flat_tree(tmp_path, per_class=2)
    for path in sorted(root.iterdir())[:7]:
        path.write_bytes(b"")
    with pytest.raises(DataError, match=r"7 of 12 image files cannot be read: .*; and 2 more; "):
        load_neu_cls(root)


def test_good_folders_in_two_cases_are_refused_not_read_as_two_classes(tmp_path: Path) -> None:
    # `Good/` beside `good/` was a class of its own, and its images counted as defective
    folder_tree(tmp_path / "folder", {"good": 1, "Good": 1, "defect": 1})
    with pytest.raises(DataError, match=r"class folders whose names differ only in case"):
        load_image_folder(tmp_path / "folder")
    mvtec_tree(tmp_path / "mvtec")
    write_image(tmp_path / "mvtec/bottle/test/Good/009.png")
    with pytest.raises(DataError, match=r"defect-type folders .*\(Good/ and good/\)"):
        load_mvtec_ad(tmp_path / "mvtec", "bottle")


def test_mvtec_good_folder_in_capitals_is_good(tmp_path: Path) -> None:
    mvtec_tree(tmp_path)
    (tmp_path / "bottle/test/good").rename(tmp_path / "bottle/test/GOOD")
    images = load_mvtec_ad(tmp_path, "bottle")
    good = images.metadata["defect_type"] == "GOOD"
    assert good.any() and not images.labels[good].any() and images.labels[~good].all()


def test_broken_image_links_are_refused_not_dropped(tmp_path: Path) -> None:
    # a git-annex or DVC checkout whose content was never fetched
    folder_tree(tmp_path, {"good": 1, "defect": 1})
    (tmp_path / "defect/unfetched.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(DataError, match=r"1 broken symbolic link.*unfetched.png.*git annex get"):
        load_image_folder(tmp_path)


def test_dagm_images_outside_train_test_and_label_are_refused(tmp_path: Path) -> None:
    dagm_tree(tmp_path / "sub", classes=(1,))
    write_image(tmp_path / "sub/Class1/Train/extra/0009.PNG")
    with pytest.raises(DataError, match=r"DAGM split folder .*Train has sub-folder.*extra"):
        load_dagm(tmp_path / "sub")
    dagm_tree(tmp_path / "loose", classes=(1,))
    write_image(tmp_path / "loose/Class1/0009.PNG")
    with pytest.raises(DataError, match=r"Class1 has 1 image\(s\) directly inside it"):
        load_dagm(tmp_path / "loose")
    dagm_tree(tmp_path / "other", classes=(1,))
    write_image(tmp_path / "other/Class1/Val/0009.PNG")
    with pytest.raises(DataError, match=r"DAGM class folder .*Class1 has sub-folder.*Val"):
        load_dagm(tmp_path / "other")


# --- inputs found by the data-loader probe -------------------------------------------------


def test_mvtec_masks_without_their_images_are_refused_not_dropped(tmp_path: Path) -> None:
    # a lost test image, and a whole defect type lost in extraction, leave only their masks
    mvtec_tree(tmp_path)
    write_image(tmp_path / "bottle/ground_truth/broken_large/002_mask.png")
    write_image(tmp_path / "bottle/ground_truth/scratch/000_mask.png")
    with pytest.raises(DataError, match=r"ground_truth has 2 defect mask\(s\) whose image is "
                       r"missing from .*bottle/test \(broken_large/002_mask.png, "
                       r"scratch/000_mask.png\): those defective images would not be read; "
                       r"re-extract the category"):
        load_mvtec_ad(tmp_path, "bottle")
    # the train split has no masks: only the test split is checked against them
    assert len(load_mvtec_ad(tmp_path, "bottle", "train")) == 3


def test_mvtec_masks_in_a_capitalised_ground_truth_folder_are_checked_too(
    tmp_path: Path,
) -> None:
    # found like train/ and test/, ignoring case: Ground_Truth/ is no reason to skip the check
    mvtec_tree(tmp_path)
    (tmp_path / "bottle/ground_truth").rename(tmp_path / "bottle/Ground_Truth")
    (tmp_path / "bottle/test/contamination/000.png").unlink()
    write_image(tmp_path / "bottle/test/contamination/001.png", "RGB")
    with pytest.raises(DataError, match=r"Ground_Truth has 1 defect mask\(s\) whose image is "
                       r"missing .*\(contamination/000_mask.png\)"):
        load_mvtec_ad(tmp_path, "bottle")


def test_mvtec_masks_match_their_images_in_any_case(tmp_path: Path) -> None:
    mvtec_tree(tmp_path)
    (tmp_path / "bottle/ground_truth/Contamination").mkdir()
    (tmp_path / "bottle/ground_truth/contamination/000_mask.png").rename(
        tmp_path / "bottle/ground_truth/Contamination/000_MASK.PNG"
    )
    (tmp_path / "bottle/ground_truth/contamination").rmdir()
    assert load_mvtec_ad(tmp_path, "bottle").labels.tolist() == [1, 1, 1, 0, 0]


def test_a_hidden_image_is_refused_while_dot_files_that_are_no_images_are_ignored(
    tmp_path: Path,
) -> None:
    root = folder_tree(tmp_path, {"good": 1, "defect": 1})
    (root / "defect/.DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(20))
    (root / "defect/._000.png").write_bytes(b"\x00\x05\x16\x07" + bytes(40))  # AppleDouble
    # a download's or rsync's temporary copy: an image's bytes under another extension
    for temporary in (".002.png.tmp", ".003.png.Xy7Qz1"):
        write_image(tmp_path / "staged.png").rename(root / "defect" / temporary)
    assert len(load_image_folder(root)) == 2
    write_image(root / "defect/.001.png")
    with pytest.raises(DataError, match=r"defect holds 1 hidden image file\(s\) \(.001.png\), "
                       r"which would not be read: .*rename them without the leading dot"):
        load_image_folder(root)


def test_names_that_are_not_utf8_are_refused_with_their_bytes(tmp_path: Path) -> None:
    root = folder_tree(tmp_path, {"good": 1, "defect": 1})
    latin1 = os.fsdecode(os.fsencode(root / "defect") + b"/d\xe9faut.png")
    try:
        write_image(Path(latin1))
    except (OSError, UnicodeError):
        pytest.skip("this file system does not store names that are not UTF-8")
    with pytest.raises(DataError, match=r"1 file or folder name\(s\) under .* are not valid "
                       r"UTF-8 \(defect/d\\xe9faut.png\); rename them to UTF-8") as info:
        load_image_folder(root)
    str(info.value).encode("utf-8")  # the message itself prints anywhere


def test_dagm_table_without_its_header_line_reads_its_first_row(tmp_path: Path) -> None:
    # skipping line 1 dropped its row: 0001 would be labelled from the masks alone
    root = dagm_tree(tmp_path, classes=(1,))
    table = root / "Class1/Train/Label/Labels.txt"
    table.write_text("1\t1\t0001.PNG\t0\t0001_label.PNG\n2\t1\t0002.PNG\t0\t0002_label.PNG\n")
    with pytest.raises(DataError, match=r"line 1 marks 0001.PNG defective but Label/ has no "
                       r"0001_label.PNG"):
        load_dagm(root)


def test_dagm_label_table_that_is_a_folder_or_spelt_twice(tmp_path: Path) -> None:
    root = dagm_tree(tmp_path, classes=(1,))
    label_dir = root / "Class1/Test/Label"
    (label_dir / "LABELS.TXT").write_bytes((label_dir / "Labels.txt").read_bytes())
    with pytest.raises(DataError, match=r"has 2 label tables in different case "
                       r"\(LABELS.TXT, Labels.txt\); keep one"):
        load_dagm(root)
    (label_dir / "LABELS.TXT").unlink()
    (label_dir / "Labels.txt").unlink()
    (label_dir / "Labels.txt").mkdir()
    with pytest.raises(DataError, match=r"Labels.txt is not a file; .*re-extract"):
        load_dagm(root)


def test_dagm_class_unpacked_both_flat_and_nested_is_refused_not_half_read(
    tmp_path: Path,
) -> None:
    # Class1/Train and Class1/Class1/Train (an archive extracted twice): reading only the
    # nested copy dropped the other's images without a word
    root = dagm_tree(tmp_path, classes=(1,))
    dagm_split(root / "Class1/Class1/Train", ["0009"], set())
    dagm_split(root / "Class1/Class1/Test", ["0008"], {"0008"})
    with pytest.raises(
        DataError, match=r"DAGM class folder .*Class1 has sub-folder\(s\) holding images \(Class1\)"
    ):
        load_dagm(root)


def test_dagm_label_table_listing_an_image_twice_is_refused(tmp_path: Path) -> None:
    # the later row silently won: 0002 read as defect-free, its mask then ignored
    root = dagm_tree(tmp_path, classes=(1,))
    table = root / "Class1/Train/Label/Labels.txt"
    table.write_text(table.read_text() + "4\t1\t0002.png\t0\t0002_label.PNG\n")
    with pytest.raises(DataError, match=r"Labels.txt lists 0002.png twice \(lines 3 and 5\)"):
        load_dagm(root)


def test_dagm_label_table_rows_name_their_mask_or_0_for_the_usual_name(tmp_path: Path) -> None:
    # a label file column of 0 means "none named": the mask is then Label/<stem>_label.PNG;
    # a named mask is looked up under its own name
    root = dagm_tree(tmp_path, classes=(1,))
    label_dir = root / "Class1/Train/Label"
    (label_dir / "Labels.txt").write_text(
        "1\n1\t0\t0001.PNG\t0\t0\n2\t1\t0002.PNG\t0\t0\n3\t1\t0003.PNG\t0\tdent3.PNG\n"
    )
    write_image(label_dir / "dent3.PNG", value=255)
    assert load_dagm(root).labels.tolist() == [0, 1, 1, 0, 1]


@pytest.mark.parametrize("where", ["defect/.extra", ".extra", ".extra/defect"])
def test_a_hidden_folder_of_images_is_refused_not_skipped(tmp_path: Path, where: str) -> None:
    # a class folder's `.extra/`, or a `.extra/` class tree beside the class folders, was
    # skipped like a hidden file: its images dropped without a word
    root = folder_tree(tmp_path, {"good": 1, "defect": 1})
    write_image(root / where / "007.png")
    parent = (root / where).parent
    parent = parent if parent.name != ".extra" else root
    with pytest.raises(
        DataError,
        match=rf"^{parent} has 1 hidden folder\(s\) holding images \(\.extra/\), which would not "
        r"be read: folders whose names start with a dot are skipped; move the images ",
    ):
        load_image_folder(root)


def test_tool_folders_and_hidden_folders_without_images_are_ignored(tmp_path: Path) -> None:
    root = folder_tree(tmp_path, {"good": 1, "defect": 1})
    # copies and caches of the set's own images, version-control objects, trash
    write_image(root / "defect/.ipynb_checkpoints/000-checkpoint.png")
    write_image(root / "good/.thumbnails/normal/000.png")
    write_image(root / ".git/lfs/objects/ab/cd/000.png")
    write_image(root / ".dvc/cache/000.png")
    write_image(root / ".Trash-1000/files/deleted.png")
    # a cloned dataset's README figures, a sync tool's old versions, a virtualenv's sample images
    write_image(root / ".github/assets/example.png")
    write_image(root / ".stversions/defect/000~20261130.png")
    write_image(root / ".venv/lib/sample_data/grace_hopper.png")
    (root / ".notes").mkdir()
    (root / ".notes/notes.txt").write_text("no images here")
    # a resource fork in a hidden folder is no image either
    (root / "defect/.meta").mkdir()
    (root / "defect/.meta/._000.png").write_bytes(b"\x00\x05\x16\x07" + bytes(40))
    assert load_image_folder(root).ids == ("defect/000.png", "good/000.png")


def test_tool_folders_below_a_sub_folder_are_ignored_too(tmp_path: Path) -> None:
    # a notebook folder beside the images: only Jupyter's checkpoint copies hold images
    root = folder_tree(tmp_path, {"good": 1, "defect": 1})
    write_image(root / "defect/notebooks/.ipynb_checkpoints/000-checkpoint.png")
    assert load_image_folder(root).ids == ("defect/000.png", "good/000.png")


def test_a_dataset_folder_in_an_unknown_users_home_is_named(tmp_path: Path) -> None:
    # pathlib raised a bare RuntimeError ("Could not determine home directory")
    with pytest.raises(ConfigError, match=r"the dataset folder starts with the home folder of a "
                       r"user this machine does not know \(~no-such-user-here/set\)"):
        load_image_folder("~no-such-user-here/set")


def test_a_hidden_folder_of_images_below_a_sub_folder_is_not_skipped(tmp_path: Path) -> None:
    root = folder_tree(tmp_path, {"good": 1, "defect": 1})
    write_image(root / "defect/scratch/.old/007.png")
    with pytest.raises(DataError, match=r"has sub-folder\(s\) holding images \(scratch\)"):
        load_image_folder(root)


def test_mvtec_and_neu_refuse_hidden_folders_of_images(tmp_path: Path) -> None:
    root = mvtec_tree(tmp_path / "mvtec")
    write_image(root / "bottle/test/broken_large/.more/009.png")
    with pytest.raises(DataError, match=r"broken_large has 1 hidden folder\(s\) holding images"):
        load_mvtec_ad(root, "bottle")
    neu = neu_flat_tree(tmp_path / "neu")
    write_image(neu / ".backup/Cr_3.bmp")
    with pytest.raises(DataError, match=r"neu has 1 hidden folder\(s\) holding images"):
        load_neu_cls(neu)
