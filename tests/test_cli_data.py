"""`defectbench data make-fixture` and `data summary` on fixtures written under tmp_path.

The ELPV loader is replaced by a small in-memory set, so that each test writes and reads a
whole fixture in well under a second and the committed `fixtures/elpv` is never touched."""

import json
import tempfile

import numpy as np
import pytest

from defectbench.cli import main
from defectbench.data import fixture
from defectbench.data.image_set import in_memory


def _tiny_elpv(defect_threshold: float = 0.5):
    probabilities = np.array([0.0, 1 / 3, 2 / 3, 1.0] * 10)
    cell_types = np.array(["mono", "poly"] * 20)
    return in_memory(
        ids=[f"images/cell{i:04d}.png" for i in range(40)],
        labels=(probabilities >= defect_threshold).astype(int),
        images=[np.full((4, 4), i, np.uint8) for i in range(40)],
        metadata={
            "cell_type": cell_types,
            "severity": np.round(probabilities * 3).astype(int),
            "probability": probabilities,
        },
    )


@pytest.fixture
def tiny_elpv(monkeypatch):
    monkeypatch.setattr(fixture, "load_elpv", _tiny_elpv)


def test_a_fixture_made_with_another_seed_is_summarised(tmp_path, capsys, tiny_elpv):
    target = tmp_path / "fx"
    assert main(["data", "make-fixture", "--fixture-dir", str(target), "--seed", "7"]) == 0
    capsys.readouterr()
    assert main(["data", "summary", "--json", "--fixture-dir", str(target)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert sum(summary["images"].values()) == 40
    assert json.loads((target / "fixture.json").read_text())["seed"] == 7


def test_an_interrupted_forced_make_fixture_keeps_the_old_pair(
    tmp_path, capsys, monkeypatch, tiny_elpv
):
    # split.csv and fixture.json hash each other: a --force stopped between the two writes
    # left a new split.csv beside the old hashes, and the old split was gone
    target = tmp_path / "fx"
    assert main(["data", "make-fixture", "--fixture-dir", str(target), "--seed", "1"]) == 0
    old = {name: (target / name).read_bytes() for name in ("split.csv", "fixture.json")}
    real_mkstemp = tempfile.mkstemp

    def interrupted_at_fixture_json(*args, **kwargs):
        if kwargs.get("prefix", "").startswith(".fixture.json"):
            raise KeyboardInterrupt
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", interrupted_at_fixture_json)
    argv = ["data", "make-fixture", "--force", "--fixture-dir", str(target), "--seed", "2"]
    assert main(argv) == 130
    assert {name: (target / name).read_bytes() for name in old} == old
    assert sorted(p.name for p in target.iterdir()) == ["fixture.json", "split.csv"]
    monkeypatch.setattr(tempfile, "mkstemp", real_mkstemp)
    assert main(["data", "summary", "--fixture-dir", str(target)]) == 0


@pytest.mark.parametrize("where", ["a_file", "a_file/sub"])
def test_make_fixture_into_a_file_names_it(tmp_path, capsys, tiny_elpv, where):
    (tmp_path / "a_file").write_text("not a folder")
    assert main(["data", "make-fixture", "--fixture-dir", str(tmp_path / where)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'a_file'} is a file, not a folder" in err
    assert (tmp_path / "a_file").read_text() == "not a folder"


def test_make_fixture_over_a_folder_named_split_csv_is_refused(tmp_path, capsys, tiny_elpv):
    (tmp_path / "split.csv").mkdir()
    argv = ["data", "make-fixture", "--force", "--fixture-dir", str(tmp_path)]
    assert main(argv) == 2
    assert "split.csv exists and is not a file" in capsys.readouterr().err


def test_a_negative_seed_is_refused_with_the_rule(tmp_path, capsys, tiny_elpv):
    argv = ["data", "make-fixture", "--fixture-dir", str(tmp_path / "fx"), "--seed", "-1"]
    assert main(argv) == 2
    assert "split seed must be a non-negative integer, got -1" in capsys.readouterr().err
    assert not (tmp_path / "fx").exists()


def test_summary_of_a_fixture_dir_that_is_a_file_names_it(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    assert main(["data", "summary", "--fixture-dir", str(tmp_path / "a_file")]) == 2
    err = capsys.readouterr().err
    assert f"fixture folder {tmp_path / 'a_file'} is a file, not a folder" in err
    assert "git checkout" not in err


def test_summary_labels_follow_the_defect_threshold_asked_for(tmp_path, capsys, tiny_elpv):
    # the threshold was recorded in the summary while the labels stayed at the default 0.5
    target = tmp_path / "fx"
    assert main(["data", "make-fixture", "--fixture-dir", str(target)]) == 0
    capsys.readouterr()
    counts = {}
    for threshold in ("0.5", "0.3", "1.0"):
        argv = ["data", "summary", "--json", "--defect-threshold", threshold,
                "--fixture-dir", str(target)]
        assert main(argv) == 0
        counts[threshold] = sum(json.loads(capsys.readouterr().out)["defective"].values())
    # probabilities 0, 1/3, 2/3, 1, ten cells each
    assert counts == {"0.5": 20, "0.3": 30, "1.0": 10}


def test_a_defect_threshold_given_to_make_fixture_is_refused(tmp_path, capsys, tiny_elpv):
    # the split does not depend on it (stratified by severity): accepting it would suggest so
    argv = ["data", "make-fixture", "--defect-threshold", "0.3", "--fixture-dir",
            str(tmp_path / "fx")]
    assert main(argv) == 2
    assert "apply to `defectbench data summary`, not to make-fixture" in capsys.readouterr().err
    assert not (tmp_path / "fx").exists()


def test_a_fixture_json_alone_is_not_overwritten_without_force(tmp_path, capsys, tiny_elpv):
    # half a pair (split.csv deleted by hand, say) still holds the old split's hashes
    (tmp_path / "fixture.json").write_text("{}")
    assert main(["data", "make-fixture", "--fixture-dir", str(tmp_path)]) == 2
    assert f"{tmp_path / 'fixture.json'} exists" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixture.json"]
    assert (tmp_path / "fixture.json").read_text() == "{}"
