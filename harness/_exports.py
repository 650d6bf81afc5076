"""What LMS exports call their entries: the student, the submission time, a late marker.

Intake (:mod:`harness._intake`) asks here what each child of SUBMISSIONS is called; this
module only reads names (and, for Gradescope, its ``submission_metadata.yml``). It never
opens a student's file. Each layout is recognised by its own shape (docs/intake.md has an
example of each):

- Moodle: ``Jane Doe_12345_assignsubmission_file_`` (a folder) or, downloaded without
  folders, ``Jane Doe_12345_assignsubmission_file_server.py`` (one file of it).
- D2L Brightspace: ``39786-640693 - Jane Doe - Oct 10, 2025 1022 AM - server.py`` (a file
  of one submission) or the same without `` - server.py`` (a folder), beside ``index.html``.
  The first number is the submission's, the second the user's (one student's submissions
  share it): the id is the name and the user's number, ``Jane_Doe_640693``, so two students
  of one name never become one.
- Canvas: ``doe_jane_1234_5678_server.py``, ``doe_jane_LATE_1234_5678_server.py`` (files).
- Gradescope: ``submission_NNN`` named in ``submission_metadata.yml``.
- GitHub Classroom (``gh classroom clone``): git clones ``<assignment>-<login>`` in
  ``<assignment>-submissions``; the prefix is taken from that folder's name or given
  (``--classroom-prefix``), never guessed from the clones' names.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ARCHIVES = (".zip", ".tar.gz", ".tgz", ".tar.xz")  # matched case-insensitively
GRADESCOPE_META = "submission_metadata.yml"
D2L_INDEX = "index.html"

_MOODLE = re.compile(r"^(?P<name>.+?)_(?P<id>\d+)_assignsubmission_(?P<kind>[A-Za-z]*)(?:_(?P<part>.*))?$")
_D2L = re.compile(
    r"^(?P<ids>\d+-(?P<user>\d+)) - (?P<name>.+?) - (?P<date>[A-Z][a-z]{2} \d{1,2}, \d{4} \d{3,4} [AP]M)"
    r"(?: - (?P<part>.+))?$"
)
_CANVAS = re.compile(
    r"^(?P<name>[A-Za-z][A-Za-z0-9_-]*?)_(?:(?P<late>[Ll][Aa][Tt][Ee])_)?(?P<uid>\d+)_(?P<aid>\d+)_(?P<part>.+)$"
)


def archive_ext(name: str) -> str:
    """The accepted archive extension ``name`` ends with (any case), or ''."""
    low = name.lower()
    return next((ext for ext in ARCHIVES if low.endswith(ext)), "")


@dataclass(frozen=True)
class Named:
    """What an export calls one child of SUBMISSIONS."""

    student: str  # the id as the export gives it (intake makes it safe)
    export: str = ""  # "moodle" | "d2l" | "canvas" | "gradescope" | "classroom" | "" (plain)
    kind: str = ""  # Moodle: "file", "onlinetext", ...
    part: str = ""  # the file's own name when the child is one file of a submission
    submission: str = ""  # D2L: which submission of the student (its ids and date)
    user: str = ""  # D2L: the user's number (the second of the entry's ids)
    submitted: datetime | None = None
    late: bool = False


@dataclass
class Layout:
    """What SUBMISSIONS as a whole says about its children."""

    gradescope: dict[str, str] = field(default_factory=dict)  # submission_NNN -> submitter
    gradescope_times: dict[str, datetime] = field(default_factory=dict)
    d2l: bool = False  # D2L's index.html beside entries named as D2L names them
    classroom_prefix: str = ""  # "<assignment>-" of gh classroom clone's folders
    export_files: list[str] = field(default_factory=list)  # the export's own files, not students'


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def _is_clone(path: Path) -> bool:
    return _is_dir(path) and _is_dir(path / ".git")


def read_layout(submissions: Path, children: list[Path], classroom_prefix: str = "") -> Layout:
    """The export SUBMISSIONS came from, read from its own files and names. A GitHub Classroom
    prefix is applied only when it is known: ``classroom_prefix`` or the ``<assignment>-submissions``
    folder ``gh classroom clone`` makes."""
    names, times = gradescope_metadata(submissions)
    layout = Layout(gradescope=names, gradescope_times=times)
    if names:
        layout.export_files.append(f"{GRADESCOPE_META} (Gradescope's list of submitters)")
    index = submissions / D2L_INDEX
    if any(_D2L.match(c.name) for c in children) and index.is_file() and not index.is_symlink():
        layout.d2l = True
        layout.export_files.append(f"{D2L_INDEX} (D2L Brightspace's list of submissions)")
    if classroom_prefix:  # given by the instructor (--classroom-prefix)
        layout.classroom_prefix = classroom_prefix.rstrip("-") + "-"
    elif submissions.name.endswith("-submissions"):  # the folder gh classroom clone makes
        prefix = submissions.name[: -len("-submissions")] + "-"
        if any(c.name.startswith(prefix) and len(c.name) > len(prefix) and _is_clone(c) for c in children):
            layout.classroom_prefix = prefix
    # never guessed from the clones' names: hw1-ann-lee and hw1-ann-smith are not lee and smith
    return layout


def classroom_prefix_problem(submissions: Path, prefix: str) -> str:
    """Why ``prefix`` (``--classroom-prefix``) names no git clone in SUBMISSIONS, or ''."""
    prefix = prefix.rstrip("-") + "-"
    children = [c for c in submissions.iterdir() if not c.name.startswith(".")]
    if any(c.name.startswith(prefix) and len(c.name) > len(prefix) and _is_clone(c) for c in children):
        return ""
    clones = sorted(c.name for c in children if _is_clone(c))
    seen = (
        f"the git clones there: {', '.join(clones[:5])}{', ...' if len(clones) > 5 else ''}"
        if clones
        else "it holds no git clone"
    )
    return f"no git clone in {submissions} is named {prefix}<login> ({seen}); is it the assignment's prefix?"


def gradescope_metadata(submissions: Path) -> tuple[dict[str, str], dict[str, datetime]]:
    """submission_NNN -> the submitter's sid (or email, or name), and -> its created_at, from
    submission_metadata.yml.

    Gradescope writes Ruby-flavoured YAML (``:submitters:``, ``:sid:``); a line reader is
    enough for the fields we need, and avoids a YAML dependency.
    """
    meta = submissions / GRADESCOPE_META
    if not meta.is_file() or meta.is_symlink():
        return {}, {}
    fields: dict[str, dict[str, str]] = {}  # submission -> its first submitter's sid, email, name
    times: dict[str, datetime] = {}
    current = ""
    for line in meta.read_text(errors="replace").splitlines():
        if m := re.match(r"^(submission_\d+):", line):
            current = m[1]
        elif current and (m := re.match(r"^\s+:?created_at:\s*(.+)$", line)):
            if when := _gradescope_time(m[1].strip().strip("'\"")):
                times[current] = when
        elif current and (m := re.match(r"^\s+(?:-\s+)?:?(sid|email|name):\s*(\S.*)$", line)):
            fields.setdefault(current, {}).setdefault(m[1], m[2].strip().strip("'\"") or m[2])
    names = {s: f.get("sid") or f.get("email") or f["name"] for s, f in fields.items()}
    return names, times


def _gradescope_time(text: str) -> datetime | None:
    """``2024-03-01 23:59:12.123456000 -0800`` (Ruby's Time) as a datetime."""
    m = re.match(r"^(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)(?:\.\d+)?\s*(Z|[+-]\d\d:?\d\d)?$", text)
    if not m:
        return None
    zone = (m[2] or "").replace("Z", "+0000").replace(":", "")
    try:
        return datetime.strptime(m[1].replace("T", " ") + zone, "%Y-%m-%d %H:%M:%S" + ("%z" if zone else ""))
    except ValueError:
        return None


def _d2l_time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%b %d, %Y %I%M %p")  # "Oct 10, 2025 1022 AM"
    except ValueError:
        return None


def name_of(child: Path, layout: Layout) -> Named:
    """What the export calls ``child`` (a plain folder or archive is named by its stem)."""
    name = child.name
    ext = archive_ext(name)
    stem = name[: -len(ext)] if ext else name
    try:
        regular = stat.S_ISREG(child.lstat().st_mode)
    except OSError:
        regular = False
    if stem in layout.gradescope:
        return Named(layout.gradescope[stem], "gradescope", submitted=layout.gradescope_times.get(stem))
    if m := _MOODLE.match(name):  # a folder's trailing "_..." ("file_", "file_2") names no file
        return Named(
            f"{m['name']}_{m['id']}", "moodle", kind=m["kind"], part=(m["part"] or "") if regular else ""
        )
    if layout.d2l and (m := _D2L.match(name)):
        part = m["part"] or ""
        return Named(
            f"{m['name']}_{m['user']}",
            "d2l",
            part=part if regular else "",
            submission=f"{m['ids']} {m['date']}",
            user=m["user"],
            submitted=_d2l_time(m["date"]),
        )
    if regular and (m := _CANVAS.match(name)):
        return Named(f"{m['name']}_{m['uid']}", "canvas", part=m["part"], late=bool(m["late"]))
    prefix = layout.classroom_prefix
    if prefix and name.startswith(prefix) and len(name) > len(prefix) and _is_clone(child):
        return Named(name[len(prefix) :], "classroom")
    return Named(stem)
