"""Running grading sessions: one subprocess per submission, many at once for a class.

The parent never imports a grader. It starts ``python -m harness._session`` in its own
process group with a wall deadline, reads the session.json it leaves, and turns a crash,
a hang or a missing file into a harness error for that submission only.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ._assignment import Assignment, project_root
from ._outputs import write_gradebook, write_index, write_outputs
from ._process import become_subreaper, reap_orphans, register_harness_pid, unregister_harness_pid
from ._results import SubmissionResult

_reap_lock = threading.Lock()


@dataclass(frozen=True)
class SessionOptions:
    visibility: str = "all"  # "all" | "public"
    wire: str = "auto"
    isolation: str = "auto"


def run_session(
    assignment: Assignment,
    submission: Path,
    out: Path,
    student: str,
    options: SessionOptions = SessionOptions(),
) -> SubmissionResult:
    out.mkdir(parents=True, exist_ok=True)
    result_file = out / "session.json"
    result_file.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "harness._session",
        "--assignment",
        assignment.id,
        "--submission",
        str(submission.resolve()),
        "--out",
        str(out.resolve()),
        "--student",
        student,
        "--visibility",
        options.visibility,
        "--wire",
        options.wire,
        "--isolation",
        options.isolation,
    ]
    root = project_root()
    package_parent = str(Path(__file__).resolve().parent.parent)  # this harness, installed or not
    env = {
        **os.environ,
        "WIREGRADE_HOME": str(root),  # absolute: the session runs from another folder
        "PYTHONPATH": os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")])),
    }
    started = time.monotonic()
    deadline = assignment.session_seconds
    with open(out / "session.log", "wb") as log:
        with _reap_lock:  # never let another thread's reap see this child unregistered
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=root,
                start_new_session=True,
            )
            register_harness_pid(proc.pid)
        try:
            proc.wait(deadline)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            with _reap_lock:
                unregister_harness_pid(proc.pid)
                reap_orphans()  # student processes of a session that died before cleaning up
    elapsed = time.monotonic() - started
    if timed_out:
        return _failed(
            assignment,
            student,
            f"the grading session did not finish within {deadline:g} s and was stopped",
            out,
            elapsed,
        )
    try:
        return SubmissionResult.load(result_file)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return _failed(
            assignment,
            student,
            f"the grading session (exit {proc.returncode}) left no "
            f"usable results ({type(exc).__name__}: {exc})",
            out,
            elapsed,
        )


def _failed(assignment: Assignment, student: str, why: str, out: Path, elapsed: float) -> SubmissionResult:
    log = (out / "session.log").read_text(errors="replace")[-3000:] if (out / "session.log").exists() else ""
    return SubmissionResult(
        assignment=assignment.id,
        student=student,
        checks=(),
        harness_error=f"{why}\n{log}".strip(),
        duration=round(elapsed, 3),
    )


# --- intake ----------------------------------------------------------------------------------

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
MAX_UNPACKED = 200 << 20


class IntakeError(Exception):
    pass


def student_name(path: Path) -> str:
    stem = path.name[: -len(".zip")] if path.name.endswith(".zip") else path.name
    return _SAFE_NAME.sub("_", stem).strip("._") or "student"


def safe_unzip(archive: Path, dest: Path) -> Path:
    """Unpack a student's zip, refusing paths that leave ``dest`` and oversized contents."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            total = sum(i.file_size for i in infos)
            if total > MAX_UNPACKED:
                raise IntakeError(f"{archive.name} would unpack to {total:,} bytes (limit {MAX_UNPACKED:,})")
            for info in infos:
                p = PurePosixPath(info.filename)
                if p.is_absolute() or ".." in p.parts or info.filename.startswith("\\"):
                    raise IntakeError(f"{archive.name} contains an unsafe path: {info.filename!r}")
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise IntakeError(f"{archive.name} contains a symbolic link: {info.filename!r}")
            dest.mkdir(parents=True)
            zf.extractall(dest)
    except zipfile.BadZipFile as exc:
        raise IntakeError(f"{archive.name} is not a valid zip file: {exc}") from exc
    entries = [p for p in dest.iterdir() if p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():  # one wrapping folder: flatten
        return entries[0]
    return dest


def intake(submissions: Path, work: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """(student -> folder to grade, student -> why it could not be taken in)."""
    ready: dict[str, Path] = {}
    refused: dict[str, str] = {}
    for child in sorted(submissions.iterdir()):
        if child.name.startswith("."):
            continue
        name = student_name(child)
        if child.is_dir():
            ready[name] = child
        elif child.suffix == ".zip":
            try:
                ready[name] = safe_unzip(child, work / name)
            except IntakeError as exc:
                refused[name] = str(exc)
        else:
            continue
    return ready, refused


# --- a batch ---------------------------------------------------------------------------------


def grade_batch(
    assignment: Assignment,
    submissions: Path,
    out: Path,
    jobs: int = 1,
    options: SessionOptions = SessionOptions(),
    progress: Callable[[int, int, SubmissionResult], None] | None = None,
) -> list[SubmissionResult]:
    out.mkdir(parents=True, exist_ok=True)
    become_subreaper()
    work = out / ".intake"
    shutil.rmtree(work, ignore_errors=True)
    ready, refused = intake(submissions, work)
    results: list[SubmissionResult] = []
    for name, why in refused.items():
        r = SubmissionResult(assignment=assignment.id, student=name, checks=(), refused=why)
        write_outputs(r, out / name)
        results.append(r)
    total = len(ready) + len(refused)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {
            pool.submit(run_session, assignment, path, out / name, name, options): name
            for name, path in ready.items()
        }
        for fut in as_completed(futures):
            r = fut.result()
            write_outputs(r, out / futures[fut])
            results.append(r)
            if progress:
                progress(len(results), total, r)
    shutil.rmtree(work, ignore_errors=True)
    write_gradebook(results, out / "gradebook.csv")
    write_index(results, out / "index.html", assignment.id)
    return results
