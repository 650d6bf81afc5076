"""The batch's memory: every graded submission, committed to SQLite as soon as it is graded.

An interrupted batch resumes (a submission already graded with the same grader and the same
files is not graded again), one student can be regraded alone, and every report can be
rendered again from here without running anything. WAL mode: a reader never blocks the
writer, and a kill -9 loses at most the submission being graded.

The store also keeps the batch's capture secret (made once per OUT when none is set in the
environment), so a capture graded for marks cannot be made again from a student's id alone,
and a resumed batch gives every student the capture they had. The file is the owner's only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import sqlite3
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ._assignment import Assignment, project_root
from ._results import SubmissionResult
from ._safefile import walk

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    assignment TEXT NOT NULL,
    student TEXT NOT NULL,
    files TEXT NOT NULL,      -- fingerprint of the submission's files
    grader TEXT NOT NULL,     -- fingerprint of the grader, its settings and the engine
    result TEXT NOT NULL,     -- SubmissionResult as JSON
    graded_at REAL NOT NULL,
    PRIMARY KEY (assignment, student)
)
"""

SECRETS = """
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,    -- "capture": salts the seeds of the captures graded for marks
    value TEXT NOT NULL
)
"""

ARRIVALS = """
CREATE TABLE IF NOT EXISTS arrivals (
    assignment TEXT NOT NULL,
    student TEXT NOT NULL,
    submitted TEXT NOT NULL,  -- ISO 8601 as the export names it (with its zone if it gives one), or ''
    late INTEGER NOT NULL,    -- late by the export's marker or the deadline the batch was given
    export TEXT NOT NULL,     -- which export named it: moodle, d2l, canvas, gradescope, ...
    PRIMARY KEY (assignment, student)
)
"""

STORE_NAME = "wiregrade.db"  # in OUT
CHUNK = 1 << 20  # files are hashed 1 MiB at a time, never read whole
SKIPPED = ("__pycache__", ".wiregrade", ".wiregrade-report")  # folders that are not the student's work


def fingerprint_files(folder: Path) -> str:
    """A digest of every regular file's relative path and bytes (the order of the walk does not
    matter). Links are never followed, nor anything but regular files opened; a folder that
    does not exist holds nothing."""
    files: list[tuple[str, bytes]] = []
    if folder.is_dir():
        for path, e, _depth in walk(
            folder, prune=lambda e: e.name in SKIPPED and e.is_dir(follow_symlinks=False)
        ):
            if e.is_file(follow_symlinks=False):
                files.append((path, _file_digest(folder / path)))
    h = hashlib.sha256()
    for path, digest in sorted(files):
        h.update(path.encode(errors="surrogateescape") + b"\0")
        h.update(digest)
    return h.hexdigest()


def _file_digest(path: Path) -> bytes:
    """sha256 of a regular file, read in chunks (a 3 GB sparse file costs 1 MiB of memory)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb", buffering=0) as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for something else since the walk
            return b""
        h = hashlib.sha256()
        while chunk := f.read(CHUNK):
            h.update(chunk)
        return h.digest()


def fingerprint_grader(a: Assignment) -> str:
    """Changes when the checks, the exercise's settings or the engine change."""
    h = hashlib.sha256()
    root = project_root()
    for folder in (a.grader_dir, root / "harness"):
        h.update(fingerprint_files(folder).encode())
    h.update((a.handout_dir / "assignment.toml").read_bytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Arrival:
    """When a submission came in, as its LMS export names it, and whether it is late."""

    submitted: str = ""  # ISO 8601, or '' when the export names no time
    late: bool = False
    export: str = ""


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)
        self._db.execute(SECRETS)
        self._db.execute(ARRIVALS)
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            with contextlib.suppress(OSError):  # hidden results and the secret: the owner's only
                p.chmod(0o600)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def put(self, r: SubmissionResult, files: str, grader: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)",
                (r.assignment, r.student, files, grader, json.dumps(r.to_json(), default=str), time.time()),
            )

    def get(self, assignment: str, student: str) -> tuple[SubmissionResult, str, str] | None:
        row = self._db.execute(
            "SELECT result, files, grader FROM results WHERE assignment = ? AND student = ?",
            (assignment, student),
        ).fetchone()
        if row is None:
            return None
        return SubmissionResult.from_json(json.loads(row[0])), row[1], row[2]

    def is_current(self, assignment: str, student: str, files: str, grader: str) -> bool:
        """Graded already, with these files and this grader, and not spoiled by a grader error."""
        got = self.get(assignment, student)
        if got is None:
            return False
        r, f, g = got
        return f == files and g == grader and not r.harness_error and not r.errors

    def capture_secret(self) -> str:
        """This store's capture secret, made (64 hex digits) the first time it is asked for."""
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO secrets VALUES ('capture', ?)", (secrets.token_hex(32),))
            value: str = db.execute("SELECT value FROM secrets WHERE name = 'capture'").fetchone()[0]
        return value

    def find_capture_secret(self) -> str | None:
        """The capture secret if one was made, without making one."""
        row = self._db.execute("SELECT value FROM secrets WHERE name = 'capture'").fetchone()
        return str(row[0]) if row else None

    def all(self, assignment: str | None = None) -> list[SubmissionResult]:
        q = (
            "SELECT result FROM results"
            + (" WHERE assignment = ?" if assignment else "")
            + " ORDER BY student"
        )
        rows = self._db.execute(q, (assignment,) if assignment else ()).fetchall()
        return [SubmissionResult.from_json(json.loads(r[0])) for r in rows]

    def put_arrivals(self, assignment: str, arrivals: dict[str, Arrival]) -> None:
        """This batch's submission times and late marks (each student's replaces the last)."""
        with self._tx() as db:
            db.execute("DELETE FROM arrivals WHERE assignment = ?", (assignment,))
            db.executemany(
                "INSERT INTO arrivals VALUES (?, ?, ?, ?, ?)",
                [(assignment, s, a.submitted, int(a.late), a.export) for s, a in arrivals.items()],
            )

    def arrivals(self, assignment: str) -> dict[str, Arrival]:
        rows = self._db.execute(
            "SELECT student, submitted, late, export FROM arrivals WHERE assignment = ?", (assignment,)
        ).fetchall()
        return {r[0]: Arrival(r[1], bool(r[2]), r[3]) for r in rows}

    def assignments(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT assignment FROM results ORDER BY 1")]

    def close(self) -> None:
        self._db.close()
