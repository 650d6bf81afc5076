"""Grading on a Dask distributed cluster: one task per submission, the store stays here.

`wiregrade grade ... --cluster ADDRESS` sends each submission as one task carrying its files
(bounded as intake bounds them) and the fingerprints of the grader and the engine it was started
with. A worker (`wiregrade worker ADDRESS`) refuses a task whose fingerprints are not its own
(a grader ERROR naming both: never a silent different grade), else runs the same sandboxed
session as a local batch (:func:`run_session`) and replies with its result and the files a
report needs. Only this side writes OUT: results are stored as they arrive, as in a local batch.

Dask is optional (``pip install wiregrade[cluster]``) and imported only here, only when used.
A worker that dies mid-session: the scheduler runs the task elsewhere; its session died with it
(sessions die with their parent), and the result is stored once, when it arrives here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ._assignment import load_assignment, project_root
from ._errors import HarnessError
from ._intake import MAX_DEPTH, MAX_FILES, MAX_UNPACKED, IntakeError
from ._proc import become_subreaper
from ._results import SubmissionResult
from ._runner import Batch, SessionOptions, run_session, student_dir
from ._safefile import NOT_GRADED, walk
from ._store import fingerprint_files, fingerprint_grader

_zygote: Any = None  # a `wiregrade worker --warm`'s warm process (harness._warm.Zygote)
RESOURCE = "wiregrade"  # a worker offers one per session it runs at once; a task takes one
REPLY_FILES = {  # what a report and a dispute need from a session's folder, and the most we take
    "session.log": 4 << 20,
    "capture.pcap": 80 << 20,  # the wire's own cap is 64 MiB
    "keys.log": 4 << 20,
}
TOOLS = ("tshark", "dumpcap", "bwrap", "openssl", "stunnel4", "nginx")
INSTALL_HINT = "Debian/Ubuntu: sudo apt-get install tshark openssl stunnel4 nginx-light bubblewrap"


# --- what travels ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Engine:
    """Which grader a side grades with: fingerprints of the exercise's grader and of the engine."""

    grader: str  # fingerprint_grader: checks, exercise settings and engine together
    harness: str  # fingerprint of the harness alone
    version: str  # the wiregrade package's version

    def describe(self) -> str:
        return f"grader {self.grader[:12]} on wiregrade {self.version} (engine {self.harness[:12]})"


def engine_of(assignment_id: str) -> Engine:
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("wiregrade")
    except PackageNotFoundError:
        v = "unknown"
    a = load_assignment(assignment_id)
    return Engine(fingerprint_grader(a), fingerprint_files(project_root() / "harness"), v)


@dataclass(frozen=True)
class Task:
    """One submission, as it is sent to a worker."""

    assignment: str
    student: str
    files: tuple[tuple[str, int, bytes], ...]  # (relative path, mode bits, bytes); folders end in "/"
    options: SessionOptions
    capture_secret: str
    engine: Engine


def pack(folder: Path) -> tuple[tuple[str, int, bytes], ...]:
    """The files of a folder to grade, read without following links, within intake's bounds
    (MAX_FILES, MAX_UNPACKED, MAX_DEPTH): IntakeError past them, or on anything but regular
    files and folders. Tools' folders that are never graded (NOT_GRADED) are left out."""
    items: list[tuple[str, int, bytes]] = []
    total = 0
    for rel, e, depth in walk(folder, prune=lambda e: e.name in NOT_GRADED):
        if len(items) >= MAX_FILES or depth > MAX_DEPTH:
            raise IntakeError(f"the submission holds more than {MAX_FILES:,} files or is nested too deep")
        st = e.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            items.append((rel + "/", 0o755, b""))
            continue
        if not stat.S_ISREG(st.st_mode):
            raise IntakeError(f"{rel} is not a regular file; hand in regular files only")
        fd = os.open(folder / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise IntakeError(f"{rel} is not a regular file; hand in regular files only")
            data = f.read(MAX_UNPACKED - total + 1)
        total += len(data)
        if total > MAX_UNPACKED:
            raise IntakeError(f"the submission holds more than {MAX_UNPACKED:,} bytes")
        items.append((rel, st.st_mode & 0o755, data))
    return tuple(items)


def unpack(files: tuple[tuple[str, int, bytes], ...], dest: Path) -> None:
    """Write a task's files under ``dest`` (made here, empty): every path relative and inside
    it, nothing followed, the same bounds as intake."""
    if len(files) > MAX_FILES or sum(len(d) for _p, _m, d in files) > MAX_UNPACKED:
        raise IntakeError("the task holds more than intake allows")
    dest.mkdir(mode=0o755)
    for rel, mode, data in files:
        p = PurePosixPath(rel)
        if not rel or p.is_absolute() or any(part in ("", ".", "..") for part in rel.rstrip("/").split("/")):
            raise IntakeError(f"the task holds an unsafe path: {rel!r}")
        if len(p.parts) > MAX_DEPTH + 1:
            raise IntakeError(f"the task holds a path nested too deep: {rel!r}")
        target = dest / p
        # inside dest, made here by us alone: no link to follow on the way
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if rel.endswith("/"):
            target.mkdir(mode=0o755, exist_ok=True)
            continue
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(target, flags, 0o644 | (mode & 0o111))
        with os.fdopen(fd, "wb") as f:
            f.write(data)


def _read_capped(path: Path, limit: int) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read(limit) if stat.S_ISREG(os.fstat(fd).st_mode) else None


# --- the worker's side -----------------------------------------------------------------------


def grade_task(task: Task) -> dict[str, Any]:
    """Run on a worker: the session's result (as JSON) and the files a report needs."""
    mine = engine_of(task.assignment)
    if mine != task.engine:
        why = (
            f"worker {socket.gethostname()} refused to grade: it has {mine.describe()}, but this batch "
            f"was started with {task.engine.describe()}. Give the worker the same checkout and "
            "wiregrade as the machine that runs `wiregrade grade` (or the other way round), then "
            "grade again: only the refused submissions are graded again."
        )
        r = SubmissionResult(assignment=task.assignment, student=task.student, checks=(), harness_error=why)
        return {"result": r.to_json(), "files": {}}
    assignment = load_assignment(task.assignment)
    with tempfile.TemporaryDirectory(prefix="wiregrade-task-") as tmp:
        work = Path(tmp)
        try:
            unpack(task.files, work / "submission")
        except (IntakeError, OSError) as exc:
            r = SubmissionResult(
                assignment=task.assignment,
                student=task.student,
                checks=(),
                harness_error=f"worker {socket.gethostname()} could not unpack the submission: {exc}",
            )
            return {"result": r.to_json(), "files": {}}
        out = work / "out"
        args = (assignment, work / "submission", out, task.student, task.options)
        if _zygote is not None:
            from ._warm import run_warm_session

            r = run_warm_session(_zygote, *args, capture_secret=task.capture_secret)
        else:
            r = run_session(*args, capture_secret=task.capture_secret)
        files = {n: d for n, cap in REPLY_FILES.items() if (d := _read_capped(out / n, cap)) is not None}
    return {"result": r.to_json(), "files": files}


def missing_tools() -> list[str]:
    """The programs a grading session needs that are not on PATH."""
    return [t for t in TOOLS if shutil.which(t) is None]


def dask_setup(worker: object) -> None:
    """Dask preload (`dask worker --preload harness._cluster`): refuse to start a worker that
    could not grade, saying what is missing."""
    if missing := missing_tools():
        raise RuntimeError(f"wiregrade: this worker cannot grade: missing on PATH: {', '.join(missing)}")
    become_subreaper()


def run_worker(
    address: str, certs: Path | None, slots: int, name: str | None = None, *, warm: bool = False
) -> None:
    """`wiregrade worker`: a Dask worker of ``slots`` sessions at once until it is stopped;
    ``warm``: each session forked from one warm process (harness._warm)."""
    import asyncio

    from distributed import Worker

    global _zygote
    become_subreaper()  # what a dead session leaves is re-parented here and reaped by the next
    if warm:
        from ._runner import session_env
        from ._warm import Zygote

        _zygote = Zygote(*session_env())
    sec = security(certs, "worker")
    address = cluster_address(address, certs)

    async def serve(scratch: str) -> None:
        async with Worker(
            address,
            nthreads=slots,
            resources={RESOURCE: slots},
            security=sec,
            name=name,
            dashboard=False,
            local_directory=scratch,
        ) as w:
            print(f"wiregrade worker {w.address}: {slots} sessions at once, for {address}", flush=True)
            await w.finished()

    with tempfile.TemporaryDirectory(prefix="wiregrade-worker-") as scratch:
        try:
            asyncio.run(serve(scratch))
        except (OSError, TimeoutError) as exc:
            raise HarnessError(f"could not join the Dask scheduler at {address}: {exc}") from exc
        except KeyboardInterrupt:
            pass  # stopped by its owner: the scheduler runs its tasks elsewhere
        finally:
            if _zygote is not None:
                _zygote.close()


# --- the grading machine's side ----------------------------------------------------------------


def security(certs: Path | None, role: str) -> Any:
    """Dask's Security for ``role`` ("client" or "worker") from a `wiregrade cluster-certs` folder
    (mutual TLS, encryption required); without one, the Dask configuration's (an existing
    deployment's own)."""
    from distributed import Security

    if certs is None:
        return Security()
    paths = {n: certs / n for n in ("ca.pem", f"{role}.pem", f"{role}.key")}
    if absent := [str(p) for p in paths.values() if not p.is_file()]:
        raise HarnessError(
            f"cluster certificates not found: {', '.join(absent)} (make them with "
            "`wiregrade cluster-certs DIR`)"
        )
    return Security(
        tls_ca_file=str(paths["ca.pem"]),
        **{f"tls_{role}_cert": str(paths[f"{role}.pem"]), f"tls_{role}_key": str(paths[f"{role}.key"])},
        require_encryption=True,
    )


def cluster_address(address: str, certs: Path | None) -> str:
    """HOST:PORT becomes tls://HOST:PORT when certificates are given; tcp:// with them is refused."""
    if "://" not in address:
        return f"tls://{address}" if certs else address
    if certs and not address.startswith("tls://"):
        raise HarnessError(f"{address}: with cluster certificates the address must be tls://HOST:PORT")
    return address


class ClusterSessions:
    """A batch's sessions on a Dask cluster (see the module's docstring). At most ``window``
    tasks, and ``budget`` bytes of submissions, are out at once: memory stays bounded."""

    def __init__(
        self,
        address: str,
        certs: Path | None = None,
        *,
        window: int = 32,
        budget: int = 512 << 20,
        wait_for_workers: float = 60.0,
        connect_timeout: float = 20.0,
    ) -> None:
        self.address = cluster_address(address, certs)
        self.certs = certs
        self.window = window
        self.budget = budget
        self.wait = wait_for_workers
        self.connect_timeout = connect_timeout

    def _connect(self) -> Any:
        from distributed import Client

        sec = security(self.certs, "client")
        try:
            return Client(self.address, security=sec, timeout=self.connect_timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise HarnessError(f"could not reach the Dask scheduler at {self.address}: {exc}") from exc

    def _wait_for_graders(self, client: Any) -> None:
        deadline = time.monotonic() + self.wait
        while True:
            workers = client.scheduler_info(n_workers=-1).get("workers", {}).values()
            if any(w.get("resources", {}).get(RESOURCE) for w in workers):
                return
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"no grading worker joined {self.address} within {self.wait:g} s (start one with "
                    f"`wiregrade worker {self.address}`, or give Dask workers --resources {RESOURCE}=CORES)"
                )
            time.sleep(0.2)  # a bounded poll of the scheduler, not of a session

    def run(self, batch: Batch, todo: dict[str, Path]) -> Iterator[tuple[str, SubmissionResult]]:
        from distributed import as_completed

        if not todo:  # a resumed batch with nothing left needs no cluster
            return
        client = self._connect()
        try:
            self._wait_for_graders(client)
            engine = engine_of(batch.assignment.id)
            if engine.grader != batch.grader:
                raise HarnessError("the grader changed on this machine while the batch was starting")
            ac = as_completed(loop=client.loop)
            out: dict[str, tuple[str, int]] = {}  # task key -> (student, bytes)
            held = 0
            run_id = uuid.uuid4().hex[:8]
            for name, path in todo.items():
                try:
                    files = pack(path)
                except (IntakeError, OSError) as exc:
                    yield name, _error(batch, name, f"could not read the submission to send it: {exc}")
                    continue
                size = sum(len(d) for _p, _m, d in files)
                while out and (len(out) >= self.window or held + size > self.budget):
                    yield self._collect(batch, next(ac), out)
                    held = sum(b for _n, b in out.values())
                task = Task(batch.assignment.id, name, files, batch.options, batch.capture_secret, engine)
                fut = client.submit(
                    grade_task, task, key=f"wiregrade-{run_id}-{name}", resources={RESOURCE: 1}, pure=False
                )
                out[fut.key] = (name, size)
                held += size
                ac.add(fut)
            for fut in ac:
                yield self._collect(batch, fut, out)
        finally:
            with contextlib.suppress(Exception):  # closing must never hide what went wrong
                client.close()

    def _collect(
        self, batch: Batch, fut: Any, out: dict[str, tuple[str, int]]
    ) -> tuple[str, SubmissionResult]:
        from distributed import KilledWorker

        name, _size = out.pop(fut.key)
        try:
            reply = fut.result()
            if not isinstance(reply, dict) or not isinstance(reply.get("files"), dict):
                raise ValueError("the worker's reply is malformed: not {'result': ..., 'files': {...}}")
            r = SubmissionResult.from_json(reply["result"])
            files: dict[str, Any] = reply["files"]
        except KilledWorker as exc:
            return name, _error(batch, name, f"every worker that ran this session died ({exc}); grade again")
        except Exception as exc:  # any failure of the cluster is this student's grader ERROR, never a mark
            return name, _error(
                batch, name, f"the cluster could not run this session ({type(exc).__name__}: {exc})"
            )
        finally:
            fut.release()
        if (r.assignment, r.student) != (batch.assignment.id, name):
            return name, _error(batch, name, f"the cluster replied for {r.assignment}/{r.student}")
        folder = student_dir(batch.out, name)
        folder.mkdir(parents=True, exist_ok=True)
        for n, cap in REPLY_FILES.items():  # only names we know, never one from the reply
            (folder / n).unlink(missing_ok=True)
            if isinstance(data := files.get(n), bytes):
                (folder / n).write_bytes(data[:cap])
        r.save(folder / "session.json")
        return name, r


def _error(batch: Batch, student: str, why: str) -> SubmissionResult:
    return SubmissionResult(assignment=batch.assignment.id, student=student, checks=(), harness_error=why)
