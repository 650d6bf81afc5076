"""The batch's memory: every graded submission, committed to SQLite as soon as it is graded.

An interrupted batch resumes (a submission already graded with the same grader and the same
files is not graded again), one student can be regraded alone, and every report can be
rendered again from here without running anything. WAL mode: a reader never blocks the
writer, and a kill -9 loses at most the submission being graded.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._assignment import Assignment, project_root
from ._results import SubmissionResult

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


def fingerprint_files(folder: Path) -> str:
    """A digest of every file's relative path and bytes (the order of the walk does not matter)."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if (
            p.is_file()
            and not p.is_symlink()
            and "__pycache__" not in p.parts
            and ".wiregrade" not in p.parts
        ):
            h.update(str(p.relative_to(folder)).encode() + b"\0")
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def fingerprint_grader(a: Assignment) -> str:
    """Changes when the checks, the exercise's settings or the engine change."""
    h = hashlib.sha256()
    root = project_root()
    for folder in (a.grader_dir, root / "harness"):
        h.update(fingerprint_files(folder).encode())
    h.update((a.handout_dir / "assignment.toml").read_bytes())
    return h.hexdigest()


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)

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

    def all(self, assignment: str | None = None) -> list[SubmissionResult]:
        q = (
            "SELECT result FROM results"
            + (" WHERE assignment = ?" if assignment else "")
            + " ORDER BY student"
        )
        rows = self._db.execute(q, (assignment,) if assignment else ()).fetchall()
        return [SubmissionResult.from_json(json.loads(r[0])) for r in rows]

    def assignments(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT assignment FROM results ORDER BY 1")]

    def close(self) -> None:
        self._db.close()
