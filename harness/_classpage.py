"""The class page's tables: a student x check matrix and a sortable student table.

Rows and columns are plain values made from results alone; ``reports/index.html.j2`` lays
them out. Every cell carries its outcome in text as well as in colour. The page sorts its
student table with a few lines of inline script, allowed by a Content-Security-Policy that
names this script's hash and nothing else: the page loads nothing from anywhere, and reads
the same (in the order of the student ids) with scripts off.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from ._results import CheckResult, Outcome, SubmissionResult

# What a cell says, beside its colour. "blocked" is an outcome a check may get when another
# check it needs failed first; it is neither the student's mistake here nor a pass.
LABELS = {
    "passed": "pass",
    "failed": "FAIL",
    "timeout": "TIMEOUT",
    "error": "ERROR",
    "blocked": "blocked",
}
NOT_PASSED = ("failed", "timeout")  # the student's own misses, listed by name

# Status -> (text, sort rank): the instructor's attention first.
STATUSES = {
    "error": ("grader error", 0),
    "refused": ("refused", 1),
    "did-not-start": ("did not start", 2),
    "nothing-passed": ("nothing passed", 3),
    "partial": ("graded", 4),
    "full": ("full marks", 5),
}

SORT_SCRIPT = """\
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.querySelectorAll("thead th");
  heads.forEach(function (th, col) {
    var button = th.querySelector("button");
    if (!button) return;
    button.addEventListener("click", function () {
      var down = th.getAttribute("aria-sort") === "ascending";
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", down ? "descending" : "ascending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var key = function (row) {
        var cell = row.cells[col];
        return cell.getAttribute("data-key") || cell.textContent;
      };
      var numeric = th.getAttribute("data-type") === "number";
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return down ? -c : c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def script_hash(script: str = SORT_SCRIPT) -> str:
    """The CSP hash source (to be quoted) allowing exactly this inline script."""
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


@dataclass(frozen=True)
class Column:
    number: int
    id: str
    title: str
    points: float
    hidden: bool


@dataclass(frozen=True)
class Cell:
    outcome: str  # an Outcome's value; "" where the student has no such check
    label: str
    score: float
    points: float


@dataclass(frozen=True)
class Missed:
    id: str
    title: str
    hidden: bool


@dataclass(frozen=True)
class Row:
    student: str
    score: float
    max_score: float
    status: str  # a key of STATUSES
    status_text: str
    rank: int
    note: str  # why, for a refused or errored submission
    cells: tuple[Cell, ...]
    failed: tuple[Missed, ...]  # the student's own misses (only the first, when it did not start)
    blocked: int  # checks that could not run

    @property
    def percent(self) -> float:
        return 100 * self.score / self.max_score if self.max_score else 0.0


def columns(results: Sequence[SubmissionResult]) -> list[Column]:
    """Every check met in the class, in the order the graders run them."""
    seen: dict[str, CheckResult] = {}
    for r in results:
        for c in r.checks:
            seen.setdefault(c.id, c)
    return [Column(i, c.id, c.title, c.points, c.hidden) for i, c in enumerate(seen.values(), 1)]


def status_of(r: SubmissionResult) -> str:
    if r.refused:
        return "refused"
    if r.harness_error or r.errors or not r.checks:
        return "error"
    if not any(c.outcome is Outcome.PASSED for c in r.checks):
        # One check failed (or none) and every other one timed out or was blocked by it: the
        # program never got going (missing, never listening), rather than doing it wrong.
        failed = sum(c.outcome is Outcome.FAILED for c in r.checks)
        rest = all(c.outcome.value in ("failed", "timeout", "blocked") for c in r.checks)
        return "did-not-start" if failed <= 1 and rest else "nothing-passed"
    if all(c.outcome is Outcome.PASSED for c in r.checks):
        return "full"
    return "partial"


def row_of(r: SubmissionResult, cols: Sequence[Column]) -> Row:
    by_id = {c.id: c for c in r.checks}
    cells = []
    for col in cols:
        c = by_id.get(col.id)
        if c is None:
            cells.append(Cell("", "—", 0.0, col.points))
        else:
            cells.append(
                Cell(c.outcome.value, LABELS.get(c.outcome.value, c.outcome.value), c.score, c.points)
            )
    status = status_of(r)
    text, rank = STATUSES[status]
    note = r.refused or (r.harness_error.splitlines()[0] if r.harness_error else "")
    if not note and r.errors:
        note = f"{len(r.errors)} check(s) errored"
    failed = [Missed(c.id, c.title, c.hidden) for c in r.checks if c.outcome.value in NOT_PASSED]
    blocked = sum(c.outcome.value == "blocked" for c in r.checks)
    if status == "did-not-start":  # the one that stopped it; the rest could not run
        first = next((c for c in r.checks if c.outcome is Outcome.FAILED), None) or r.checks[0]
        failed = [Missed(first.id, first.title, first.hidden)]
        blocked = len(r.checks) - 1
    return Row(
        student=r.student,
        score=r.score,
        max_score=r.max_score,
        status=status,
        status_text=text,
        rank=rank,
        note=note,
        cells=tuple(cells),
        failed=tuple(failed),
        blocked=blocked,
    )


def class_matrix(results: Sequence[SubmissionResult]) -> tuple[list[Column], list[Row]]:
    """The columns (checks) and one row per student, sorted by student id."""
    cols = columns(results)
    return cols, [row_of(r, cols) for r in sorted(results, key=lambda r: r.student)]
