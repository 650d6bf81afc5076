"""The class page from results alone: statuses, failed checks, hidden marks, the matrix, and
links that follow student_dir wherever a student's folder lives."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest

from harness._classpage import class_matrix, status_of
from harness._results import CheckResult, Outcome, SubmissionResult, Visibility
from harness._runner import render_batch

P, F, T, E = Outcome.PASSED, Outcome.FAILED, Outcome.TIMEOUT, Outcome.ERROR


def result(student: str, *outcomes: Outcome, **kw: object) -> SubmissionResult:
    checks = tuple(
        CheckResult(
            id=f"check-{i}",
            title=f"Check number {i}",
            points=2,
            score=2 if o is P else 0,
            outcome=o,
            visibility=Visibility.HIDDEN if i == 3 else Visibility.PUBLIC,
        )
        for i, o in enumerate(outcomes, 1)
    )
    return SubmissionResult("tls-server", student, checks, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("outcomes", "extra", "status"),
    [
        ((P, P, P), {}, "full"),
        ((P, F, T), {}, "partial"),
        ((F, F, F), {}, "nothing-passed"),  # it ran, and got every check wrong
        ((T, T, T), {}, "did-not-start"),  # never listened: the rest could not run
        ((F, T, T), {}, "did-not-start"),  # e.g. server.py missing: one failure, the rest waited on it
        ((P, E, F), {}, "error"),
        ((), {"harness_error": "the session died"}, "error"),
        ((), {"refused": "a link in the zip"}, "refused"),
    ],
)
def test_status(outcomes: tuple[Outcome, ...], extra: dict[str, str], status: str) -> None:
    assert status_of(result("s", *outcomes, **extra)) == status  # type: ignore[arg-type]


def test_a_student_who_did_not_start_lists_the_check_that_stopped_it() -> None:
    _cols, rows = class_matrix([result("nina", F, T, T, T)])
    (row,) = rows
    assert [m.id for m in row.failed] == ["check-1"] and row.blocked == 3
    assert row.status_text == "did not start"


def test_the_page_links_each_student_through_student_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wherever student_dir puts a student's folder, every link of the class page finds it."""
    monkeypatch.setattr("harness._runner.student_dir", lambda out, s: out / "students" / s)
    results = [
        result("alice", P, P, P),
        result("bob", P, F, F),
        result("nina", T, T, T),
        result("rita", refused="rita.rar is a .rar archive"),
    ]
    render_batch(results, tmp_path, "tls-server", None)
    page = (tmp_path / "index.html").read_text()
    hrefs = set(re.findall(r'href="([^"#]+\.html)(?:#[^"]*)?"', page))
    assert "students/bob/instructor.html" in hrefs and "students/alice/report.html" in hrefs
    assert all((tmp_path / h).is_file() for h in hrefs), hrefs
    # bob's misses, linked to their place in his instructor report; check 3 is hidden
    assert 'href="students/bob/instructor.html#check-2">Check number 2</a>' in page
    assert (
        'href="students/bob/instructor.html#check-3">Check number 3</a><span class="tag">hidden</span>'
        in page
    )
    assert 'href="#check-check-3" title="Check number 3">check-3</a><span class="tag">hidden</span>' in page
    for text in (
        "did not start",
        "full marks",
        "refused",
        "rita.rar is a .rar archive",
        'href="gradebook.csv"',
    ):
        assert text in page
    # the matrix: colour and words in each cell
    assert '<td class="cell failed" title="bob · Check number 2: FAIL (0/2)">FAIL</td>' in page
    assert '<td class="cell timeout" title="nina · Check number 1: TIMEOUT (0/2)">TIMEOUT</td>' in page


def test_the_page_allows_its_own_script_only(tmp_path: Path) -> None:
    render_batch([result("alice", P, F)], tmp_path, "tls-server", None)
    page = (tmp_path / "index.html").read_text()
    (script,) = re.findall(r"<script>(.*?)</script>", page, re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    (csp,) = re.findall(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert f"script-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp
    assert "http://" not in page and "https://" not in page  # nothing to fetch from anywhere
