"""Running grading sessions: one subprocess per submission, many at once for a class.

The parent never imports a grader. It starts ``python -m harness._session`` in its own
process group with a wall deadline, reads the session.json it leaves, and turns a crash,
a hang or a missing file into a harness error for that submission only.

Intake takes each child of SUBMISSIONS in without following anything a student made: a
folder or an archive holding a link or a special file (fifo, socket, device) is refused, as
is one past the bounds on files, bytes and depth, and the walk stops at the first of these.
A batch gives its sessions a capture secret (the environment's, else the store's own).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from ._assignment import Assignment, project_root
from ._capture import SECRET_ENV
from ._outputs import read_adjustments, write_gradebook, write_index, write_outputs
from ._proc import become_subreaper, reap_orphans, register_harness_pid, unregister_harness_pid
from ._results import SubmissionResult
from ._safefile import NOT_GRADED, walk
from ._store import Store, fingerprint_files, fingerprint_grader

STORE_NAME = "wiregrade.db"

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
) -> SubmissionResult:
    """Grade one submission in a subprocess. ``capture_secret`` salts the seeds of the
    captures the grader makes (the environment's WIREGRADE_CAPTURE_SECRET, if set, wins)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "session.json").unlink(missing_ok=True)
    argv, env, root = session_command(assignment, submission, out, student, options, capture_secret)
    started = time.monotonic()
    deadline = assignment.session_seconds
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


# --- intake ----------------------------------------------------------------------------------

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
MAX_UNPACKED = 200 << 20  # bytes in one submission (sizes as the files claim: a sparse file counts whole)
MAX_FILES = 2_000  # files and folders in one submission
MAX_DEPTH = 24  # folders nested in one submission


class IntakeError(Exception):
    pass


_MOODLE = re.compile(r"^(?P<name>.+?)_(?P<id>\d+)_assignsubmission_(?P<kind>[A-Za-z]*)\w*$")
ARCHIVES = (".zip", ".tar.gz", ".tgz", ".tar.xz")  # matched case-insensitively
# archive types a student may hand in that intake does not read: refused by name, never skipped
OTHER_ARCHIVES = (".rar", ".7z", ".tar", ".tar.bz2", ".tbz2", ".gz", ".bz2", ".xz", ".zst", ".tar.zst")
# what a batch writes at the top of OUT: no student's output folder may take one of these names
RESERVED = frozenset(
    n.lower()
    for n in (
        STORE_NAME,
        f"{STORE_NAME}-wal",
        f"{STORE_NAME}-shm",
        f"{STORE_NAME}-journal",
        "gradebook.csv",
        "index.html",
    )
)
RESERVED_SUFFIX = "_student"


def _archive_ext(name: str) -> str:
    """The accepted archive extension ``name`` ends with (any case), or ''."""
    low = name.lower()
    return next((ext for ext in ARCHIVES if low.endswith(ext)), "")


def _safe_id(text: str, fallback: str) -> str:
    """An id made of safe characters that never takes a name the batch writes in OUT (RESERVED):
    such an id gets RESERVED_SUFFIX (``index.html`` -> ``index.html_student``)."""
    sid = _SAFE_NAME.sub("_", text).strip("._") or fallback
    return sid + RESERVED_SUFFIX if sid.lower() in RESERVED else sid


def _was_reserved(sid: str) -> bool:
    return sid.endswith(RESERVED_SUFFIX) and sid[: -len(RESERVED_SUFFIX)].lower() in RESERVED


def student_name(path: Path, names: dict[str, str] | None = None) -> str:
    """A student id from a child of SUBMISSIONS: an LMS export's id where it has one.

    An id never takes a name the batch writes in OUT (RESERVED): such an id gets
    RESERVED_SUFFIX (``index.html.zip`` -> ``index.html_student``)."""
    stem = path.name
    if ext := _archive_ext(stem):
        stem = stem[: -len(ext)]
    if names and stem in names:  # Gradescope export: submission_NNN -> its submitter
        stem = names[stem]
    elif m := _MOODLE.match(stem):  # Moodle: "Jane Doe_12345_assignsubmission_file_"
        stem = f"{m['name']}_{m['id']}"
    return _safe_id(stem, "student")


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


def _shown(path: str) -> str:
    """A student-made path for a message: as it is when it is short and printable."""
    return path if path.isprintable() and len(path) <= 160 else repr(path[:160])


def _kind(mode: int) -> str:
    """What a file that is neither a regular file nor a folder is, in a student's words."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a named pipe (fifo)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


class _Tally:
    """A submission's entries as intake meets them: refused as soon as a bound is crossed."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.entries = 0
        self.bytes = 0

    def entry(self, path: str, depth: int, size: int = 0) -> None:
        self.entries += 1
        if self.entries > MAX_FILES:
            raise IntakeError(
                f"{self.where} holds {self.entries:,} files and folders or more (limit {MAX_FILES:,})"
            )
        if depth > MAX_DEPTH:
            raise IntakeError(
                f"{self.where}: {_shown(path)} is nested {depth} levels deep (limit {MAX_DEPTH})"
            )
        self.bytes += size
        if self.bytes > MAX_UNPACKED:
            raise IntakeError(
                f"{self.where} holds {self.bytes:,} bytes or more (limit {MAX_UNPACKED:,}; "
                f"{_shown(path)} is {size:,} bytes)"
            )


def check_folder(folder: Path) -> None:
    """Refuse a folder submission holding anything but regular files and folders (a link, a
    fifo, a socket, a device), or more files, bytes or depth than the bounds allow.

    The walk is iterative (any depth, no recursion), follows nothing, reads no file (sizes
    are st_size: a sparse file counts what it claims), and stops at the first refusal.
    Tools' folders that are never graded (.git, .venv, ...: NOT_GRADED) are passed over.
    """
    tally = _Tally("the submission")
    try:
        # NOT_GRADED: never copied into a session, so not the student's work
        for path, e, depth in walk(folder, prune=lambda e: e.name in NOT_GRADED):
            if e.is_dir(follow_symlinks=False):
                tally.entry(path, depth)
                continue
            st = e.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                raise IntakeError(f"{_shown(path)} is {_kind(st.st_mode)}; hand in regular files only")
            tally.entry(path, depth, st.st_size)
    except OSError as exc:
        where = os.path.relpath(exc.filename, folder) if exc.filename else "."
        raise IntakeError(f"could not read {_shown(where)} in the submission: {exc.strerror}") from exc


def _check_member(archive: Path, name: str, is_link: bool, tally: _Tally) -> None:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or name.startswith("\\"):
        raise IntakeError(f"{archive.name} contains an unsafe path: {name!r}")
    if is_link:
        raise IntakeError(f"{archive.name} contains a link: {name!r}")
    tally.entry(name, len(p.parts))


def safe_unpack(archive: Path, dest: Path) -> Path:
    """Unpack a student's .zip, .tar.gz/.tgz or .tar.xz (any case), refusing paths that leave
    ``dest``, links, devices, more than MAX_FILES members, deeper than MAX_DEPTH, and contents
    larger than MAX_UNPACKED. Nothing is written unless every member is safe."""
    tally = _Tally(archive.name)  # counts and depth; bytes are summed from the members below
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                total = sum(i.file_size for i in infos)
                for i in infos:
                    link = (i.external_attr >> 16) & 0o170000 == 0o120000
                    _check_member(archive, i.filename, link, tally)
                if total > MAX_UNPACKED:
                    raise IntakeError(
                        f"{archive.name} would unpack to {total:,} bytes (limit {MAX_UNPACKED:,})"
                    )
                dest.mkdir(parents=True)
                zf.extractall(dest)
        else:
            mode = "r:xz" if archive.name.lower().endswith(".tar.xz") else "r:gz"
            with tarfile.open(archive, mode) as tf:  # type: ignore[call-overload]
                members: list[tarfile.TarInfo] = []
                for m in tf:  # read one header at a time: a refusal stops before the rest
                    _check_member(archive, m.name, m.issym() or m.islnk(), tally)
                    if not (m.isfile() or m.isdir()):
                        raise IntakeError(f"{archive.name} contains a special file: {m.name!r}")
                    members.append(m)
                total = sum(m.size for m in members)
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


def _stray(child: Path) -> str:
    """Why a regular file that is not an archive intake reads is refused."""
    low = child.name.lower()
    longest_first = sorted(OTHER_ARCHIVES, key=len, reverse=True)
    other = next((ext for ext in longest_first if low.endswith(ext)), "")
    if other:
        return (
            f"{_shown(child.name)} is a {other} archive, which wiregrade does not read; hand in a folder, "
            f"a .zip, a .tar.gz/.tgz or a .tar.xz"
        )
    return (
        f"{_shown(child.name)} is a file, not a submission (a folder, a .zip, a .tar.gz/.tgz or a .tar.xz); "
        "it was not graded"
    )


def _take_in(child: Path, dest: Path) -> Path:
    """The folder to grade for one child of SUBMISSIONS, or IntakeError saying why it is
    refused (a stray file, an unknown archive type, ...). The child itself is never followed."""
    try:
        mode = child.lstat().st_mode
    except OSError as exc:
        raise IntakeError(f"could not read {child.name}: {exc.strerror}") from exc
    if stat.S_ISDIR(mode):
        check_folder(child)
        entries = [p for p in child.iterdir() if p.name != "__MACOSX"]
        return entries[0] if len(entries) == 1 and entries[0].is_dir() else child  # no links in there now
    if not stat.S_ISREG(mode):
        raise IntakeError(
            f"{_shown(child.name)} is {_kind(mode)}, not a folder or an archive; hand in the submission "
            "itself (it is not followed)"
        )
    if _archive_ext(child.name):
        return safe_unpack(child, dest)
    raise IntakeError(_stray(child))


@dataclass
class Intake:
    """How every child of SUBMISSIONS was taken in: each ends in exactly one of ``ready``
    (graded), ``refused`` (with the reason) or ``merged`` into a student's id."""

    ready: dict[str, Path]  # student -> the folder to grade
    refused: dict[str, str]  # student (or the stray entry's own name) -> why
    merged: dict[str, list[str]]  # student -> the entries taken in for them, the graded one first
    renamed: dict[str, str]  # entry -> the id it was given, when its own name is reserved


def _entry_id(child: Path, names: dict[str, str]) -> str:
    """A stray file keeps its whole name as its id, so it never collides with a student's."""
    if child.is_file() and not child.is_symlink() and not _archive_ext(child.name):
        return _safe_id(child.name, "entry")
    return student_name(child, names)


def _moodle_kind(child: Path) -> str:
    stem = child.name
    if ext := _archive_ext(stem):
        stem = stem[: -len(ext)]
    m = _MOODLE.match(stem)
    return m["kind"] if m else ""


def take_in_all(submissions: Path, work: Path) -> Intake:
    """Every child of SUBMISSIONS, accounted for.

    Two or more entries mapping to one id: a Moodle export's file submission and its online
    text (``..._assignsubmission_file_`` beside ``..._assignsubmission_onlinetext_``) are
    merged: the file submission is graded, the online text is listed as a part. Any other
    pair (``alice/`` beside ``alice.zip``) is refused, naming both: intake cannot know which
    one the student meant, and grading either silently is how a correct solution scores 0.
    """
    names = gradescope_names(submissions)
    groups: dict[str, list[Path]] = {}
    renamed: dict[str, str] = {}
    for child in sorted(submissions.iterdir()):
        if child.name.startswith(".") or child.name == "submission_metadata.yml":
            continue
        sid = _entry_id(child, names)
        if _was_reserved(sid):
            renamed[child.name] = sid
        groups.setdefault(sid, []).append(child)
    got = Intake({}, {}, {}, renamed)
    for sid, entries in groups.items():
        child = entries[0]
        if len(entries) > 1:
            kinds = [_moodle_kind(e) for e in entries]
            files = [e for e, k in zip(entries, kinds, strict=True) if k == "file"]
            others = [k for e, k in zip(entries, kinds, strict=True) if not files or e is not files[0]]
            if len(files) == 1 and all(k and k != "file" for k in others):
                child = files[0]
                got.merged[sid] = [child.name, *(e.name for e in entries if e is not child)]
            else:
                got.refused[sid] = (
                    f"{len(entries)} entries map to student {sid}: "
                    + ", ".join(_shown(e.name) for e in entries)
                    + "; none was graded (keep the one to grade and run again)"
                )
                continue
        try:
            got.ready[sid] = _take_in(child, work / sid)
        except IntakeError as exc:
            got.refused[sid] = str(exc)
    return got


def intake(submissions: Path, work: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """(student -> folder to grade, student -> why it could not be taken in)."""
    got = take_in_all(submissions, work)
    return got.ready, got.refused


# --- a batch ---------------------------------------------------------------------------------


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

    def run(self, batch: Batch, todo: dict[str, Path]) -> Iterator[tuple[str, SubmissionResult]]:
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            futures = {
                pool.submit(
                    run_session,
                    batch.assignment,
                    path,
                    student_dir(batch.out, name),
                    name,
                    batch.options,
                    capture_secret=batch.capture_secret,
                ): name
                for name, path in todo.items()
            }
            for fut in as_completed(futures):
                yield futures[fut], fut.result()


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
    sessions: Sessions | None = None,
) -> list[SubmissionResult]:
    """Grade every submission not already graded (same files, same grader) and render all.

    Each result is committed to the store as soon as it is in, so a killed batch resumes
    where it stopped. ``only`` regrades those students alone; ``force`` ignores the store.
    Captures are salted with WIREGRADE_CAPTURE_SECRET when it is set, else with a secret
    made once for this OUT and kept in its store (the same on a resume; in no report).
    ``on_intake`` is told how every child of SUBMISSIONS was taken in (refused, merged, renamed).
    ``sessions`` is where the sessions run: a local pool of ``jobs`` (the default) or a cluster.
    """
    out.mkdir(parents=True, exist_ok=True)
    become_subreaper()
    store = Store(out / STORE_NAME)
    secret = os.environ.get(SECRET_ENV) or store.capture_secret()
    grader = fingerprint_grader(assignment)
    work = out / ".intake"
    shutil.rmtree(work, ignore_errors=True)
    taken = take_in_all(submissions, work)
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
    for name, why in refused.items():
        store.put(
            SubmissionResult(assignment=assignment.id, student=name, checks=(), refused=why), "", grader
        )
    where = sessions or LocalSessions(jobs)
    batch = Batch(assignment, out, options, secret, grader)
    arrivals = where.run(batch, {name: path for name, (path, _files) in todo.items()})
    for done, (name, r) in enumerate(arrivals, 1):
        store.put(r, todo[name][1], grader)  # committed before anything else: a kill loses nothing
        write_outputs(r, student_dir(out, name))
        if progress:
            progress(done, len(todo), r)
    shutil.rmtree(work, ignore_errors=True)
    students = set(ready) | set(refused)
    results = [r for r in store.all(assignment.id) if r.student in students]
    store.close()
    render_batch(results, out, assignment.id, adjustments)
    return results


def student_dir(out: Path, student: str) -> Path:
    """Where one student's outputs (reports, results, capture) live inside a batch's OUT."""
    return out / student


def render_batch(
    results: list[SubmissionResult], out: Path, assignment_id: str, adjustments: Path | None
) -> None:
    """Every report, the gradebook and the class page, from results alone."""
    for r in results:
        write_outputs(r, student_dir(out, r.student))
    write_gradebook(results, out / "gradebook.csv", read_adjustments(adjustments) if adjustments else {})
    write_index(results, out / "index.html", assignment_id)


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
