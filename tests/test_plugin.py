"""The pytest plugin: whose fault each outcome is, metadata validation, hidden-check redaction.

A throwaway project (its own assignments/ and graders/) is graded through the real session
runner, so these tests see exactly what an instructor would.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from harness import Outcome, check
from harness._assignment import load_assignment
from harness._outputs import gradescope, junit, render_report, write_outputs
from harness._runner import run_session
from tests.conftest import ROOT

GRADER = """
import time
import pytest
import harness
from harness import check, fail

@check(title="Passes", points=1)
def test_passes(grading):
    assert grading.submission.joinpath("answer.txt").read_text() == "42"

@check(title="Student is wrong", points=2, hint="Think again.")
def test_wrong():
    raise fail("you said 41", expected="42")

@check(title="Plain assert", points=1)
def test_plain_assert():
    assert 1 == 2, "one is not two"

@check(title="Harness broke", points=1)
def test_harness_error():
    raise harness.HarnessError("tshark vanished")

@check(title="Grader bug", points=1)
def test_grader_bug():
    {}["missing"]

@check(title="Too slow", points=1, timeout=0.5)
def test_too_slow():
    time.sleep(5)

@pytest.fixture
def broken_fixture():
    raise RuntimeError("fixture exploded")

@check(title="Setup fails", points=1)
def test_setup_fails(broken_fixture):
    pass

"""

HIDDEN = """
from harness import check, fail

@check(title="Secret check", points=2, visibility="hidden", hint="SECRET-HINT")
def test_hidden(evidence):
    evidence.text("what it saw", "SECRET-EVIDENCE")
    raise fail("SECRET-DETAIL", expected="SECRET-EXPECTED")
"""


def make_project(root: Path, grader: str, total: int = 10, hidden: str = "") -> None:
    (root / "assignments/boom").mkdir(parents=True)
    (root / "assignments/boom/assignment.toml").write_text(
        textwrap.dedent(f"""
        title = "A grader that goes wrong in every way"
        [grading]
        total_points = {total}
        hidden_points = {2 if hidden else 0}
        check_seconds = 10
    """)
    )
    (root / "graders/boom").mkdir(parents=True)
    (root / "graders/boom/pytest.ini").write_text("[pytest]\npython_files = check_*.py hidden_*.py\n")
    (root / "graders/boom/check_boom.py").write_text(grader)
    if hidden:
        (root / "graders/boom/hidden_boom.py").write_text(hidden)
    (root / "reports").symlink_to(ROOT / "reports")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    make_project(root, GRADER, hidden=HIDDEN)
    monkeypatch.setenv("WIREGRADE_HOME", str(root))
    sub = tmp_path / "alice"
    sub.mkdir()
    (sub / "answer.txt").write_text("42")
    return tmp_path


def grade(project: Path):  # type: ignore[no-untyped-def]
    return run_session(load_assignment("boom"), project / "alice", project / "out", "alice")


def test_each_outcome_is_attributed_to_the_right_party(project: Path) -> None:
    r = grade(project)
    assert not r.harness_error
    outcomes = {c.id: c.outcome for c in r.checks}
    assert outcomes == {
        "passes": Outcome.PASSED,
        "wrong": Outcome.FAILED,
        "plain-assert": Outcome.FAILED,
        "harness-error": Outcome.ERROR,
        "grader-bug": Outcome.ERROR,
        "too-slow": Outcome.TIMEOUT,
        "setup-fails": Outcome.ERROR,
        "hidden": Outcome.FAILED,
    }
    by = {c.id: c for c in r.checks}
    assert by["wrong"].seen == "you said 41" and by["wrong"].hint == "Think again."
    assert by["plain-assert"].seen == "one is not two"
    assert "tshark vanished" in by["harness-error"].seen and "not your fault" in by["harness-error"].seen
    assert "KeyError" in by["grader-bug"].details
    assert r.score == 1 and r.status == "harness error"


def test_hidden_details_never_reach_student_outputs(project: Path) -> None:
    r = grade(project)
    write_outputs(r, project / "out")
    student_files = ["results.json", "junit.xml", "report.html"]
    for name in student_files:
        text = (project / "out" / name).read_text()
        assert "Secret check" in text, name  # the title is shown
        assert "SECRET" not in text.replace("Secret check", ""), name
    assert "SECRET-DETAIL" in (project / "out/instructor.html").read_text()
    hidden = [t for t in gradescope(r)["tests"] if t["name"] == "Secret check"][0]
    assert hidden["visibility"] == "after_published" and hidden["output"] == ""
    assert "SECRET" not in render_report(r)


def test_errors_are_not_failures_in_gradescope_and_junit(project: Path) -> None:
    r = grade(project)
    gs = gradescope(r)
    err = [t for t in gs["tests"] if t["name"].startswith("[grader error]")]
    assert len(err) == 3 and "not counted against you" in gs["output"]
    suite = junit(r).getroot()
    assert suite.get("errors") == "3" and suite.get("failures") == "4"


def test_a_wrong_points_total_is_a_harness_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "p"
    make_project(root, GRADER, total=99, hidden=HIDDEN)
    monkeypatch.setenv("WIREGRADE_HOME", str(root))
    (tmp_path / "s").mkdir()
    r = run_session(load_assignment("boom"), tmp_path / "s", tmp_path / "out", "s")
    assert (
        r.harness_error and "public checks add up to 8 points but assignment.toml says 99" in r.harness_error
    )
    assert r.status == "harness error"


def test_a_grader_that_does_not_import_is_a_harness_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "p"
    make_project(root, "import no_such_module\n")
    monkeypatch.setenv("WIREGRADE_HOME", str(root))
    (tmp_path / "s").mkdir()
    r = run_session(load_assignment("boom"), tmp_path / "s", tmp_path / "out", "s")
    assert "no_such_module" in r.harness_error


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"title": "", "points": 1}, TypeError),
        ({"title": "two\nlines", "points": 1}, TypeError),
        ({"title": "t", "points": -1}, TypeError),
        ({"title": "t", "points": True}, TypeError),
        ({"title": "t", "points": 1, "visibility": "secret"}, ValueError),
        ({"title": "t", "points": 1, "timeout": 0}, TypeError),
    ],
)
def test_check_metadata_is_validated_when_declared(kwargs: dict, error: type) -> None:  # type: ignore[type-arg]
    with pytest.raises(error):
        check(**kwargs)


def test_a_check_must_be_a_test_function() -> None:
    with pytest.raises(ValueError, match="test_"):
        check(title="t", points=1)(lambda: None)


def test_results_round_trip(project: Path) -> None:
    r = grade(project)
    data = json.loads((project / "out/session.json").read_text())
    assert data["student"] == "alice" and len(data["checks"]) == len(r.checks)


def test_control_characters_a_student_printed_never_break_xml_or_html(project: Path) -> None:
    """NUL, ESC and form feed in feedback, titles or names: junit.xml stays well-formed XML 1.0
    and the reports hold no raw control character (each is shown as \\xNN)."""
    import dataclasses
    import xml.etree.ElementTree as ET

    r = grade(project)
    nasty = "out\x00put \x1b[31mred\x1b[0m page\x0cbreak"
    checks = tuple(dataclasses.replace(c, seen=nasty, title=c.title + "\x01") for c in r.checks)
    r = dataclasses.replace(r, checks=checks, student="eve\x07")
    write_outputs(r, project / "out")
    tree = ET.parse(project / "out" / "junit.xml")  # raises on an ill-formed document
    assert "\\x1b[31mred" in ET.tostring(tree.getroot(), encoding="unicode")
    for name in ("report.html", "instructor.html", "junit.xml"):
        text = (project / "out" / name).read_text()
        assert not [ch for ch in text if ord(ch) < 32 and ch not in "\t\n\r"], name
