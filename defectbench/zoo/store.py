"""The zoo on disk: one folder per variant, a manifest written last, artifacts checked by hash.

A variant counts as built only when its `manifest.json` exists, its key matches the current
recipe + data fixture + library versions, and every artifact it lists has the recorded sha256.
Everything is written atomically, so an interrupted build leaves either a finished variant or
none (plus a resumable training state).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from defectbench.errors import ArtifactError
from defectbench.io import atomic_write_bytes, atomic_write_text, expand_home, sha256_file

MANIFEST = "manifest.json"
# the manifest's own checksum: it carries what the gates run at (the dev threshold) and how
# images are preprocessed, which no artifact hash covers; a digit changed on disk must not
# move a gate silently
MANIFEST_CHECKSUM = "manifest_sha256"
# manifests that carry a checksum say so: one that says so and has none lost it on disk, while
# one written before (by an older checkout, say, sharing the cache) is taken as it is
MANIFEST_FORMAT = 2


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's content without its checksum, independent of formatting."""
    body = {k: v for k, v in manifest.items() if k != MANIFEST_CHECKSUM}
    # as read back: JSON turns tuples into lists and keys into strings (whose order differs)
    body = json.loads(json.dumps(body))
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def default_zoo_root() -> Path:
    if env := os.environ.get("DEFECTBENCH_ZOO"):
        # set in a .env file or a CI config, `~` reaches here unexpanded and would make a
        # folder named `~` in whatever directory the command runs in
        return expand_home(env, "DEFECTBENCH_ZOO")
    cache = os.environ.get("XDG_CACHE_HOME")
    # the XDG spec: a relative path there is invalid and ignored; taken as it is, every
    # working directory would get a zoo of its own
    if not cache or not os.path.isabs(cache):
        cache = Path.home() / ".cache"
    return Path(cache) / "defectbench" / "zoo"


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(
        c in "0123456789abcdef" for c in value)


class ZooStore:
    """Variants of one profile under `root/<profile>/<variant name>/`."""

    def __init__(self, root: Path | str, profile: str, folder: str | None = None) -> None:
        self.root = expand_home(root, "the zoo folder")
        self.profile = profile
        self.directory = self.root / (folder or profile)  # another teacher: `zoo_folder`

    def variant_dir(self, name: str) -> Path:
        return self.directory / name

    @contextlib.contextmanager
    def build_lock(self, log: Callable[[str], None] = print) -> Iterator[str | None]:
        """Hold the profile's build lock: two builds of one zoo would record each other's
        parents as their own (a child commits the parent hashes it finds on disk) and
        overwrite each other's files. A second build waits for the first, then finds what
        it built current. Yields None when held, else why the zoo cannot be locked (it is
        not writable): the caller may check and use it, but must not write to it."""
        path = self.directory / ".build.lock"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+")  # noqa: SIM115 (closed below)
        except OSError as exc:
            # a read-only zoo (shared, or mounted for a CI job) can still be checked and
            # used: nothing will be written to it
            why = str(exc.strerror or exc)
            # `--zoo` naming a file says "Not a directory" about a path beneath it
            blocker = next((p for p in (self.directory, *self.directory.parents)
                            if p.exists() and not p.is_dir()), None)
            if blocker is not None:
                why = f"{blocker} is a file, not a folder"
            log(f"not locking {self.directory} ({why}): what is built there can be checked and "
                "used, nothing can be built into it")
            yield why
            return
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                log(f"waiting for the build of {self.directory} held by {holder} to finish")
                fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}\n")
            handle.flush()
            try:
                yield None
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def rebuild_command(self, variant: str | None = None) -> str:
        """The command that rebuilds this zoo folder (or one variant in it), for messages."""
        # quoted, so that a path with a space or a glob in a name survives a copy and paste
        only = f" --variants {shlex.quote(variant)}" if variant else ""
        teacher = ""
        if self.directory.name != self.profile:  # another teacher's folder: `zoo_folder`
            teacher = self._teacher_options()
            if teacher is None:
                return (f"`defectbench zoo build --profile {self.profile} "
                        f"--zoo {shlex.quote(str(self.root))}{only}` with the --teacher "
                        f"options this folder ({self.directory.name}) was built with")
        return (f"`defectbench zoo build --profile {self.profile} "
                f"--zoo {shlex.quote(str(self.root))}{teacher}{only}`")

    def _teacher_options(self) -> str | None:
        """The --teacher options of this folder when the teacher this process was given (the
        CLI and the suite put theirs in DEFECTBENCH_TEACHER*) is the one it holds, else None:
        without them the command would build the default teacher's zoo instead."""
        from defectbench.errors import DefectbenchError
        from defectbench.zoo.profiles import get_profile

        try:
            profile = get_profile(self.profile)
        except DefectbenchError:  # a bad option is reported where it is read, not here
            return None
        return profile.teacher_options() if profile.zoo_folder == self.directory.name else None

    def cache_dir(self) -> Path:
        return self.directory / "_cache"

    def manifest_path(self, name: str) -> Path:
        return self.variant_dir(name) / MANIFEST

    def read_manifest(self, name: str) -> dict[str, Any] | None:
        """The manifest, None when the variant was never finished; ArtifactError if corrupt."""
        path = self.manifest_path(name)
        if not path.exists():
            return None
        try:
            if not path.is_file():
                raise ValueError("not a file")
            manifest = json.loads(path.read_text())
            if not isinstance(manifest, dict):
                raise ValueError(f"a JSON {type(manifest).__name__}, not an object")
            recorded = manifest.get(MANIFEST_CHECKSUM)
            fmt = manifest.get("manifest_format", 1)
            if isinstance(fmt, bool) or not isinstance(fmt, int):
                raise ValueError(f"manifest_format {fmt!r} is not a whole number")
            if fmt > MANIFEST_FORMAT:
                # not damage: its checksum or fields may mean what this version cannot know
                raise ArtifactError(
                    f"manifest {path} was written by a newer defectbench (manifest_format "
                    f"{fmt}; this one reads up to {MANIFEST_FORMAT}); upgrade defectbench, or "
                    "give this checkout a zoo of its own (--zoo or DEFECTBENCH_ZOO); `zoo "
                    "build` does not build over it")
            if recorded is None and fmt >= MANIFEST_FORMAT:
                raise ValueError(f"no {MANIFEST_CHECKSUM}, which its manifest_format {fmt} "
                                 "promises")
            if recorded is not None and recorded != manifest_checksum(manifest):
                raise ValueError(
                    f"its content does not match its {MANIFEST_CHECKSUM} (edited or damaged "
                    "since it was written)")
            if manifest.get("name") != name or not isinstance(manifest.get("key"), str):
                raise ValueError("name or key field missing or wrong")
            artifacts = manifest.get("artifacts", {})
            if not isinstance(artifacts, dict) or not all(
                isinstance(r, dict) and _is_sha256(r.get("sha256")) for r in artifacts.values()
            ):
                raise ValueError("an artifact without a sha256 of 64 hex digits")
            parents = manifest.get("parent_artifacts") or {}
            if not isinstance(parents, dict) or not all(
                isinstance(files, dict) and all(_is_sha256(h) for h in files.values())
                for files in parents.values()
            ):
                raise ValueError("parent_artifacts is not {parent: {file: sha256}}")
        except (json.JSONDecodeError, ValueError, UnicodeDecodeError) as exc:
            raise ArtifactError(
                f"manifest {path} is corrupt ({exc}); run {self.rebuild_command()}: it "
                "rebuilds the variant (resuming from its saved training state, if any)"
            ) from exc
        return manifest

    def written_by_newer(self, name: str) -> int | None:
        """The manifest_format of a manifest a newer defectbench wrote, else None (none there,
        unreadable, or one this version reads)."""
        try:
            fmt = json.loads(self.manifest_path(name).read_text()).get("manifest_format")
        except (OSError, ValueError, AttributeError):
            return None
        newer = isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > MANIFEST_FORMAT
        return fmt if newer else None

    def verify(self, name: str, expected_key: str | None = None) -> dict[str, Any]:
        """The manifest of a finished, intact variant, or ArtifactError saying how to fix it."""
        manifest = self.read_manifest(name)
        fix = f"run {self.rebuild_command()}"
        if manifest is None:
            raise ArtifactError(f"variant {name!r} is not built in {self.directory}; {fix}")
        if expected_key is not None and manifest["key"] != expected_key:
            raise ArtifactError(
                f"variant {name!r} in {self.directory} was built from another recipe, data "
                f"fixture or library version (key {manifest['key'][:12]} != "
                f"{expected_key[:12]}); {fix}"
            )
        if problem := self.lineage_problem(name, manifest):
            raise ArtifactError(f"{problem}; {fix}")
        for filename, record in manifest.get("artifacts", {}).items():
            path = self.variant_dir(name) / filename
            if not path.is_file():
                raise ArtifactError(f"artifact {path} of variant {name!r} is missing; {fix}")
            actual = sha256_file(path)
            if actual != record["sha256"]:
                raise ArtifactError(
                    f"artifact {path} of variant {name!r} is corrupt or truncated: sha256 "
                    f"{actual[:12]} != manifest {record['sha256'][:12]}; {fix}"
                )
        return manifest

    def artifact_path(self, name: str, manifest: dict[str, Any], filename: str) -> Path:
        """The path of `filename`, which `verify` checked only if the manifest lists it: a
        manifest without it (hand-edited, or another version's) is an error, not a file read
        unchecked."""
        if filename not in manifest.get("artifacts", {}):
            raise ArtifactError(
                f"the manifest of variant {name!r} lists no {filename} (it lists "
                f"{', '.join(sorted(manifest.get('artifacts', {}))) or 'nothing'}), so the file "
                f"cannot be checked before it is loaded; run {self.rebuild_command()} after "
                f"deleting {self.variant_dir(name)}"
            )
        return self.variant_dir(name) / filename

    def parent_artifacts(self, parents: Iterable[str]) -> dict[str, dict[str, str]]:
        """The sha256 of every artifact of each parent, as its manifest records it now."""
        out = {}
        for parent in parents:
            manifest = self.read_manifest(parent) or {}
            out[parent] = {f: r["sha256"] for f, r in manifest.get("artifacts", {}).items()}
        return out

    def lineage_problem(self, name: str, manifest: dict[str, Any],
                        _seen: frozenset[str] = frozenset()) -> str | None:
        """Why `name` was made from another build of a parent than the one on disk now, or
        None. Raises ArtifactError when a parent's manifest is corrupt."""
        # A key names the parent's recipe, not its bytes: a parent rebuilt under the same key
        # (after damage, or with other threads) can come out different, and a child made
        # from the earlier build must not pass as current. Manifests written before parent
        # artifacts were recorded carry no lineage and are taken as they are.
        recorded = manifest.get("parent_artifacts")
        if not recorded:
            return None
        now = self.parent_artifacts(recorded)
        for parent, artifacts in recorded.items():
            if not self.manifest_path(parent).exists():
                return f"variant {name!r} was made from {parent!r}, which is not built now"
            if now[parent] != artifacts:
                return (f"variant {name!r} was made from an earlier build of {parent!r}, whose "
                        "artifacts have changed since")
        # and so on up the line: an INT8 graph quantized from an ONNX export of a teacher
        # rebuilt since is stale, although the export it was made from has not changed yet
        if name in _seen:  # only a hand-edited manifest can make a cycle
            return f"variant {name!r} is recorded as its own ancestor"
        for parent in recorded:
            parent_manifest = self.read_manifest(parent)
            if parent_manifest is not None and (problem := self.lineage_problem(
                    parent, parent_manifest, _seen | {name})):
                return f"variant {name!r} was made from {parent!r}, which is stale: {problem}"
        return None

    def is_current(self, name: str, key: str) -> bool:
        try:
            self.verify(name, key)
        except ArtifactError:
            return False
        return True

    def remove_leftovers(self, name: str | None, older_than_s: float = 3600.0) -> list[str]:
        """Delete temporary files and folders a killed build left in the variant's folder (or,
        for None, in the zoo's `_cache/`): atomic writes name them `.FILE.*.tmp` or
        `.FILE.tmp-PID`, scratch folders `.FILE.*.tmp`; a training state copy can be hundreds
        of MB. Only those untouched for `older_than_s`, so a build running beside this one
        keeps what it is writing; 0 while holding the build lock, when no other build can be."""
        folder = self.cache_dir() if name is None else self.variant_dir(name)
        if not folder.is_dir():
            return []
        cutoff = time.time() - older_than_s
        removed = []
        for path in folder.glob(".*.tmp*"):
            if path.is_symlink() or path.stat().st_mtime > cutoff:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            if not path.exists():  # a folder rmtree could not empty is not said to be gone
                removed.append(path.name)
        return removed

    def write_artifact(self, name: str, filename: str, data: bytes) -> dict[str, Any]:
        path = self.variant_dir(name) / filename
        atomic_write_bytes(path, data)
        return {"sha256": sha256_file(path), "bytes": path.stat().st_size}

    def record_file(self, name: str, filename: str) -> dict[str, Any]:
        """Hash an artifact that a library wrote itself (e.g. an ONNX file)."""
        path = self.variant_dir(name) / filename
        return {"sha256": sha256_file(path), "bytes": path.stat().st_size}

    def commit(self, manifest: dict[str, Any]) -> None:
        """Write the manifest last, with its checksum: from now on the variant counts as
        built."""
        manifest = {**manifest, "manifest_format": MANIFEST_FORMAT}
        manifest[MANIFEST_CHECKSUM] = manifest_checksum(manifest)
        atomic_write_text(
            self.manifest_path(manifest["name"]),
            json.dumps(manifest, indent=2, sort_keys=True) + "\n",
        )

    def unknown_folders(self, names: Iterable[str]) -> list[str]:
        """Folders here that are none of the variants `names` (renamed or removed since they
        were built, or misspelt), sorted. Not the zoo's own: hidden entries (`.build.lock`,
        scratch folders) and `_`-prefixed shared ones (`_cache/`, and any a newer defectbench
        adds: a user told to delete it would lose its cache)."""
        try:
            entries = list(self.directory.iterdir()) if self.directory.is_dir() else []
        except OSError:  # not readable: a hint is not worth an error
            return []
        known = set(names)
        return sorted(p.name for p in entries
                      if not p.name.startswith((".", "_")) and p.name not in known
                      and p.is_dir())

    def built_names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.parent.name for p in self.directory.glob(f"*/{MANIFEST}"))
