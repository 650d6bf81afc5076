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
    if sample.expect_blocked is not None:  # ... and which of them could not run at all
        blocked = {c.id for c in r.checks if c.outcome is Outcome.BLOCKED}
        assert blocked == sample.expect_blocked, {c.id: c.outcome.value for c in r.checks}
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


def test_a_server_that_never_listens_is_one_failure_and_the_rest_blocked_by_it(exercises: Exercises) -> None:
    """The cause, not its echoes: one TIMEOUT with the story, every other check BLOCKED by it
    (not ten TIMEOUT badges), scored exactly as before: nothing."""
    r = exercises.graded("tls-server")["never-listens"]
    own = [c for c in r.checks if c.outcome is not Outcome.BLOCKED]
    assert [(c.id, c.outcome) for c in own] == [("tls-handshake", Outcome.TIMEOUT)]
    assert {c.blocked_by for c in r.checks if c.outcome is Outcome.BLOCKED} == {"tls-handshake"}
    assert len(r.checks) - len(own) == 10 and r.score == 0


@pytest.mark.parametrize("assignment", assignment_ids())
def test_blocked_checks_name_a_check_of_their_own_submission_that_did_not_pass(
    exercises: Exercises, assignment: str
) -> None:
    """In every sample: a blocked check links to a real failure of the student's, told there."""
    for name, r in exercises.graded(assignment).items():
        by_id = {c.id: c for c in r.checks}
        for c in r.checks:
            if c.outcome is Outcome.BLOCKED:
                cause = by_id[c.blocked_by]
                assert cause.outcome in (Outcome.FAILED, Outcome.TIMEOUT), (name, c.id, cause.id)
                assert c.score == 0


def test_the_report_labels_a_client_hello_as_wireshark_does(exercises: Exercises) -> None:
    """Two passes (tshark -2): the ClientHello of a TLS 1.3 session reads TLSv1.3, as in
    Wireshark's window, not its record's TLSv1 (in a unit about refusing TLS 1.0)."""
    leak = next(c for c in exercises.graded("tls-server")["reference"].checks if c.id == "no-plaintext")
    rows = next(e for e in leak.evidence if e.kind == "frames").data
    hellos = [f for f in rows if "Client Hello" in f["info"]]
    assert hellos and {f["protocol"] for f in hellos} == {"TLSv1.3"}
    assert all(f["searched"] and not f["plaintext"] for f in rows)  # the legend: nothing in clear
