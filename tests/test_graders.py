"""Every grader against its reference and its broken submissions.

Each sample folder's sample.toml names the checks it must fail; the samples are graded for
real (namespaces, student processes, openssl, dumpcap, tshark) in one batch per exercise.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import Outcome
from harness._assignment import assignment_ids, load_assignment
from harness._runner import SessionOptions, run_session
from tests.conftest import Exercises, all_samples, needs_tshark, own_session_processes

pytestmark = [needs_tshark, pytest.mark.slow]
CASES = [(aid, s.name) for aid in assignment_ids() for s in all_samples(aid)]


@pytest.mark.parametrize(("assignment", "name"), CASES, ids=[f"{a}/{n}" for a, n in CASES])
def test_each_sample_loses_exactly_its_checks(exercises: Exercises, assignment: str, name: str) -> None:
    expected = next(s for s in all_samples(assignment) if s.name == name).expect_failed
    r = exercises.graded(assignment)[name]
    assert not r.harness_error, r.harness_error
    assert not r.errors, [(c.id, c.seen) for c in r.errors]
    failed = {c.id for c in r.checks if c.outcome is not Outcome.PASSED}
    assert failed == expected, {c.id: c.seen for c in r.checks if c.id in failed ^ expected}
    assert r.score == sum(c.points for c in r.checks if c.id not in expected)
    sample = next(s for s in all_samples(assignment) if s.name == name)
    seen = {c.id: c.seen for c in r.checks}
    for check_id, words in sample.expect_says:  # ... with the feedback it should get
        assert words in seen[check_id], (check_id, words, seen[check_id])


@pytest.mark.parametrize("assignment", assignment_ids())
def test_reference_scores_full_marks_and_is_checked_by_both_kinds(
    exercises: Exercises, assignment: str
) -> None:
    r = exercises.graded(assignment)["reference"]
    assert r.score == r.max_score > 0
    assert {c.visibility.value for c in r.checks} == {"public", "hidden"}


@pytest.mark.parametrize("assignment", assignment_ids())
def test_every_check_is_failed_by_some_sample(exercises: Exercises, assignment: str) -> None:
    """A check no broken submission fails is a check nobody has seen fail: it could be vacuous."""
    graded = exercises.graded(assignment)
    checks = {c.id for c in graded["reference"].checks}
    failed_somewhere = {c.id for r in graded.values() for c in r.checks if c.outcome is not Outcome.PASSED}
    assert checks - failed_somewhere == set()


def test_no_program_outlives_the_batches(exercises: Exercises) -> None:
    """After grading every exercise: no student program, stunnel or nginx is left running."""
    for aid in assignment_ids():
        exercises.graded(aid)
    assert own_session_processes(also=("stunnel4", "stunnel", "nginx")) == []


@pytest.mark.parametrize("assignment", ["tunnel", "tls-client"])
def test_relay_backend_grades_the_reference_alike(
    exercises: Exercises, assignment: str, tmp_path: Path
) -> None:
    relay = run_session(
        load_assignment(assignment),
        exercises.submissions(assignment) / "reference",
        tmp_path,
        "reference",
        SessionOptions(wire="relay"),
    )
    assert relay.environment.wire == "relay"
    assert [c.id for c in relay.checks if c.outcome is not Outcome.PASSED] == []
