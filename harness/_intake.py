"""Intake: every child of SUBMISSIONS graded, refused with the reason, or merged into a student.

Intake takes each child in without following anything a student made: a folder or an archive
holding a link or a special file (fifo, socket, device) is refused, as is one past the bounds
on files, bytes and depth; the walk is iterative and stops at the first of these. LMS exports
are read from their own layout (:mod:`harness._exports`): Moodle, D2L Brightspace, Canvas,
Gradescope, GitHub Classroom; where an export names a submission time or a late marker, it is
kept (:class:`Arrival`). docs/intake.md shows each layout with an example.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath

from ._exports import ARCHIVES, Named, archive_ext, name_of, read_layout
from ._safefile import NOT_GRADED, walk
from ._store import STORE_NAME, Arrival

__all__ = [
    "ARCHIVES",
    "MAX_DEPTH",
    "MAX_FILES",
    "MAX_UNPACKED",
    "Arrival",
    "Intake",
    "IntakeError",
    "check_folder",
    "intake",
    "safe_unpack",
    "take_in_all",
]

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
MAX_UNPACKED = 200 << 20  # bytes in one submission (sizes as the files claim: a sparse file counts whole)
MAX_FILES = 2_000  # files and folders in one submission
MAX_DEPTH = 24  # folders nested in one submission


class IntakeError(Exception):
    pass


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


def _safe_id(text: str, fallback: str) -> str:
    """An id made of safe characters that never takes a name the batch writes in OUT (RESERVED):
    such an id gets RESERVED_SUFFIX (``index.html`` -> ``index.html_student``)."""
    sid = _SAFE_NAME.sub("_", text).strip("._") or fallback
    return sid + RESERVED_SUFFIX if sid.lower() in RESERVED else sid


def _was_reserved(sid: str) -> bool:
    return sid.endswith(RESERVED_SUFFIX) and sid[: -len(RESERVED_SUFFIX)].lower() in RESERVED


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
    if archive_ext(child.name):
        return safe_unpack(child, dest)
    raise IntakeError(_stray(child))


@dataclass
class Intake:
    """How every child of SUBMISSIONS was taken in: each ends in exactly one of ``ready``
    (graded), ``refused`` (with the reason) or ``merged`` into a student's id."""

    ready: dict[str, Path]  # student -> the folder to grade
    refused: dict[str, str]  # student (or the stray entry's own name) -> why
    merged: dict[str, list[str]]  # student -> the entries taken in for them, the graded ones first
    renamed: dict[str, str]  # entry -> the id it was given, when its own name is reserved
    arrivals: dict[str, Arrival] = field(default_factory=dict)  # student -> when, as the export says
    export_files: list[str] = field(default_factory=list)  # the exports' own files (not students')


def is_late(arrival: Arrival, deadline: datetime | None) -> bool:
    """Late by the export's own marker, or submitted after ``deadline``. A time or deadline
    without a zone is compared as wall-clock time with the other."""
    if arrival.late:
        return True
    if deadline is None or not arrival.submitted:
        return False
    at = datetime.fromisoformat(arrival.submitted)
    if (at.tzinfo is None) != (deadline.tzinfo is None):
        at, deadline = at.replace(tzinfo=None), deadline.replace(tzinfo=None)
    return at > deadline


def _entry_id(child: Path, named: Named) -> str:
    """A stray file keeps its whole name as its id, so it never collides with a student's."""
    if not named.export and child.is_file() and not child.is_symlink() and not archive_ext(child.name):
        return _safe_id(child.name, "entry")
    return _safe_id(named.student, "student")


@dataclass(frozen=True)
class _Choice:
    graded: list[tuple[Path, Named]]  # one folder or archive, or the files of one submission
    parts: list[str]  # every entry taken in for the student, the graded ones first


def _choose(sid: str, entries: list[tuple[Path, Named]]) -> _Choice:
    """Which of the entries mapping to ``sid`` is graded, or IntakeError naming them all.

    Moodle: the file submission is graded, its online text listed as a part. D2L: the latest
    submission (by the date in its name) of one user (the id holds the user's number). Canvas
    and exports downloaded without folders: the files of one submission are graded together.
    Any other pair (``alice/`` beside ``alice.zip``) is refused: intake cannot know which one
    the student meant, and grading either silently is how a correct solution scores 0.
    """
    names = [c.name for c, _ in entries]
    exports = {n.export for _, n in entries}
    graded: list[tuple[Path, Named]] = []
    if len(entries) == 1:
        graded = entries
    elif exports == {"moodle"}:
        files = [(c, n) for c, n in entries if n.kind == "file"]
        if files and (len(files) == 1 or all(n.part for _, n in files)):
            graded = files
    elif exports == {"d2l"}:
        latest = max((n.submitted or datetime.min) for _, n in entries)
        last = {n.submission for _, n in entries if (n.submitted or datetime.min) == latest}
        if len(last) == 1:
            graded = [(c, n) for c, n in entries if n.submission in last]
    elif exports == {"canvas"}:
        graded = entries
    if not graded or (len(graded) > 1 and not all(n.part for _, n in graded)):
        raise IntakeError(
            f"{len(entries)} entries map to student {sid}: "
            + ", ".join(_shown(n) for n in names)
            + "; none was graded (keep the one to grade and run again)"
        )
    first = [c.name for c, _ in graded]
    return _Choice(graded, [*first, *(n for n in names if n not in first)])


def _assemble(files: list[tuple[Path, Named]], dest: Path) -> Path:
    """One submission from the files an export named apart (``doe_jane_1_2_server.py`` ->
    ``server.py``); a single archive among them is unpacked instead. Regular files only,
    never followed, within the bounds."""
    if len(files) == 1 and archive_ext(files[0][1].part):
        return safe_unpack(files[0][0], dest)
    tally = _Tally("the submission")
    seen: set[str] = set()
    for child, named in files:
        part = named.part
        if "/" in part or "\\" in part or part in (".", "..") or part.lower() in seen:
            raise IntakeError(f"{_shown(child.name)}: its file name {_shown(part)} cannot be used")
        seen.add(part.lower())
        st = child.lstat()
        if not stat.S_ISREG(st.st_mode):
            raise IntakeError(f"{_shown(child.name)} is {_kind(st.st_mode)}; hand in regular files only")
        tally.entry(part, 1, st.st_size)
    dest.mkdir(parents=True)
    for child, named in files:
        fd = os.open(child, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as src, open(dest / named.part, "xb") as out:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the check above
                raise IntakeError(f"{_shown(child.name)} changed while it was read")
            shutil.copyfileobj(src, out)
    return dest


def _arrival(graded: list[tuple[Path, Named]]) -> Arrival | None:
    times = [n.submitted for _, n in graded if n.submitted]
    late = any(n.late for _, n in graded)
    if not times and not late:
        return None
    return Arrival(max(times).isoformat() if times else "", late, graded[0][1].export)


def _d2l_disagreements(groups: dict[str, list[tuple[Path, Named]]]) -> dict[str, str]:
    """student -> why, for D2L entries whose names contradict reading the second number as the
    user's: one submission number beside two user numbers. Whose work each entry is cannot be
    known then, so every entry involved is refused, named, rather than graded under a guess."""
    users: dict[str, set[str]] = {}
    entries: dict[str, list[str]] = {}
    for group in groups.values():
        for child, named in group:
            if named.export == "d2l":
                number = named.submission.split("-", 1)[0]
                users.setdefault(number, set()).add(named.user)
                entries.setdefault(number, []).append(child.name)
    why: dict[str, str] = {}
    for sid, group in groups.items():
        mine = sorted({n.submission.split("-", 1)[0] for _, n in group if n.export == "d2l"})
        if bad := [x for x in mine if len(users[x]) > 1]:
            listed = {e for x in bad for e in entries[x]} | {c.name for c, _ in group}
            shown = ", ".join(_shown(e) for e in sorted(listed))
            numbers = ", ".join(sorted({u for x in bad for u in users[x]}))
            why[sid] = (
                f"D2L's names give submission {', '.join(bad)} the user numbers {numbers} ({shown}): "
                "whose work each is cannot be told from the names, so none of these was graded "
                "(check them in D2L and grade each as a folder named for its student)"
            )
    return why


def take_in_all(submissions: Path, work: Path, classroom_prefix: str = "") -> Intake:
    """Every child of SUBMISSIONS, accounted for: graded, refused with the reason, or merged
    into a student's id (several entries of one student an export made: see _choose).
    ``classroom_prefix`` is GitHub Classroom's ``<assignment>-`` when the folder's name does
    not say it (``--classroom-prefix``)."""
    children = sorted(c for c in submissions.iterdir() if not c.name.startswith("."))
    layout = read_layout(submissions, children, classroom_prefix)
    own = {"submission_metadata.yml"} if layout.gradescope else set()
    if layout.d2l:
        own.add("index.html")
    groups: dict[str, list[tuple[Path, Named]]] = {}
    renamed: dict[str, str] = {}
    for child in children:
        if child.name in own:
            continue
        named = name_of(child, layout)
        sid = _entry_id(child, named)
        if _was_reserved(sid):
            renamed[child.name] = sid
        groups.setdefault(sid, []).append((child, named))
    got = Intake({}, {}, {}, renamed, export_files=layout.export_files)
    contradicted = _d2l_disagreements(groups)
    for sid, entries in groups.items():
        choice: _Choice | None = None
        try:
            if sid in contradicted:
                raise IntakeError(contradicted[sid])
            choice = _choose(sid, entries)
            if len(choice.parts) > 1:
                got.merged[sid] = choice.parts
            child, named = choice.graded[0]
            if named.part:
                got.ready[sid] = _assemble(choice.graded, work / sid)
            else:
                got.ready[sid] = _take_in(child, work / sid)
        except (IntakeError, OSError) as exc:
            why = str(exc) if isinstance(exc, IntakeError) else f"could not read it: {exc.strerror or exc}"
            if sid in got.merged:  # every entry of the student is named with the refusal
                why += f" (entries for {sid}: {', '.join(_shown(p) for p in got.merged.pop(sid))})"
            got.refused[sid] = why
        if arrival := _arrival(choice.graded if choice and sid in got.ready else entries):
            got.arrivals[sid] = arrival
    return got


def intake(
    submissions: Path, work: Path, classroom_prefix: str = ""
) -> tuple[dict[str, Path], dict[str, str]]:
    """(student -> folder to grade, student -> why it could not be taken in)."""
    got = take_in_all(submissions, work, classroom_prefix)
    return got.ready, got.refused
