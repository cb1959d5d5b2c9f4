"""Memory of one artifact on its own: a forked child loads it and runs one batch.

Inside one long benchmark session the allocators keep pages that earlier variants freed, so
in-process RSS deltas are mostly 0 and the high-water mark is the whole session's. A probe
process (started once, holding only the imports, the catalog and the fixture, never having
run a model) forks a child per measurement; the child resets the RSS high-water mark, loads
the artifact, runs one batch, and reports

- ``load_mb``: resident memory the loaded artifact added (weights, session, graph);
- ``peak_delta_mb``: the high-water mark of loading plus the first call above what the child
  held before loading: what serving this artifact at this batch size costs in RAM, including
  one-off work at load (ONNX Runtime graph optimisation, PT2E calibration and compilation).

Both include the pages of the runtime's shared library code that loading and the call touch:
a fork does not carry the parent's file-backed pages into the child's RSS, so they fault in
again, and they differ between runtimes (ONNX Runtime's module, torch's libraries).
Warming them in the probe is not an option: a torch op run before forking leaves libgomp's
thread pool in a state that deadlocks the child. Rows of one runtime compare as they are.

Forking keeps each measurement to the artifact's own cost without re-importing torch or
decoding the fixture (seconds per child instead of a fresh interpreter's ~10 s). CPU only:
on CUDA the suite measures in-process from torch's allocator, which can tell one artifact's
allocations from the rest of the session (`Suite.memory`).

The probe speaks JSON lines: ``python -m defectbench.measure.isolated ZOO PROFILE`` reads
``{"variant", "precision", "device", "batch", "threads"}`` and answers one JSON object each.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from defectbench.errors import DefectbenchError

KIND = "cpu_rss_isolated"


class IsolatedMemoryError(DefectbenchError):
    """The probe or its child failed; the message carries the child's error."""


@dataclass(frozen=True)
class IsolatedMemory:
    kind: str
    batch: int
    load_mb: float
    peak_delta_mb: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_FIELDS = frozenset(IsolatedMemory.__dataclass_fields__)


def _measure_in_child(catalog, request: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import torch

    from defectbench.measure.memory import _CLEAR_REFS, _status_kb

    torch.set_num_threads(int(request["threads"]))
    size = catalog.manifest(request["variant"])["preprocess"]["size"]
    batch = np.random.default_rng(0).standard_normal(
        (int(request["batch"]), 3, size, size), dtype=np.float32
    )
    try:
        _CLEAR_REFS.write_text("5")  # high-water mark := current RSS
    except OSError as exc:
        raise IsolatedMemoryError(
            f"cannot reset the RSS high-water mark ({exc}): --memory-isolated needs a writable "
            "/proc/self/clear_refs (Linux 4.0 or later, not a sandbox such as gVisor); run "
            "without --memory-isolated on this host"
        ) from exc
    before = _status_kb("VmRSS")
    predictor = catalog.predictor(request["variant"], request["precision"], request["device"])
    loaded = _status_kb("VmRSS")
    predictor.predict_logits(batch)
    peak = _status_kb("VmHWM")
    return IsolatedMemory(
        KIND, int(request["batch"]), max(0, loaded - before) / 1024, max(0, peak - before) / 1024
    ).to_dict()


# a child that has not answered by then is stuck (a runtime's thread pool deadlocked after the
# fork, see the module docstring), not slow: the largest full-profile artifact loads,
# recalibrates and runs batch 32 within a few minutes on 2 cores
CHILD_TIMEOUT_S = 1200.0


def _answer_forked(catalog, request: dict[str, Any],
                   timeout_s: float = CHILD_TIMEOUT_S) -> dict[str, Any]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: measure, report through the pipe, leave without cleanup handlers
        # os._exit in `finally`: whatever fails here (even writing the answer), the child must
        # never return into serve() and read the probe's requests alongside its parent
        code = 1
        try:
            os.close(read_fd)
            try:
                result = _measure_in_child(catalog, request)
            except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
                result = {"error": f"{type(exc).__name__}: {exc}"}
            with os.fdopen(write_fd, "w") as out:
                out.write(json.dumps(result))
            code = 0
        except BaseException:  # noqa: BLE001 - no answer could be sent: leave the cause
            traceback.print_exc()  # on the probe's stderr, which the parent reports
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks, timed_out = [], False
    deadline = time.monotonic() + timeout_s
    with os.fdopen(read_fd, "rb") as inp:
        while True:
            ready, _, _ = select.select([inp], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:  # a deadlocked child would otherwise hold the probe, and the suite
                timed_out = True
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(inp.fileno(), 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode(errors="replace")
    if timed_out:
        return {"error": f"measuring child gave no answer within {timeout_s:g} s and was "
                "killed (a runtime deadlocked after the fork, or a load far slower than any "
                "artifact's)"}
    if not text:
        return {"error": f"measuring child {_how_it_ended(status)} without an answer; its "
                "traceback, if any, is in the probe's stderr"}
    try:
        answer = json.loads(text)
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):  # cut off mid-write (killed), or not ours
        return {"error": f"measuring child {_how_it_ended(status)} after writing a "
                f"malformed answer {text[:200]!r}"}
    return answer


def _how_it_ended(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"ended (exit code {code})"
    name = signal.Signals(-code).name if -code in signal.valid_signals() else "?"
    why = " (the kernel's out-of-memory killer sends it)" if -code == signal.SIGKILL else ""
    return f"was killed by signal {-code} ({name}){why}"


def serve(zoo: str, profile: str, inp: IO[str] = sys.stdin, out: IO[str] | None = None) -> None:
    """Answer measurement requests (JSON lines) until end of input."""
    from defectbench.zoo.catalog import Catalog

    if out is None:  # answers get a private copy of stdout; anything a library prints goes
        out = os.fdopen(os.dup(1), "w")  # to stderr instead of into the protocol
        os.dup2(2, 1)
    # every runtime library is imported once here, before any child forks: a child's figure
    # then holds no first import of ONNX Runtime (about 14 MB) that torch artifacts, whose
    # library the probe already holds, never pay (the library pages a first call touches it
    # does hold: see the module docstring)
    import onnxruntime  # noqa: F401
    import torch  # noqa: F401

    catalog = Catalog(Path(zoo), profile)
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in inp:
        if line.strip():
            out.write(json.dumps(_answer_forked(catalog, json.loads(line))) + "\n")
            out.flush()


class IsolatedMemoryProbe:
    """The parent's handle on a probe process; start it once, ask per artifact, close."""

    def __init__(self, zoo: Path | str, profile: str) -> None:
        # stderr to a file: warnings could fill a pipe nobody reads and stall the probe
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "defectbench.measure.isolated", str(zoo), profile],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
        )
        self._read()  # {"ready": true} once the catalog is loaded

    def _read(self) -> dict[str, Any]:
        line = self._process.stdout.readline()
        if not line:
            raise self._exited()
        try:
            answer = json.loads(line)
        except json.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            # something other than the probe wrote to its stdout (a library printing before
            # serve() redirected it): the protocol is lost, so is every later answer
            raise IsolatedMemoryError(
                f"the isolated-memory probe wrote {line[:200]!r}, not a JSON answer; "
                f"its stderr (end): {self._stderr_tail()}"
            )
        return answer

    def _stderr_tail(self, size: int = 2000) -> str:
        # pread: the probe shares this file's offset and may still be writing to it
        fd = self._stderr.fileno()
        end = os.fstat(fd).st_size
        return os.pread(fd, size, max(0, end - size)).decode(errors="replace").strip()

    def _exited(self) -> IsolatedMemoryError:
        """The probe is gone: its exit status and the end of what it wrote to stderr."""
        self._process.wait()
        self._stderr.seek(0)
        return IsolatedMemoryError(
            "the isolated-memory probe exited (status "
            f"{self._process.returncode}): {self._stderr.read()[-2000:]}"
        )

    def measure(self, variant: str, precision: str, device: str, batch: int,
                threads: int) -> IsolatedMemory:
        if device != "cpu":
            raise IsolatedMemoryError(
                f"isolated memory is measured on cpu only, not {device!r}; CUDA peak memory "
                "is measured in-process from torch's allocator (Suite.memory)"
            )
        request = {"variant": variant, "precision": precision, "device": device,
                   "batch": batch, "threads": threads}
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            raise self._exited() from None
        answer = self._read()
        if "error" in answer or set(answer) != _FIELDS:
            stderr = self._stderr_tail()
            error = answer.get("error", f"the probe answered {json.dumps(answer)[:200]}, not "
                                        f"the fields {sorted(_FIELDS)}")
            raise IsolatedMemoryError(
                f"isolated memory of {variant} {precision} {device} b{batch}: {error}"
                + (f"\nprobe stderr (end): {stderr}" if stderr else "")
            )
        return IsolatedMemory(**answer)

    def close(self) -> None:
        try:
            if self._process.poll() is None:
                with contextlib.suppress(BrokenPipeError):
                    self._process.stdin.close()
                try:
                    self._process.wait(timeout=60)
                except subprocess.TimeoutExpired:  # stuck in a child's measurement: stop it
                    self._process.kill()
                    self._process.wait()
        finally:
            self._stderr.close()


if __name__ == "__main__":
    serve(*sys.argv[1:3])
