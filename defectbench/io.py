"""Atomic file writes: a reader never sees half a file, an interrupted writer leaves none."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path


def expand_home(value: Path | str, source: str) -> Path:
    """``value`` with a leading ``~`` or ``~user`` expanded; ConfigError naming ``source`` (the
    option or variable it came from) for a user this machine does not know, where pathlib
    raises a bare RuntimeError ("Could not determine home directory")."""
    try:
        return Path(value).expanduser()
    except RuntimeError:
        from defectbench.errors import ConfigError

        raise ConfigError(
            f"{source} starts with the home folder of a user this machine does not know "
            f"({value}); give the full path"
        ) from None


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    atomic_write_many({Path(path): data})


def atomic_write_many(files: Mapping[Path, bytes]) -> None:
    """Write every file to a synced temporary sibling first, then rename them all into place:
    a failure while writing (a full disk, a folder without write permission) leaves every
    target as it was, not some files new beside others old."""
    staged: list[tuple[str, Path]] = []
    path = Path()
    try:
        for path, data in files.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as f:  # owns fd from here: closed whatever fails below
                umask = os.umask(0)
                os.umask(umask)
                os.fchmod(f.fileno(), 0o666 & ~umask)  # mkstemp makes 0600; files are shared
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException as exc:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            _raise_naming(exc, path)
        raise
    for folder in dict.fromkeys(path.parent for _, path in staged):
        _fsync_dir(folder)  # the renames themselves survive a power loss


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` for a library that writes the file itself (an
    ONNX export, a quantizer); move it onto ``path`` only if the block succeeds.

    A crash or a failed check never leaves a half-written artifact under the final name; the
    file and then the rename are synced to disk, so a power loss cannot either.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        try:
            yield tmp  # the library's own write fills a disk as often as the sync does
            with open(tmp, "rb") as written:
                os.fsync(written.fileno())
            os.replace(tmp, final)
        except OSError as exc:
            _raise_naming(exc, final)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(final.parent)


# errors of the place written to: a full disk surfaces in `write`, `fsync` or `close` as a
# bare "[Errno 28] No space left on device", naming no file
STORAGE_ERRNOS = frozenset((errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES,
                             errno.EPERM, errno.EIO))


def _raise_naming(exc: OSError, path: Path) -> None:
    """Raise `exc` again, naming `path` when it names no file: as the same OSError subclass,
    so callers that catch by errno or type still do."""
    if exc.filename is not None or exc.errno not in STORAGE_ERRNOS:
        raise exc
    raise OSError(exc.errno, exc.strerror, str(path)) from exc


@contextlib.contextmanager
def scratch_dir_beside(path: Path | str) -> Iterator[Path]:
    """A temporary folder beside ``path``, named ``.NAME.*.tmp`` so that a later build's sweep
    of a killed build's leftovers finds it, and the folder the `tempfile` module hands out for
    the block: ONNX Runtime's quantizer writes its pre-processed and augmented copies of a
    model (tens of MB) under the system temp folder, which a SIGKILL would leave there for good.
    `tempfile.tempdir` is process-wide: for single-threaded builds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=f".{final.name}.",
                                     suffix=".tmp") as scratch:
        previous = tempfile.tempdir
        tempfile.tempdir = scratch
        try:
            yield Path(scratch)
        finally:
            tempfile.tempdir = previous


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # some network and FUSE file systems cannot sync a directory; the file itself is
        # synced and renamed, so the write has succeeded
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
