"""Running grading sessions: one subprocess per submission, many at once for a class.

The parent never imports a grader. It starts ``python -m harness._session`` in its own
process group with a wall deadline, reads the session.json it leaves, and turns a crash,
a hang or a missing file into a harness error for that submission only.

A batch takes SUBMISSIONS in (:mod:`harness._intake`), gives its sessions a capture secret
(the environment's, else the store's own), and writes each student's outputs under
``OUT/students/<id>/`` (:func:`student_dir`), apart from the batch's own files in OUT; an OUT
written with the older ``OUT/<id>/`` layout is moved over first (:func:`migrate_layout`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Protocol

from ._assignment import Assignment, project_root
from ._capture import SECRET_ENV
from ._errors import HarnessError
from ._intake import Intake, IntakeError, is_late, take_in_all
from ._outputs import read_adjustments, report_navs, write_gradebook, write_index, write_outputs
from ._proc import become_subreaper, reap_orphans, register_harness_pid, unregister_harness_pid
from ._progress import PROGRESS_ENV, Event, listen
from ._results import SubmissionResult
from ._store import STORE_NAME, Arrival, Store, fingerprint_files, fingerprint_grader

__all__ = [
    "STORE_NAME",
    "Intake",
    "IntakeError",
    "SessionOptions",
    "deadline_of",
    "grade_batch",
    "graded_capture_secret",
    "migrate_layout",
    "render_batch",
    "rerender",
    "run_session",
    "student_dir",
]

_reap_lock = threading.Lock()


@dataclass(frozen=True)
class SessionOptions:
    visibility: str = "all"  # "all" | "public"
    wire: str = "auto"
    isolation: str = "auto"
    student_user: str = "auto"  # "off": as root, run student programs as root (not recommended)
    sandbox: str = "auto"  # "off": run student programs without bubblewrap (not recommended)


def run_session(
    assignment: Assignment,
    submission: Path,
    out: Path,
    student: str,
    options: SessionOptions = SessionOptions(),
    *,
    capture_secret: str = "",
    on_event: Callable[[Event], None] | None = None,
) -> SubmissionResult:
    """Grade one submission in a subprocess. ``capture_secret`` salts the seeds of the
    captures the grader makes (the environment's WIREGRADE_CAPTURE_SECRET, if set, wins).
    ``on_event`` hears the session's progress (each check as it finishes), from a thread."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "session.json").unlink(missing_ok=True)
    argv, env, root = session_command(assignment, submission, out, student, options, capture_secret)
    started = time.monotonic()
    deadline = assignment.session_seconds
    progress_fd, finish_progress = listen(on_event) if on_event else (-1, lambda: None)
    if progress_fd >= 0:
        env[PROGRESS_ENV] = str(progress_fd)
    with open(out / "session.log", "wb") as log:
        with _reap_lock:  # never let another thread's reap see this child unregistered
            proc = subprocess.Popen(
                [sys.executable, "-m", "harness._session", *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=root,
                start_new_session=True,
                pass_fds=(progress_fd,) if progress_fd >= 0 else (),
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
            finish_progress()
    return session_result(assignment, student, out, timed_out, proc.returncode, time.monotonic() - started)


def session_command(
    assignment: Assignment,
    submission: Path,
    out: Path,
    student: str,
    options: SessionOptions,
    capture_secret: str,
) -> tuple[list[str], dict[str, str], Path]:
    """The arguments of ``python -m harness._session``, its environment and its folder."""
    argv = [
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
        "--student-user",
        options.student_user,
        "--sandbox",
        options.sandbox,
    ]
    env, root = session_env(capture_secret)
    return argv, env, root


def session_env(capture_secret: str = "") -> tuple[dict[str, str], Path]:
    """A session's environment (this harness on its path) and the folder it runs in."""
    root = project_root()
    package_parent = str(Path(__file__).resolve().parent.parent)  # this harness, installed or not
    env = {
        **os.environ,
        "WIREGRADE_HOME": str(root),  # absolute: the session runs from another folder
        "PYTHONPATH": os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")])),
    }
    if capture_secret and not os.environ.get(SECRET_ENV):
        env[SECRET_ENV] = capture_secret  # the session's environment only: never in a report
    return env, root


def session_result(
    assignment: Assignment, student: str, out: Path, timed_out: bool, returncode: int | None, elapsed: float
) -> SubmissionResult:
    """What a finished session left in OUT/session.json, or a harness error saying why not."""
    if timed_out:
        return _failed(
            assignment,
            student,
            f"the grading session did not finish within {assignment.session_seconds:g} s and was stopped",
            out,
            elapsed,
        )
    try:
        return SubmissionResult.load(out / "session.json")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return _failed(
            assignment,
            student,
            f"the grading session (exit {returncode}) left no usable results ({type(exc).__name__}: {exc})",
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


# --- a batch ---------------------------------------------------------------------------------

STUDENTS = "students"  # OUT/students/<id>/: each student's outputs, apart from the batch's own


def deadline_of(assignment: Assignment, given: str | datetime | None = None) -> datetime | None:
    """The deadline that marks late work: ``given`` (``--deadline``, ISO 8601) if set, else
    ``deadline`` in assignment.toml (a TOML date-time, a date meaning its end, or an ISO
    string), else None. Late work is marked, never penalised."""
    value = given if given is not None else assignment.settings.get("deadline")
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, datetime.max.time())
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        where = "--deadline" if given is not None else f"deadline in {assignment.id}'s assignment.toml"
        raise HarnessError(
            f"{where}: {value!r} is not a date and time (ISO 8601, e.g. 2026-03-01T23:59:00+00:00)"
        ) from None
    if len(str(value)) == 10:  # a date alone: the end of that day
        parsed = datetime.combine(parsed.date(), datetime.max.time())
    return parsed


@dataclass(frozen=True)
class Batch:
    """What every session of one batch shares, wherever it runs."""

    assignment: Assignment
    out: Path
    options: SessionOptions
    capture_secret: str
    grader: str  # fingerprint_grader(assignment) where the batch was started


class Sessions(Protocol):
    """Where a batch's sessions run: yields (student, result) as each one is in, every student
    of ``todo`` exactly once; a session that could not run is a result with a harness_error.
    A session's files (session.json, its log, the capture) end in ``student_dir(out, student)``."""

    def run(self, batch: Batch, todo: dict[str, Path]) -> Iterator[tuple[str, SubmissionResult]]: ...


class LocalSessions:
    """Sessions on this machine, ``jobs`` at a time."""

    def __init__(self, jobs: int = 1) -> None:
        self.jobs = max(1, jobs)

    def run_one(self, batch: Batch, path: Path, student: str) -> SubmissionResult:
        """One student's session (a subclass may run it elsewhere on this machine)."""
        out = student_dir(batch.out, student)
        return run_session(
            batch.assignment, path, out, student, batch.options, capture_secret=batch.capture_secret
        )

    def run(self, batch: Batch, todo: dict[str, Path]) -> Iterator[tuple[str, SubmissionResult]]:
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            futures = {pool.submit(self.run_one, batch, path, name): name for name, path in todo.items()}
            try:
                for fut in as_completed(futures):
                    yield futures[fut], fut.result()
            except BaseException:  # Ctrl-C, or the batch closed early: what has not started never does
                pool.shutdown(wait=False, cancel_futures=True)
                raise


def grade_batch(
    assignment: Assignment,
    submissions: Path,
    out: Path,
    jobs: int = 1,
    options: SessionOptions = SessionOptions(),
    progress: Callable[[int, int, SubmissionResult], None] | None = None,
    *,
    force: bool = False,
    only: set[str] | None = None,
    adjustments: Path | None = None,
    on_intake: Callable[[Intake], None] | None = None,
    deadline: datetime | None = None,
    sessions: Sessions | None = None,
    classroom_prefix: str = "",
) -> list[SubmissionResult]:
    """Grade every submission not already graded (same files, same grader) and render all.

    Each result is committed to the store as soon as it is in, so a killed batch resumes
    where it stopped. ``only`` regrades those students alone; ``force`` ignores the store.
    Captures are salted with WIREGRADE_CAPTURE_SECRET when it is set, else with a secret
    made once for this OUT and kept in its store (the same on a resume; in no report).
    ``on_intake`` is told how every child of SUBMISSIONS was taken in (refused, merged, renamed).
    Submission times an export names are kept; ``deadline`` (else the assignment's) marks late ones.
    ``sessions`` is where the sessions run: a local pool of ``jobs`` (the default) or a cluster.
    ``classroom_prefix``: GitHub Classroom's ``<assignment>-``, stripped from its clones' names.
    """
    out.mkdir(parents=True, exist_ok=True)
    become_subreaper()
    store = Store(out / STORE_NAME)
    migrate_layout(out, {r.student for r in store.all()})
    secret = os.environ.get(SECRET_ENV) or store.capture_secret()
    grader = fingerprint_grader(assignment)
    due = deadline if deadline is not None else deadline_of(assignment)
    work = out / ".intake"
    shutil.rmtree(work, ignore_errors=True)
    taken = take_in_all(submissions, work, classroom_prefix)
    taken.arrivals = {sid: replace(a, late=is_late(a, due)) for sid, a in taken.arrivals.items()}
    ready, refused = taken.ready, taken.refused
    todo: dict[str, tuple[Path, str]] = {}
    for name, path in list(ready.items()):
        try:
            files = fingerprint_files(path)
        except OSError as exc:  # changed or unreadable since intake: this student only
            refused[name] = f"could not read the submission: {exc}"
            del ready[name]
            continue
        wanted = name in only if only is not None else True
        if wanted and (force or only is not None or not store.is_current(assignment.id, name, files, grader)):
            todo[name] = (path, files)
    if on_intake:
        on_intake(taken)
    store.put_arrivals(assignment.id, taken.arrivals)
    for name, why in refused.items():
        store.put(
            SubmissionResult(assignment=assignment.id, student=name, checks=(), refused=why), "", grader
        )
    where = sessions or LocalSessions(jobs)
    batch = Batch(assignment, out, options, secret, grader)
    finished = where.run(batch, {name: path for name, (path, _files) in todo.items()})
    try:
        for done, (name, r) in enumerate(finished, 1):
            store.put(r, todo[name][1], grader)  # committed before anything else: a kill loses nothing
            write_outputs(r, student_dir(out, name))
            if progress:
                progress(done, len(todo), r)
    finally:
        close = getattr(finished, "close", None)
        if close:
            close()  # Ctrl-C: the sessions not yet started never start
    shutil.rmtree(work, ignore_errors=True)
    students = set(ready) | set(refused)
    results = [r for r in store.all(assignment.id) if r.student in students]
    store.close()
    render_batch(results, out, assignment.id, adjustments, taken.arrivals)
    return results


def student_dir(out: Path, student: str) -> Path:
    """Where one student's outputs (reports, results, capture) live inside a batch's OUT:
    ``OUT/students/<id>/``, so no student's id can take a name the batch writes in OUT."""
    return out / STUDENTS / student


def migrate_layout(out: Path, students: set[str]) -> list[str]:
    """Move each ``OUT/<id>/`` of the older layout to ``OUT/students/<id>/`` (the students the
    store knows only; nothing else in OUT is touched). A folder whose new place is taken is
    left where it is, never merged over: no student's output is lost. Returns the ids moved."""
    moved: list[str] = []
    new_home = out / STUDENTS
    if STUDENTS in students and (new_home / "results.json").is_file() and not new_home.is_symlink():
        # a student named "students" in the old layout: their folder is where the new one goes
        parked = out / f".{STUDENTS}-migrating"
        new_home.rename(parked)
        new_home.mkdir()
        parked.rename(new_home / STUDENTS)
        moved.append(STUDENTS)
    for sid in sorted(students - {STUDENTS}):
        old = out / sid
        if not old.is_dir() or old.is_symlink() or (out / STUDENTS / sid).exists():
            continue
        new_home.mkdir(exist_ok=True)
        old.rename(new_home / sid)
        moved.append(sid)
    return moved


def render_batch(
    results: list[SubmissionResult],
    out: Path,
    assignment_id: str,
    adjustments: Path | None,
    arrivals: dict[str, Arrival] | None = None,
) -> None:
    """Every report, the gradebook and the class page, from results alone."""
    navs = report_navs({r.student: student_dir(out, r.student) for r in results}, out / "index.html")
    for r in results:
        write_outputs(r, student_dir(out, r.student), navs[r.student])
    adj = read_adjustments(adjustments) if adjustments else {}
    write_gradebook(results, out / "gradebook.csv", adj, arrivals or {})
    write_index(
        results,
        out / "index.html",
        assignment_id,
        arrivals or {},
        lambda s: student_dir(out, s).relative_to(out).as_posix(),
    )


def graded_capture_secret(out: Path) -> str | None:
    """The capture secret a batch made for OUT (None if it made none), for a dispute."""
    db = out / STORE_NAME
    if not db.is_file():
        raise IntakeError(f"{out} holds no wiregrade store ({STORE_NAME})")
    store = Store(db)
    try:
        return store.find_capture_secret()
    finally:
        store.close()


def rerender(out: Path, adjustments: Path | None = None) -> list[SubmissionResult]:
    """`wiregrade report OUT`: render again from the store, running nothing (an OUT of the
    older layout is migrated first)."""
    db = out / STORE_NAME
    if not db.is_file():
        raise IntakeError(f"{out} holds no wiregrade store ({STORE_NAME})")
    store = Store(db)
    try:
        ids = store.assignments()
        results = store.all()
        arrivals = {aid: store.arrivals(aid) for aid in ids}
    finally:
        store.close()
    migrate_layout(out, {r.student for r in results})
    for aid in ids:
        render_batch([r for r in results if r.assignment == aid], out, aid, adjustments, arrivals[aid])
    return results
