"""BLOCKED: a check that cannot happen because a check it needs did not pass.

A throwaway grader (tests/test_plugin.py's project) is graded through the real session
runner; every output is read as a student, an instructor or a CI system would read it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import Outcome, check
from harness._assignment import load_assignment
from harness._outputs import class_summary, gradescope, junit, render_report, write_outputs
from harness._results import SubmissionResult
from harness._runner import run_session
from tests.test_plugin import make_project

GRADER = """
import harness
from harness import Blocked, Shared, check, fail

def _never_listens():
    raise harness.StudentTimeout("did not listen on TCP port 12345 within 5 s")

SESSION = Shared(_never_listens, owner="Starts")

@check(title="Starts", points=3)
def test_starts():
    SESSION.get(owner=True)

@check(title="Sends the message", points=2, needs="starts")
def test_sends():
    SESSION.get()

@check(title="Says goodbye", points=1, needs=["sends"])
def test_goodbye():
    raise Blocked("needs a message first")

@check(title="Nothing in clear", points=1, needs="starts")
def test_in_clear():
    raise fail("MESSAGE-IN-CLEAR travels in clear")

@check(title="Passes", points=1)
def test_passes():
    pass

@check(title="Blocked by a pass", points=1, needs="passes")
def test_blocked_by_pass():
    raise Blocked("OWN-WORDS: no need failed")

@check(title="Harness broke", points=1)
def test_broke():
    raise harness.HarnessError("tshark vanished")

@check(title="Needs the broken one", points=0, needs="broke")
def test_after_broke():
    raise Blocked("cannot run")
"""


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> tuple[SubmissionResult, Path]:
    tmp = tmp_path_factory.mktemp("blocked")
    root = tmp / "project"
    make_project(root, GRADER, total=10)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WIREGRADE_HOME", str(root))
        (tmp / "alice").mkdir()
        r = run_session(load_assignment("boom"), tmp / "alice", tmp / "out", "alice")
        write_outputs(r, tmp / "out")
    assert not r.harness_error, r.harness_error
    return r, tmp / "out"


def by_id(r: SubmissionResult) -> dict[str, object]:
    return {c.id: c for c in r.checks}


def test_one_failure_and_the_checks_it_kept_from_running_are_blocked_by_it(
    graded: tuple[SubmissionResult, Path],
) -> None:
    r, _ = graded
    c = {x.id: x for x in r.checks}
    assert c["starts"].outcome is Outcome.TIMEOUT  # the one failure, told once
    # not TIMEOUT again (today's echo), but BLOCKED, linked to the cause
    assert c["sends"].outcome is Outcome.BLOCKED and c["sends"].blocked_by == "starts"
    # blocked by a blocked check: linked to the root cause, not to the echo
    assert c["goodbye"].outcome is Outcome.BLOCKED and c["goodbye"].blocked_by == "starts"
    assert "'Starts'" in c["goodbye"].seen and "needs a message first" not in c["goodbye"].seen
    # a check that fails on its own finding stays FAILED though its need failed
    assert c["in-clear"].outcome is Outcome.FAILED and "MESSAGE-IN-CLEAR" in c["in-clear"].seen


def test_blocked_scores_zero_as_failing_did(graded: tuple[SubmissionResult, Path]) -> None:
    r, _ = graded
    c = {x.id: x for x in r.checks}
    assert c["sends"].score == c["goodbye"].score == 0
    assert r.score == 1  # "passes" only: the same score as before BLOCKED existed


def test_blocked_without_a_failed_need_fails_as_it_says_and_never_passes(
    graded: tuple[SubmissionResult, Path],
) -> None:
    c = {x.id: x for x in graded[0].checks}["blocked-by-pass"]
    assert c.outcome is Outcome.FAILED and "OWN-WORDS" in c.seen and not c.blocked_by


def test_a_need_the_grader_failed_on_makes_the_dependent_a_grader_error(
    graded: tuple[SubmissionResult, Path],
) -> None:
    c = {x.id: x for x in graded[0].checks}["after-broke"]
    assert c.outcome is Outcome.ERROR and "not your fault" in c.seen


def test_results_json_says_blocked_by_the_cause(graded: tuple[SubmissionResult, Path]) -> None:
    r, out = graded
    tests = {t["tags"][0]: t for t in json.loads((out / "results.json").read_text())["tests"]}
    assert "<pre>BLOCKED by starts" in tests["sends"]["output"]
    assert tests["sends"]["score"] == 0 and tests["sends"]["max_score"] == 2
    assert "Expected" not in tests["sends"]["output"]  # what it expects is not what went wrong
    assert gradescope(r)["score"] == 1


def test_junit_skips_blocked_checks_with_the_reason(graded: tuple[SubmissionResult, Path]) -> None:
    r, out = graded
    suite = ET.parse(out / "junit.xml").getroot()
    cases = {c.get("name", "").split(":")[0]: c for c in suite.iter("testcase")}
    skipped = cases["sends"].find("skipped")
    assert skipped is not None and skipped.get("message") == "blocked by starts"
    assert cases["sends"].find("failure") is None
    assert cases["starts"].find("failure") is not None
    assert suite.get("skipped") == "2" and suite.get("failures") == "3"
    assert junit(r).getroot().get("skipped") == "2"


def test_session_json_keeps_the_outcome_and_its_cause(graded: tuple[SubmissionResult, Path]) -> None:
    r, out = graded
    data = json.loads((out / "session.json").read_text())
    sends = next(c for c in data["checks"] if c["id"] == "sends")
    assert sends["outcome"] == "blocked" and sends["blocked_by"] == "starts"
    again = SubmissionResult.load(out / "session.json")
    assert {c.id: c.blocked_by for c in again.checks} == {c.id: c.blocked_by for c in r.checks}


def test_the_report_links_a_blocked_check_to_its_cause_collapsed(
    graded: tuple[SubmissionResult, Path],
) -> None:
    page = render_report(graded[0])
    assert 'class="check blocked"' in page
    assert 'href="#starts"' in page and "blocked by" in page.lower()
    block = page.split('id="sends"')[1].split('class="check ')[0]
    assert "<details" in block


def test_blocked_checks_are_not_a_missed_idea_of_the_class(graded: tuple[SubmissionResult, Path]) -> None:
    r, _ = graded
    rate = {x["id"]: x for x in class_summary([r])["rates"]}
    assert rate["sends"]["of"] == 0 and rate["sends"]["blocked"] == 1
    assert rate["starts"]["of"] == 1 and rate["starts"]["passed"] == 0


NEEDS_PROBLEMS = {
    "unknown": (
        '@check(title="A", points=10, needs="nope")\ndef test_a(): pass\n',
        "no check of this grader",
    ),
    "later": (
        '@check(title="A", points=5, needs="b")\ndef test_a(): pass\n'
        '@check(title="B", points=5)\ndef test_b(): pass\n',
        "must be declared (run) before it",
    ),
}


@pytest.mark.parametrize("case", sorted(NEEDS_PROBLEMS))
def test_a_need_that_cannot_be_met_is_an_invalid_grader(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, words = NEEDS_PROBLEMS[case]
    root = tmp_path / "p"
    make_project(root, "from harness import check\n" + body, total=10)
    monkeypatch.setenv("WIREGRADE_HOME", str(root))
    (tmp_path / "s").mkdir()
    r = run_session(load_assignment("boom"), tmp_path / "s", tmp_path / "out", "s")
    assert words in r.harness_error, r.harness_error


def test_a_public_check_cannot_need_a_hidden_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "p"
    hidden = (
        'from harness import check\n@check(title="H", points=2, visibility="hidden")\ndef test_h(): pass\n'
    )
    public = 'from harness import check\n@check(title="P", points=8, needs="h")\ndef test_p(): pass\n'
    make_project(root, public, total=10, hidden=hidden)
    monkeypatch.setenv("WIREGRADE_HOME", str(root))
    (tmp_path / "s").mkdir()
    r = run_session(load_assignment("boom"), tmp_path / "s", tmp_path / "out", "s")
    # a student bundle has no hidden checks: refused (hidden files also run after public ones)
    assert "needs 'h'" in r.harness_error, r.harness_error


@pytest.mark.parametrize("needs", ["Not-An-Id", ["ok", 3], "a"])
def test_needs_are_validated_when_declared(needs: object) -> None:
    def test_a() -> None:
        pass

    with pytest.raises(ValueError, match="need"):
        check(title="t", points=1, needs=needs)(test_a)  # type: ignore[arg-type]
