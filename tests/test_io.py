"""Atomic writes: a reader never sees half a file, a failed writer leaves nothing behind."""

import os
from pathlib import Path

import pytest

from defectbench import io
from defectbench.io import atomic_path, atomic_write_bytes, scratch_dir_beside


def test_atomic_path_moves_the_file_into_place_only_on_success(tmp_path):
    target = tmp_path / "sub" / "model.onnx"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name != target.name
        tmp.write_bytes(b"graph")
        assert not target.exists()  # nothing under the final name until the block succeeds
    assert target.read_bytes() == b"graph"
    assert os.listdir(target.parent) == ["model.onnx"]

    with pytest.raises(RuntimeError, match="export failed"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a gra")
        raise RuntimeError("export failed")
    assert target.read_bytes() == b"graph"  # the earlier file is kept
    assert os.listdir(target.parent) == ["model.onnx"]  # and no temporary file is left


def _write_x(write: str, target: Path) -> None:
    """Write b"x" to `target` through one of the two atomic writers, by name."""
    if write == "atomic_path":
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"x")
    else:
        atomic_write_bytes(target, b"x")


@pytest.mark.parametrize("write", ["atomic_path", "atomic_write_bytes"])
def test_atomic_writes_sync_the_folder_after_the_rename(tmp_path, monkeypatch, write):
    # the file's bytes are synced before the rename; the rename itself lives in the folder,
    # which must be synced after it, or a power loss can lose a file the manifest lists
    synced = []
    monkeypatch.setattr(io, "_fsync_dir", lambda folder: synced.append(
        (folder, (folder / "f.bin").exists())))
    target = tmp_path / "f.bin"
    _write_x(write, target)
    assert synced == [(tmp_path, True)]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_atomically_written_files_get_the_umasks_mode_not_mkstemps_0600(tmp_path, umask, mode):
    # a zoo or report shared by a team: mkstemp's private 0600 would lock the others out,
    # and a fixed 0644 would ignore a stricter umask
    before = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "shared.bin", b"x")
    finally:
        os.umask(before)
    assert (tmp_path / "shared.bin").stat().st_mode & 0o777 == mode


def test_scratch_dir_beside_holds_what_libraries_put_in_the_temp_folder(tmp_path):
    import tempfile

    target = tmp_path / "v" / "model.onnx"
    before = tempfile.gettempdir()
    with scratch_dir_beside(target) as scratch:
        # named so that a later build's sweep of a killed build's leftovers finds it
        assert scratch.parent == target.parent and scratch.name.startswith(".model.onnx.")
        assert scratch.name.endswith(".tmp")
        assert tempfile.gettempdir() == str(scratch)
        with tempfile.TemporaryDirectory() as inner:  # as ONNX Runtime's quantizer does
            assert inner.startswith(str(scratch))
    assert tempfile.gettempdir() == before
    assert os.listdir(target.parent) == []

    with pytest.raises(RuntimeError), scratch_dir_beside(target):
        raise RuntimeError("quantizer failed")
    assert tempfile.gettempdir() == before and os.listdir(target.parent) == []


def test_an_error_while_writing_names_the_file_being_written(tmp_path, monkeypatch):
    import errno

    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(OSError, match=r"No space left on device: '.*model.onnx'") as error:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"new graph")
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(target)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.onnx"]
    monkeypatch.undo()
    # the library's own write fails so as often as the sync; an unrelated error is left as is
    with pytest.raises(OSError, match="No space left on device: '.*model.onnx'"):
        with atomic_path(target):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(FileNotFoundError) as error, atomic_path(target):
        raise FileNotFoundError(errno.ENOENT, "no calibration file")
    assert error.value.filename is None
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.onnx"]
    monkeypatch.setattr(io.os, "fsync", full)
    # a permission error stays a PermissionError for callers that catch it by type
    monkeypatch.setattr(io.os, "fsync", lambda fd: (_ for _ in ()).throw(
        OSError(errno.EACCES, os.strerror(errno.EACCES))))
    with pytest.raises(PermissionError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.onnx"]


def test_a_home_folder_of_an_unknown_user_is_a_config_error_naming_its_source(monkeypatch):
    # pathlib raised a bare RuntimeError ("Could not determine home directory"): a traceback
    # from `defectbench zoo list --zoo '~nosuchuser/z'` or DEFECTBENCH_ZOO
    from defectbench.errors import ConfigError
    from defectbench.io import expand_home
    from defectbench.zoo.store import default_zoo_root

    with pytest.raises(ConfigError, match=r"^--zoo starts with the home folder of a user this "
                       r"machine does not know \(~no-such-user-here/z\); give the full path$"):
        expand_home("~no-such-user-here/z", "--zoo")
    monkeypatch.setenv("DEFECTBENCH_ZOO", "~no-such-user-here/z")
    with pytest.raises(ConfigError, match=r"^DEFECTBENCH_ZOO starts with"):
        default_zoo_root()
    monkeypatch.setenv("HOME", "/home/someone")
    assert expand_home("~/z", "--zoo") == Path("/home/someone/z")


def _record_syncs_and_renames(monkeypatch):
    """Wrap os.fsync and os.replace: what was synced (a file's or folder's path) and renamed,
    in order."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(io.os, "fsync", fsync)
    monkeypatch.setattr(io.os, "replace", replace)
    return events


@pytest.mark.parametrize("write", ["atomic_path", "atomic_write_bytes"])
def test_the_temporary_file_is_a_synced_sibling_renamed_onto_the_target(
        tmp_path, monkeypatch, write):
    # a sibling: a rename within one file system is atomic (across them it is a copy);
    # synced before the rename: a power loss after it must not leave an empty file in place
    events = _record_syncs_and_renames(monkeypatch)
    target = tmp_path / "f.bin"
    _write_x(write, target)
    renames = [e for e in events if e[0] == "replace"]
    assert len(renames) == 1 and renames[0][2] == str(target)
    staged = Path(renames[0][1])
    assert staged.parent == tmp_path and staged.name.startswith(".f.bin.")
    assert events.index(("fsync", str(staged))) < events.index(renames[0])
    assert events[-1] == ("fsync", str(tmp_path))  # the folder, after the rename
    assert target.read_bytes() == b"x" and os.listdir(tmp_path) == ["f.bin"]


def test_a_failure_writing_one_of_many_files_leaves_every_target_as_it_was(
        tmp_path, monkeypatch):
    import errno

    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_bytes(b"old a")
    second.write_bytes(b"old b")
    real_fsync, syncs = os.fsync, []

    def full_on_second(fd):
        syncs.append(fd)
        if len(syncs) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(io.os, "fsync", full_on_second)
    with pytest.raises(OSError, match="No space left on device: '.*b.json'"):
        io.atomic_write_many({first: b"new a", second: b"new b"})
    assert (first.read_bytes(), second.read_bytes()) == (b"old a", b"old b")
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.json"]


def test_a_permission_error_names_the_file_and_one_naming_its_own_file_is_kept(
        tmp_path, monkeypatch):
    import errno

    target = tmp_path / "model.onnx"
    monkeypatch.setattr(io.os, "fsync", lambda fd: (_ for _ in ()).throw(
        OSError(errno.EACCES, os.strerror(errno.EACCES))))
    with pytest.raises(PermissionError) as error:
        atomic_write_bytes(target, b"new")
    assert error.value.filename == str(target)
    monkeypatch.undo()
    with pytest.raises(OSError) as error, atomic_path(target):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/elsewhere/calibration.bin")
    assert error.value.filename == "/elsewhere/calibration.bin"  # its own file, not ours


@pytest.mark.parametrize("code", ["EINVAL", "ENOTSUP", "EBADF"])
def test_a_folder_that_cannot_be_synced_does_not_fail_a_finished_write(
        tmp_path, monkeypatch, code):
    # network and FUSE file systems: the file is synced and renamed, the write has succeeded
    import errno

    real_fsync = os.fsync

    def no_dir_sync(fd):
        if os.path.isdir(os.readlink(f"/proc/self/fd/{fd}")):
            raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))
        real_fsync(fd)

    monkeypatch.setattr(io.os, "fsync", no_dir_sync)
    atomic_write_bytes(tmp_path / "f.bin", b"x")
    assert (tmp_path / "f.bin").read_bytes() == b"x"


def test_sha256_file_hashes_every_chunk(tmp_path):
    import hashlib

    data = bytes(range(256)) * 10
    (tmp_path / "w.bin").write_bytes(data)
    assert io.sha256_file(tmp_path / "w.bin", chunk=100) == hashlib.sha256(data).hexdigest()


def test_atomic_write_bytes_creates_missing_folders(tmp_path):
    atomic_write_bytes(tmp_path / "new" / "deeper" / "f.json", b"{}")
    assert (tmp_path / "new" / "deeper" / "f.json").read_bytes() == b"{}"
