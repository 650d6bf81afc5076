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
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ._assignment import Assignment, project_root
from ._outputs import read_adjustments, write_gradebook, write_index, write_outputs
from ._process import become_subreaper, reap_orphans, register_harness_pid, unregister_harness_pid
from ._results import SubmissionResult
from ._store import Store, fingerprint_files, fingerprint_grader

STORE_NAME = "wiregrade.db"

_reap_lock = threading.Lock()


@dataclass(frozen=True)
class SessionOptions:
    visibility: str = "all"  # "all" | "public"
    wire: str = "auto"
    isolation: str = "auto"
    student_user: str = "auto"  # "off": as root, run student programs as root (not recommended)


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
        "--student-user",
        options.student_user,
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


_MOODLE = re.compile(r"^(?P<name>.+?)_(?P<id>\d+)_assignsubmission_\w*$")
ARCHIVES = (".zip", ".tar.gz", ".tgz")


def student_name(path: Path, names: dict[str, str] | None = None) -> str:
    """A student id from a child of SUBMISSIONS: an LMS export's id where it has one."""
    stem = path.name
    for ext in ARCHIVES:
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    if names and stem in names:  # Gradescope export: submission_NNN -> its submitter
        stem = names[stem]
    elif m := _MOODLE.match(stem):  # Moodle: "Jane Doe_12345_assignsubmission_file_"
        stem = f"{m['name']}_{m['id']}"
    return _SAFE_NAME.sub("_", stem).strip("._") or "student"


def gradescope_names(submissions: Path) -> dict[str, str]:
    """submission_NNN -> the submitter's sid (or email, or name) from submission_metadata.yml.

    Gradescope writes Ruby-flavoured YAML (``:submitters:``, ``:sid:``); a line reader is
    enough for the three fields we need, and avoids a YAML dependency.
    """
    meta = submissions / "submission_metadata.yml"
    if not meta.is_file():
        return {}
    names: dict[str, str] = {}
    current = ""
    for line in meta.read_text(errors="replace").splitlines():
        if m := re.match(r"^(submission_\d+):", line):
            current = m[1]
        elif current and current not in names and (m := re.match(r"^\s+:?(sid|email|name):\s*(.+)$", line)):
            value = m[2].strip().strip("'\"")
            if value:
                names[current] = value
    return names


def _check_member(archive: Path, name: str, is_link: bool) -> None:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or name.startswith("\\"):
        raise IntakeError(f"{archive.name} contains an unsafe path: {name!r}")
    if is_link:
        raise IntakeError(f"{archive.name} contains a link: {name!r}")


def safe_unpack(archive: Path, dest: Path) -> Path:
    """Unpack a student's .zip or .tar.gz, refusing paths that leave ``dest``, links, devices,
    and contents larger than MAX_UNPACKED. Nothing is written unless every member is safe."""
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                total = sum(i.file_size for i in infos)
                for i in infos:
                    _check_member(archive, i.filename, (i.external_attr >> 16) & 0o170000 == 0o120000)
                if total > MAX_UNPACKED:
                    raise IntakeError(
                        f"{archive.name} would unpack to {total:,} bytes (limit {MAX_UNPACKED:,})"
                    )
                dest.mkdir(parents=True)
                zf.extractall(dest)
        else:
            with tarfile.open(archive, "r:gz") as tf:
                members = tf.getmembers()
                total = sum(m.size for m in members)
                for m in members:
                    _check_member(archive, m.name, m.issym() or m.islnk())
                    if not (m.isfile() or m.isdir()):
                        raise IntakeError(f"{archive.name} contains a special file: {m.name!r}")
                if total > MAX_UNPACKED:
                    raise IntakeError(
                        f"{archive.name} would unpack to {total:,} bytes (limit {MAX_UNPACKED:,})"
                    )
                dest.mkdir(parents=True)
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # 3.12+: belt and braces
                for m in members:
                    tf.extract(m, dest, set_attrs=False, **safe)  # type: ignore[arg-type]
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise IntakeError(f"{archive.name} is not a valid archive: {exc}") from exc
    entries = [p for p in dest.iterdir() if p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():  # one wrapping folder: flatten
        return entries[0]
    return dest


def intake(submissions: Path, work: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """(student -> folder to grade, student -> why it could not be taken in)."""
    names = gradescope_names(submissions)
    ready: dict[str, Path] = {}
    refused: dict[str, str] = {}
    for child in sorted(submissions.iterdir()):
        if child.name.startswith(".") or child.name == "submission_metadata.yml":
            continue
        name = student_name(child, names)
        if child.is_dir() and not child.is_symlink():
            entries = [p for p in child.iterdir() if p.name != "__MACOSX"]
            ready[name] = entries[0] if len(entries) == 1 and entries[0].is_dir() else child
        elif child.name.endswith(ARCHIVES):
            try:
                ready[name] = safe_unpack(child, work / name)
            except IntakeError as exc:
                refused[name] = str(exc)
    return ready, refused


# --- a batch ---------------------------------------------------------------------------------


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
) -> list[SubmissionResult]:
    """Grade every submission not already graded (same files, same grader) and render all.

    Each result is committed to the store as soon as it is in, so a killed batch resumes
    where it stopped. ``only`` regrades those students alone; ``force`` ignores the store.
    """
    out.mkdir(parents=True, exist_ok=True)
    become_subreaper()
    store = Store(out / STORE_NAME)
    grader = fingerprint_grader(assignment)
    work = out / ".intake"
    shutil.rmtree(work, ignore_errors=True)
    ready, refused = intake(submissions, work)
    for name, why in refused.items():
        store.put(
            SubmissionResult(assignment=assignment.id, student=name, checks=(), refused=why), "", grader
        )
    todo: dict[str, tuple[Path, str]] = {}
    for name, path in ready.items():
        files = fingerprint_files(path)
        wanted = name in only if only is not None else True
        if wanted and (force or only is not None or not store.is_current(assignment.id, name, files, grader)):
            todo[name] = (path, files)
    done = 0
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {
            pool.submit(run_session, assignment, path, out / name, name, options): (name, files)
            for name, (path, files) in todo.items()
        }
        for fut in as_completed(futures):
            name, files = futures[fut]
            r = fut.result()
            store.put(r, files, grader)  # committed before anything else: a kill loses nothing
            write_outputs(r, out / name)
            done += 1
            if progress:
                progress(done, len(todo), r)
    shutil.rmtree(work, ignore_errors=True)
    students = set(ready) | set(refused)
    results = [r for r in store.all(assignment.id) if r.student in students]
    store.close()
    render_batch(results, out, assignment.id, adjustments)
    return results


def render_batch(
    results: list[SubmissionResult], out: Path, assignment_id: str, adjustments: Path | None
) -> None:
    """Every report, the gradebook and the class page, from results alone."""
    for r in results:
        write_outputs(r, out / r.student)
    write_gradebook(results, out / "gradebook.csv", read_adjustments(adjustments) if adjustments else {})
    write_index(results, out / "index.html", assignment_id)


def rerender(out: Path, adjustments: Path | None = None) -> list[SubmissionResult]:
    """`wiregrade report OUT`: render again from the store, running nothing."""
    db = out / STORE_NAME
    if not db.is_file():
        raise IntakeError(f"{out} holds no wiregrade store ({STORE_NAME})")
    store = Store(db)
    try:
        ids = store.assignments()
        results = store.all()
    finally:
        store.close()
    for aid in ids:
        render_batch([r for r in results if r.assignment == aid], out, aid, adjustments)
    return results
