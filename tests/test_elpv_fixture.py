"""The committed ELPV split: counts, determinism, stratification and loud failures."""

import json
import shutil
from collections import Counter

import numpy as np
import pytest
import torch

from defectbench.cli import main
from defectbench.data import elpv, fixture
from defectbench.data.image_set import in_memory
from defectbench.data.preprocess import Preprocess, PreprocessedRows, preprocess_set
from defectbench.errors import ConfigError, DataError, FixtureMismatchError, UnknownNameError


@pytest.fixture(scope="module")
def elpv_fixture():
    return fixture.load_fixture()


def test_elpv_counts_match_the_published_dataset():
    data = elpv.load_elpv()
    assert len(data) == 2624
    assert int(data.labels.sum()) == 821  # p >= 0.5
    assert Counter(data.metadata["severity"].tolist()) == {0: 1508, 1: 295, 2: 106, 3: 715}
    assert Counter(data.metadata["cell_type"].tolist()) == {"mono": 1074, "poly": 1550}
    assert data.load(0).shape == (300, 300) and data.load(0).dtype == np.uint8


@pytest.mark.parametrize("threshold, expected", [(0.5, 821), (0.3, 1116), (1.0, 715)])
def test_defect_threshold_is_configurable(threshold, expected):
    assert int(elpv.load_elpv(threshold).labels.sum()) == expected


def test_severity_levels_read_rounded_probabilities_and_refuse_others():
    # probabilities as split.csv writes them (6 decimals) are still the levels 1/3 and 2/3
    levels = elpv.severity_level(np.array([0.0, 0.333333, 0.666667, 1.0]))
    assert levels.tolist() == [0, 1, 2, 3]
    with pytest.raises(DataError, match="multiples of 1/3"):
        elpv.severity_level(np.array([0.0, 0.5]))


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_bad_defect_threshold_is_refused(bad):
    with pytest.raises(ConfigError, match=r"outside \(0, 1\]"):
        elpv.defect_labels(np.array([0.0, 1.0]), bad)


def test_split_partitions_every_cell_once_with_val_about_a_quarter(elpv_fixture):
    sizes = {s: len(elpv_fixture.split(s)) for s in fixture.SPLITS}
    assert sum(sizes.values()) == 2624
    ids = [set(elpv_fixture.split(s).ids) for s in fixture.SPLITS]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert 0.24 <= sizes["val"] / 2624 <= 0.26
    assert 190 <= int(elpv_fixture.split("val").labels.sum()) <= 220


def test_split_is_stratified_by_severity_and_cell_type(elpv_fixture):
    data = elpv_fixture.data
    val = elpv_fixture.split("val")
    for sev in range(4):
        for cell_type in ("mono", "poly"):
            n_all = np.sum(
                (data.metadata["severity"] == sev) & (data.metadata["cell_type"] == cell_type)
            )
            n_val = np.sum(
                (val.metadata["severity"] == sev) & (val.metadata["cell_type"] == cell_type)
            )
            assert abs(n_val - 0.25 * n_all) <= 1


def test_committed_split_is_what_the_split_function_makes(elpv_fixture):
    meta = json.loads((elpv_fixture.directory / "fixture.json").read_text())
    assert fixture.make_elpv_split(meta["seed"]) == elpv_fixture.assignment


def test_unknown_split_name_lists_the_choices(elpv_fixture):
    with pytest.raises(
        UnknownNameError, match="unknown split 'test'; choose one of train, dev, val"
    ):
        elpv_fixture.split("test")


def test_edited_split_file_is_detected(tmp_path, elpv_fixture):
    target = tmp_path / "elpv"
    shutil.copytree(elpv_fixture.directory, target)
    lines = (target / "split.csv").read_text().splitlines(keepends=True)
    edited = lines[5].replace(",train,", ",dev,")
    assert edited != lines[5], "the test needs a train row to move"
    lines[5] = edited
    (target / "split.csv").write_text("".join(lines))
    with pytest.raises(FixtureMismatchError, match="was modified: sha256 .* restore it from git"):
        fixture.load_fixture(target)


def test_changed_installed_data_fails_loudly_with_both_hashes(monkeypatch, elpv_fixture):
    real = elpv.load_elpv()
    images = np.stack(real.load_all(range(len(real))))
    images[7, 0, 0] ^= 1  # one pixel of one cell differs
    altered = in_memory(real.ids, real.labels, images, metadata=real.metadata)
    monkeypatch.setattr(fixture, "load_elpv", lambda threshold=0.5: altered)
    with pytest.raises(FixtureMismatchError) as info:
        fixture.load_fixture()
    assert elpv_fixture.content_sha256 in str(info.value)
    assert "never redone silently" in str(info.value)


def test_missing_or_corrupt_fixture_files_are_reported(tmp_path, elpv_fixture):
    with pytest.raises(DataError, match="fixture.json is missing"):
        fixture.load_fixture(tmp_path)
    shutil.copytree(elpv_fixture.directory, tmp_path / "elpv")
    (tmp_path / "elpv" / "fixture.json").write_text("{not json")
    with pytest.raises(DataError, match="fixture.json is corrupt"):
        fixture.load_fixture(tmp_path / "elpv")


def test_fixture_files_that_are_not_utf8_are_reported_as_corrupt(tmp_path, elpv_fixture):
    shutil.copytree(elpv_fixture.directory, tmp_path / "elpv")
    (tmp_path / "elpv" / "fixture.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(DataError, match="fixture.json is corrupt .*restore it from git"):
        fixture.load_fixture(tmp_path / "elpv")


def _rewrite_split(target, edit):
    """Edit split.csv and record its new hash in fixture.json, as a hand-edit or merge would."""
    import hashlib

    csv_path, meta_path = target / "split.csv", target / "fixture.json"
    raw = edit(csv_path.read_bytes())
    csv_path.write_bytes(raw)
    meta = json.loads(meta_path.read_text())
    meta["split_sha256"] = hashlib.sha256(raw).hexdigest()
    meta_path.write_text(json.dumps(meta))


def test_rows_in_an_unknown_split_are_refused_not_dropped(tmp_path, elpv_fixture):
    target = tmp_path / "elpv"
    shutil.copytree(elpv_fixture.directory, target)
    _rewrite_split(target, lambda raw: raw.replace(b",val,", b",Val,", 1))
    with pytest.raises(FixtureMismatchError, match=r"unknown split\(s\) \['Val'\]"):
        fixture.load_fixture(target)
    shutil.rmtree(target)
    shutil.copytree(elpv_fixture.directory, target)
    _rewrite_split(target, lambda raw: raw.replace(b"id,split", b"id,part", 1))
    with pytest.raises(FixtureMismatchError, match=r"has columns \['id', 'part', .*restore"):
        fixture.load_fixture(target)


def _edited_copy(tmp_path, elpv_fixture, edit):
    target = tmp_path / "elpv"
    shutil.copytree(elpv_fixture.directory, target)
    _rewrite_split(target, edit)
    return target


@pytest.mark.parametrize("edit, match", [
    # cell0001 is in train: a second row (a bad merge) would move it to val without a word
    (lambda raw: raw + b"images/cell0001.png,val,1.000000,mono\n",
     r"2625 rows .*1 ids listed more than once \(images/cell0001.png\)"),
    (lambda raw: raw.replace(b"images/cell0002.png,", b"images/cell9999.png,", 1),
     r"1 installed images not listed \(images/cell0002.png\); 1 ids not among the installed "
     r"images \(images/cell9999.png\)"),
    (lambda raw: raw.replace(b"images/cell0001.png,train,1.000000,mono",
                             b"images/cell0001.png,train,0.000000,poly", 1),
     r"disagrees with the installed labels for 1 cell\(s\) \(images/cell0001.png: "
     r"0.000000,poly but the data says 1.000000,mono\)"),
    # the cell type alone edited: per-cell-type results would count the cell in the wrong group
    (lambda raw: raw.replace(b"images/cell0001.png,train,1.000000,mono",
                             b"images/cell0001.png,train,1.000000,poly", 1),
     r"disagrees with the installed labels for 1 cell\(s\) \(images/cell0001.png: "
     r"1.000000,poly but the data says 1.000000,mono\)"),
], ids=["listed-twice", "unknown-id", "label-edited", "cell-type-edited"])
def test_hand_edits_of_the_split_file_are_refused(tmp_path, elpv_fixture, edit, match):
    # the hash in fixture.json was updated with the edit, as a merge would: only the rows tell
    assert elpv_fixture.assignment["images/cell0001.png"] == "train"
    with pytest.raises(FixtureMismatchError, match=match):
        fixture.load_fixture(_edited_copy(tmp_path, elpv_fixture, edit))


def test_a_byte_order_mark_is_read_past(tmp_path, elpv_fixture):
    target = _edited_copy(tmp_path, elpv_fixture, lambda raw: b"\xef\xbb\xbf" + raw)
    assert fixture.load_fixture(target).assignment == elpv_fixture.assignment


def test_a_damaged_elpv_package_names_the_fix(monkeypatch):
    import elpv_dataset.utils

    def broken(path):
        raise OSError("image file is truncated (3 bytes not processed)")

    monkeypatch.setattr(elpv_dataset.utils, "load_dataset", broken)
    elpv._read_package.cache_clear()
    try:
        with pytest.raises(DataError, match=r"elpv-dataset package .* cannot be read \(OSError: "
                           r"image file is truncated.*pip install --force-reinstall"):
            elpv.load_elpv()
    finally:
        elpv._read_package.cache_clear()


def test_an_image_missing_from_the_split_is_refused_not_left_unscored(tmp_path, elpv_fixture):
    # a row lost in a merge would leave its image in no split: never trained on, never scored
    target = tmp_path / "elpv"
    shutil.copytree(elpv_fixture.directory, target)
    _rewrite_split(target, lambda raw: raw.replace(
        b"images/cell0002.png,val,1.000000,mono\n", b"", 1))
    with pytest.raises(FixtureMismatchError,
                       match=r"lists 2623 rows for 2624 installed images: 1 installed "
                             r"images not listed \(images/cell0002.png\); restore the fixture "
                             r"from git"):
        fixture.load_fixture(target)


def test_fixture_of_another_version_is_refused(tmp_path, elpv_fixture):
    target = tmp_path / "elpv"
    shutil.copytree(elpv_fixture.directory, target)
    meta = json.loads((target / "fixture.json").read_text())
    meta["fixture_version"] = 2
    (target / "fixture.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="fixture_version 2; this defectbench reads version 1"):
        fixture.load_fixture(target)


def test_make_fixture_writes_where_told_and_never_over_a_fixture_unasked(
    tmp_path, capsys, monkeypatch, elpv_fixture
):
    written = []
    monkeypatch.setattr(
        fixture, "write_elpv_fixture",
        lambda directory, seed: written.append((directory, seed)) or {"content_sha256": "x"},
    )
    # an option before the action word was reset by the action's own default
    assert main(["data", "--fixture-dir", str(tmp_path / "new"), "make-fixture"]) == 0
    assert main(["data", "make-fixture", "--fixture-dir", str(tmp_path / "b"), "--seed", "3"]) == 0
    assert written == [(tmp_path / "new", fixture.DEFAULT_SEED), (tmp_path / "b", 3)]
    assert main(["data", "make-fixture"]) == 2  # the committed fixture, without --force
    assert "split.csv exists; regenerating it invalidates" in capsys.readouterr().err
    assert main(["data", "--json", "make-fixture", "--fixture-dir", str(tmp_path / "c")]) == 2
    assert "apply to `defectbench data summary`" in capsys.readouterr().err
    assert len(written) == 2
    assert main(["data", "make-fixture", "--force", "--fixture-dir",
                 str(elpv_fixture.directory)]) == 0
    assert written[-1] == (elpv_fixture.directory, fixture.DEFAULT_SEED)


def test_preprocess_is_shared_and_normalises_with_the_model_stats(elpv_fixture):
    val = elpv_fixture.split("val").subset(range(5))
    pre = Preprocess(size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    x = preprocess_set(val, pre, batch_size=2)
    assert x.shape == (5, 3, 64, 64) and x.dtype == np.float32
    assert -1.0 - 1e-6 <= x.min() and x.max() <= 1.0 + 1e-6
    np.testing.assert_array_equal(x[:, 0], x[:, 2])  # grayscale replicated
    np.testing.assert_allclose(x, pre(val.load_all()), rtol=0, atol=1e-6)
    white = pre([np.full((300, 300), 255, np.uint8)])
    np.testing.assert_allclose(white, 1.0, atol=1e-5)


def test_preprocessed_rows_match_the_whole_array_bit_for_bit(elpv_fixture):
    # PT2E/QAT variants calibrate at load from rows decoded on demand; the build calibrated
    # from the whole preprocessed array: the rows must be identical, not merely close
    dev = elpv_fixture.split("dev").subset(range(70))
    pre = Preprocess(size=96)
    whole = preprocess_set(dev, pre)
    rows = PreprocessedRows(dev, pre)
    assert len(rows) == 70
    picked = np.array([3, 17, 64, 69])
    np.testing.assert_array_equal(rows[picked], whole[picked])
    np.testing.assert_array_equal(rows[:2], whole[:2])
    np.testing.assert_array_equal(rows[:], whole)
    with pytest.raises(TypeError, match="slice or an index array"):
        rows[3]


def test_preprocess_rejects_bad_pixels():
    pre = Preprocess(size=32)
    with pytest.raises(DataError, match="expected uint8 pixels, got float32"):
        pre([np.zeros((8, 8), np.float32)])
    with pytest.raises(DataError, match=r"got shape \(8, 8, 4\)"):
        pre([np.zeros((8, 8, 4), np.uint8)])
    with pytest.raises(ConfigError, match="outside 16..1024"):
        Preprocess(size=8)


@pytest.mark.parametrize("std", [{}, {"std": None}], ids=["absent", "none"])
def test_a_model_config_with_a_mean_but_no_std_is_a_config_error(std):
    # unless checked with the mean, a missing std failed later as a bare KeyError/TypeError
    model = torch.nn.Linear(2, 2)
    model.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), **std}
    with pytest.raises(ConfigError, match=r"Linear has no pretrained_cfg with mean and std"):
        Preprocess.for_model(model, 32)


def test_preprocess_keeps_pixels_in_place_and_reads_every_channel_layout():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    pre = Preprocess(size=16, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    # at the model's size nothing is resampled: each pixel is (value/255 - mean) / std, in
    # channel-first order, not transposed
    expected = (rgb.transpose(2, 0, 1) / 255.0 - np.array(pre.mean)[:, None, None]) / np.array(
        pre.std)[:, None, None]
    np.testing.assert_allclose(pre([rgb])[0], expected, rtol=0, atol=1e-5)
    gray = rgb[:, :, 0]
    np.testing.assert_array_equal(pre([gray[:, :, None]]), pre([gray]))  # (H, W, 1) is gray
    # an image as tall as the model's size but wider (or the reverse) is resized too
    assert Preprocess(size=16)([np.zeros((16, 40), np.uint8)]).shape == (1, 3, 16, 16)
    assert Preprocess(size=16)([np.zeros((40, 16), np.uint8)]).shape == (1, 3, 16, 16)


def test_preprocess_refuses_a_zero_std():
    # a zero std divided every pixel of that channel by zero: inf/nan inputs, no error
    with pytest.raises(ConfigError, match=r"mean/std must be 3 values with std > 0"):
        Preprocess(size=32, std=(0.5, 0.0, 0.5))


def test_preprocess_downsizes_with_antialiasing():
    # a one-pixel checkerboard is mid-grey once shrunk; sampled without antialiasing it
    # aliases into stripes of black and white the model never saw in training
    checker = (np.indices((300, 300)).sum(axis=0) % 2 * 255).astype(np.uint8)
    x = Preprocess(size=64)([checker])
    assert np.abs(x).max() < 0.05


def test_image_sets_refuse_mismatched_lengths_and_repeated_ids():
    pixels = [np.zeros((4, 4), np.uint8)] * 3
    with pytest.raises(DataError, match="ImageSet has 3 ids but 2 labels"):
        in_memory(["a", "b", "c"], np.array([0, 1]), pixels)
    with pytest.raises(DataError, match="metadata 'cell_type' has 2 values for 3 ids"):
        in_memory(["a", "b", "c"], np.array([0, 1, 0]), pixels,
                  metadata={"cell_type": np.array(["mono", "poly"])})
    with pytest.raises(DataError, match="ImageSet ids must be unique"):
        in_memory(["a", "b", "a"], np.array([0, 1, 0]), pixels)


def test_data_command_prints_counts_and_hash(capsys, elpv_fixture):
    assert main(["data"]) == 0
    out = capsys.readouterr().out
    assert elpv_fixture.content_sha256 in out
    assert "| val     | defective | poly        | 1          |     100 |" in out
    assert main(["data", "summary", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == {s: len(elpv_fixture.split(s)) for s in fixture.SPLITS}
    # options before the action word count too (the action's defaults reset them)
    assert main(["data", "--json", "--defect-threshold", "0.3", "summary"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["defect_threshold"] == 0.3


def test_subset_takes_indices_or_a_boolean_mask():
    import numpy as np

    from defectbench.errors import DataError

    images = in_memory(["a", "b", "c"], np.array([0, 1, 0]),
                       [np.full((4, 4), v, np.uint8) for v in (1, 2, 3)])
    assert images.subset([2, 0]).ids == ("c", "a")
    masked = images.subset(np.array([True, False, True]))
    assert masked.ids == ("a", "c") and masked.load(1)[0, 0] == 3
    with pytest.raises(DataError, match=r"one entry per image \(3\), got shape \(2,\)"):
        images.subset(np.array([True, False]))


def test_version_option_prints_the_package_version(capsys):
    from defectbench import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"defectbench {__version__}"


@pytest.mark.parametrize("edit, match", [
    # a fifth field (a merge that left a column behind) was kept under the key None
    (lambda raw: raw.replace(b"images/cell0001.png,train,1.000000,mono\n",
                             b"images/cell0001.png,train,1.000000,mono,val\n", 1),
     r"1 row\(s\) without exactly 4 fields \(id, split, probability, cell_type\): line \d+ has "
     r"5 field\(s\): 'images/cell0001.png,train,1.000000,mono,val'; restore the fixture"),
    # a one-field row was reported as an unknown split 'None'
    (lambda raw: raw + b"images/cell0001.png\n",
     r"1 row\(s\) without exactly 4 fields .*: line 2626 has 1 field\(s\): "
     r"'images/cell0001.png'; restore"),
], ids=["five-fields", "one-field"])
def test_a_row_of_the_wrong_width_is_refused_with_its_line(tmp_path, elpv_fixture, edit, match):
    with pytest.raises(FixtureMismatchError, match=match):
        fixture.load_fixture(_edited_copy(tmp_path, elpv_fixture, edit))


def test_a_fixture_dir_in_an_unknown_users_home_is_named():
    # pathlib raised a bare RuntimeError from `defectbench data --fixture-dir '~x/f' summary`
    with pytest.raises(ConfigError, match=r"the fixture folder starts with the home folder of "
                       r"a user this machine does not know \(~no-such-user-here/f\)"):
        fixture.load_fixture("~no-such-user-here/f")


def test_the_projects_own_fixture_dir_named_explicitly_keeps_the_git_hint(tmp_path, monkeypatch):
    # the suite and the zoo pass the default folder by name: a file missing there is the
    # project's, restored from git, not a folder the user chose
    own = tmp_path / "fixtures" / "elpv"
    own.mkdir(parents=True)
    (own / "split.csv").write_text("id,split,probability,cell_type\n")
    monkeypatch.setattr(fixture, "default_fixture_dir", lambda: own)
    for given in (own, tmp_path / "fixtures" / ".." / "fixtures" / "elpv"):
        with pytest.raises(DataError, match=r"fixture.json is missing. In a clone of the "
                           r"project, restore it from git"):
            fixture.load_fixture(given)


def test_a_fixture_dir_that_is_a_file_or_absent_is_named_not_sent_to_git(tmp_path):
    # `git checkout -- fixtures/elpv` cannot fix a --fixture-dir the user mistyped
    (tmp_path / "a_file").write_text("")
    for given, state in ((tmp_path / "a_file", "is a file, not a folder"),
                         (tmp_path / "absent", "does not exist")):
        with pytest.raises(DataError, match=f"fixture folder {given} {state}; pass the folder "
                           "holding fixture.json and split.csv") as info:
            fixture.load_fixture(given)
        assert "git" not in str(info.value)
    (tmp_path / "dir" / "fixture.json").mkdir(parents=True)
    with pytest.raises(DataError, match="fixture.json is not a file"):
        fixture.load_fixture(tmp_path / "dir")
