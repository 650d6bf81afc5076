"""The tls-server grader against its reference and against deliberately broken submissions.

Each sample folder's sample.toml names the checks it must fail; these tests grade them all
for real (namespaces, student processes, dumpcap, tshark) and compare.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from harness import Outcome, SubmissionResult
from harness._assignment import load_assignment
from harness._runner import SessionOptions, run_session
from tests.conftest import Exercises, needs_tshark, own_session_processes

pytestmark = [needs_tshark, pytest.mark.slow]


def session_processes() -> list[str]:
    """Processes still running from this run's grading sessions (there must be none)."""
    return own_session_processes()


@pytest.fixture(scope="module")
def graded(exercises: Exercises) -> dict[str, SubmissionResult]:
    return exercises.graded("tls-server")


def failed(r: SubmissionResult) -> set[str]:
    return {c.id for c in r.checks if c.outcome is not Outcome.PASSED}


def check(r: SubmissionResult, cid: str):  # type: ignore[no-untyped-def]
    return next(c for c in r.checks if c.id == cid)


def test_no_student_process_survives_the_batch(graded: dict[str, SubmissionResult]) -> None:
    assert session_processes() == []


def test_lecture_feedback_says_why(graded: dict[str, SubmissionResult]) -> None:
    r = graded["lecture"]
    notify = check(r, "close-notify")
    assert "without a close_notify alert" in notify.seen and "truncation attack" in notify.seen
    assert "unwrap()" in notify.hint
    second = check(r, "second-client")
    assert "stopped: it exited with code 0" in second.seen
    assert "loop" in second.hint
    junk = check(r, "survives-junk")
    assert "crashed" in junk.seen and "Traceback" in junk.seen
    assert "SSLError" in junk.hint


def test_plaintext_feedback_shows_the_eavesdropper_view(graded: dict[str, SubmissionResult]) -> None:
    r = graded["plaintext"]
    hs = check(r, "tls-handshake")
    assert "'Hello World!'" in hs.seen and "in clear" in hs.seen
    leak = check(r, "no-plaintext")
    assert "travels in clear" in leak.seen
    frames = [e for e in leak.evidence if e.kind == "frames"][0].data
    assert any(f["plaintext"] and "Hello World!" in f["payload"] for f in frames)
    # the dependent checks point at the cause instead of repeating it
    assert "see 'Completes a TLS handshake'" in check(r, "close-notify").seen


def test_reference_shows_only_tls_to_an_eavesdropper(graded: dict[str, SubmissionResult]) -> None:
    leak = check(graded["reference"], "no-plaintext")
    frames = [e for e in leak.evidence if e.kind == "frames"][0].data
    assert frames and not any(f["plaintext"] for f in frames)
    assert any(f["protocol"].startswith("TLS") for f in frames)


def test_never_listening_is_a_student_timeout_with_a_clear_message(
    graded: dict[str, SubmissionResult],
) -> None:
    c = check(graded["never-listens"], "tls-handshake")
    assert c.outcome is Outcome.TIMEOUT
    assert "did not listen on TCP port 12345 within 5 s" in c.seen
    assert "starting up..." in c.seen  # what it printed is shown


def test_floods_stdout_is_capped(graded: dict[str, SubmissionResult]) -> None:
    r = graded["floods-stdout"]
    assert r.score == r.max_score


def test_the_environment_is_reported(graded: dict[str, SubmissionResult]) -> None:
    env = graded["reference"].environment
    assert env.isolation in ("netns", "userns+netns")
    assert env.wire == "dumpcap"


@pytest.mark.parametrize("name", ["reference", "lecture", "plaintext"])
def test_relay_backend_agrees_with_the_capture(
    graded: dict[str, SubmissionResult], tls_server_submissions: Path, tmp_path: Path, name: str
) -> None:
    relay = run_session(
        load_assignment("tls-server"),
        tls_server_submissions / name,
        tmp_path,
        name,
        SessionOptions(wire="relay"),
    )
    assert relay.environment.wire == "relay"
    captured = {c.id: c.outcome for c in graded[name].checks}
    differ = [(c.id, c.outcome, c.seen) for c in relay.checks if captured.get(c.id) != c.outcome]
    assert not differ and len(relay.checks) == len(captured)
    assert session_processes() == []


def test_without_a_namespace_a_busy_port_is_replaced_and_reported(
    tls_server_submissions: Path, tmp_path: Path
) -> None:
    """The macOS / locked-down path: no namespace, the handout's port taken, no capture."""
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", 12345))
        squatter.listen()
        r = run_session(
            load_assignment("tls-server"),
            tls_server_submissions / "reference",
            tmp_path,
            "reference",
            SessionOptions(wire="relay", isolation="off"),
        )
    assert r.environment.isolation == "none"
    assert "switched off" in r.environment.isolation_detail
    assert r.environment.wire == "relay"
    assert r.score == r.max_score, [(c.id, c.seen) for c in r.checks if c.score < c.points]
    assert session_processes() == []


def test_missing_tshark_is_a_grader_error_never_a_verdict(
    tls_server_submissions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the checks that read the dissected traffic are left undone (ERROR, never a pass or
    a fail); the others, and the relay that carries the traffic, need no tshark (issue 17)."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no tshark, no dumpcap
    r = run_session(
        load_assignment("tls-server"), tls_server_submissions / "lecture", tmp_path / "out", "lecture"
    )
    assert r.environment.wire == "relay" and "dumpcap is not installed" in r.environment.wire_detail
    got = {c.id: c for c in r.checks}
    assert got["tls-handshake"].outcome is Outcome.PASSED and got["message"].outcome is Outcome.PASSED
    assert got["second-client"].outcome is Outcome.FAILED  # the lecture's server serves one client
    for cid in ("no-plaintext", "tls-version", "close-notify"):  # what only tshark can tell
        assert got[cid].outcome is Outcome.ERROR and "tshark is not installed" in got[cid].seen, cid
    assert r.status == "harness error"
    assert session_processes() == []
