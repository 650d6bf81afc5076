"""Hidden checks for `tls-server`: run when the instructor grades; never in a student bundle."""

from __future__ import annotations

from support import (
    TLS12,
    Contact,
    require_message,
    start_server,
)

import harness
from harness import GradingContext, HarnessError, Shared, check, fail

# --- hidden checks ------------------------------------------------------------------------


@check(
    title="Refuses clients that offer only TLS 1.0 or 1.1",
    points=2,
    visibility="hidden",
    expected="A client offering only TLS 1.0/1.1 fails the handshake.",
    hint="Keep the default minimum (TLS 1.2) or set context.minimum_version = TLSVersion.TLSv1_2.",
    needs="message",
)
def test_refuses_old_tls(
    first: Shared[Contact],
    grading: GradingContext,
    student: harness.Launcher,
    evidence: harness.EvidenceRecorder,
) -> None:
    c = first.get()
    require_message(c, grading)  # no vacuous pass: it must really speak modern TLS
    assert c.transcript is not None
    if (c.transcript.version or 0) < TLS12:
        raise fail("Your server speaks only an old TLS version, so refusing them is not possible.")
    _server, addr = start_server(grading, student)
    old = harness.tls_session(
        addr,
        harness.client_context(keylog=grading.keylog, legacy_only=True),
        server_hostname=grading.assignment.host,
    )
    if old.handshake_ok:
        raise fail(
            f"Your server accepted a {old.version} handshake.",
            expected="the handshake refused (TLS 1.0 and 1.1 are broken)",
        )
    # A refusal counts only if the grader's client really can speak TLS 1.0/1.1 here.
    if (why := harness.legacy_tls_unavailable()) is not None:
        raise HarnessError(f"the grader cannot offer TLS 1.0/1.1 on this machine: {why}")
    evidence.text("The refusal", old.handshake_error or old.connect_error)


def survives(grading: GradingContext, student: harness.Launcher, attack: str) -> None:
    """Attack a fresh server, then check that it (or, if it exited cleanly, a restart) serves."""
    server, addr = start_server(grading, student)
    host = grading.assignment.host
    if attack == "junk":
        harness.plain_exchange(addr, f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    else:
        harness.drop_mid_handshake(addr, host)
    ctx = harness.client_context(keylog=grading.keylog)
    after = harness.tls_session(addr, ctx, server_hostname=host)
    if after.data:
        return
    if server.wait(1.0) is None:  # returns as soon as it exits
        raise fail(
            f"After that client your server is still running but did not serve the next "
            f"client: {after.handshake_error or after.ending_detail or 'no data'}."
        )
    code = server.poll()
    stderr = server.stderr.text()
    if code != 0 or "Traceback" in stderr:
        raise fail(
            f"Your server crashed: {server.describe_exit()}.\n{server.output_tail()}",
            hint="Catch ssl.SSLError and OSError around wrap_socket() and the send, log "
            "the error, and go back to accept().",
        )
    # It exited cleanly without crashing: serving more than one client is another check's
    # business. Credit only a server that does serve a real client (no vacuous pass).
    start_server(grading, student)
    if not harness.tls_session(addr, ctx, server_hostname=host).data:
        raise fail("Your server handled that client without crashing but then did not serve a real one.")


@check(
    title="Survives a plain-HTTP client on the TLS port",
    points=2,
    visibility="hidden",
    expected="A client that speaks plain HTTP gets an error; the server goes on serving.",
    needs="message",
)
def test_survives_junk(first: Shared[Contact], grading: GradingContext, student: harness.Launcher) -> None:
    require_message(first.get(), grading)
    survives(grading, student, "junk")


@check(
    title="Survives a client that hangs up mid-handshake",
    points=1,
    visibility="hidden",
    expected="A client that sends half a ClientHello and leaves does not bring the server down.",
    needs="message",
)
def test_survives_dropped_handshake(
    first: Shared[Contact], grading: GradingContext, student: harness.Launcher
) -> None:
    require_message(first.get(), grading)
    survives(grading, student, "drop")
