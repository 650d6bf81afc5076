"""Every grader against its reference and its broken submissions.

Each sample folder's sample.toml names the checks it must fail; the samples are graded for
real (namespaces, student processes, openssl, dumpcap, tshark) in one batch per exercise.
"""

from __future__ import annotations

import pytest

from harness import Outcome
from harness._assignment import assignment_ids
from tests.conftest import Exercises, all_samples, needs_tshark

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
