"""Checks for `tls-client`: the student's client against the grader's honest and lying servers.

The good server sends several records (more than one recv() of the lecture's 1024 bytes) and
ends with close_notify. The lying servers present a certificate from another CA, for another
host, expired, not yet valid, or speak only TLS 1.0/1.1. A refusal earns points only from a
client that completes the handshake with the good server: refusing everything is not
verifying. What the client did is read from its exit code and output, and from the wire
(decrypted with the key log our server writes)."""

from __future__ import annotations

from support import (
    Refuse,
    Run,
    printed,
    require_good,
)

import harness
from harness import GradingContext, Shared, check, fail

# --- public checks ------------------------------------------------------------------------


@check(
    title="Reads everything from a good server, then exits 0",
    points=5,
    expected="Against a server with a valid certificate for the host, signed by CAFILE, the client "
    "prints all three records (far more than one recv()) and exits 0 once the server closes.",
    hint="Loop on recv() until it returns b'' (the server's close_notify), printing as you go.",
)
def test_good_server(
    good: Shared[Run], payload: tuple[bytes, ...], evidence: harness.EvidenceRecorder
) -> None:
    r = good.get(owner=True)
    out = printed(r.proc.stdout.data())
    got = [i + 1 for i, chunk in enumerate(payload) if chunk in out]
    visit = r.visit
    if visit is None:
        seen = "no connection"
    else:
        seen = f"handshake ok, {visit.version}" if visit.handshake_ok else visit.handshake_error
    evidence.text("The grader's server saw", seen)
    if visit is None:
        raise fail(f"Your client never connected.\n{r.proc.output_tail()}")
    if not visit.handshake_ok:
        raise fail(
            f"The handshake failed: {visit.handshake_error}.\n{r.proc.output_tail()}",
            hint="Trust the CA file you are given (cafile=CAFILE), and connect to HOST as given.",
        )
    if len(got) < len(payload):
        raise fail(
            f"Your client printed records {got} of 3 (it stops reading too early).\n{r.proc.output_tail(4)}"
        )
    if r.proc.returncode != 0:
        raise fail(
            f"It printed everything but exited with code {r.proc.returncode}.\n{r.proc.output_tail(4)}"
        )


@check(
    title="Sends the host name as SNI",
    points=3,
    expected="The ClientHello on the wire carries the host name in its server_name extension.",
    hint="Pass server_hostname=HOST to wrap_socket: it sends SNI and checks the name.",
    needs="good-server",
)
def test_sni(good: Shared[Run], grading: GradingContext, evidence: harness.EvidenceRecorder) -> None:
    r = good.get()
    if r.transcript is None or r.transcript.client_hello is None:
        raise fail("Your client sent no ClientHello to the grader's server.")
    sni = r.transcript.client_hello.sni
    # Our server sees SNI only once its handshake reached the SNI callback (a hello refused
    # for its version never does): where its view is complete it must agree with the wire,
    # elsewhere the wire decides.
    if r.visit and r.visit.handshake_ok and (r.visit.sni or "") != (sni or ""):
        raise harness.HarnessError(f"the wire shows SNI {sni!r} but the server saw {r.visit.sni!r}")
    evidence.text("ClientHello", f"frame {r.transcript.client_hello.number}: server_name = {sni or '(none)'}")
    if sni != grading.assignment.host:
        raise fail(f"The ClientHello's SNI is {sni or 'absent'!r}.", expected=repr(grading.assignment.host))


@check(
    title="Refuses a certificate from a CA it was not given",
    points=3,
    expected="Exit code not 0 and none of the server's data printed.",
    needs="good-server",
)
def test_refuses_untrusted(refuse: Refuse) -> None:
    refuse("untrusted", "certificate is signed by another CA")


@check(
    title="Refuses a certificate for another host name",
    points=3,
    expected="Exit code not 0 and none of the server's data printed.",
    needs="good-server",
)
def test_refuses_wrong_host(refuse: Refuse, grading: GradingContext) -> None:
    refuse("wrong-host", f"certificate is for not-{grading.assignment.host}")


@check(
    title="Refuses an expired certificate",
    points=3,
    expected="Exit code not 0 and none of the server's data printed.",
    needs="good-server",
)
def test_refuses_expired(refuse: Refuse) -> None:
    refuse("expired", "certificate expired yesterday")


@check(
    title="Ends the session cleanly (close_notify)",
    points=3,
    expected="When the server sends close_notify, the client answers with its own before closing TCP.",
    hint="After recv() returns b'', call ssl_sock.unwrap() (it sends close_notify), then close.",
    needs="good-server",
)
def test_clean_close(
    good: Shared[Run], payload: tuple[bytes, ...], evidence: harness.EvidenceRecorder
) -> None:
    r = require_good(good)
    t = r.transcript
    if t is None or not t.handshake_visible:
        raise harness.HarnessError("the capture of the good session could not be decrypted")
    notify = [f for f, _l, d in t.alerts(from_client=True) if d == 0]
    close = t.first_close(from_client=True)
    ok = bool(notify) and (close is None or notify[0].number <= close.number)
    # The server's unwrap() can miss a close_notify the client did send (it trips on data the
    # client sent first and nobody read): the wire decides. Only a close_notify our server
    # received and the capture lacks is ours (a capture that lost it).
    if r.visit and r.visit.client_close_notify and not ok:
        raise harness.HarnessError(
            "the grader's server received the client's close_notify but the capture does not show it"
        )
    if not ok:
        raise fail(
            "The server ended the session with close_notify; your client closed TCP without answering "
            "with its own. Both sides saying 'that was all' is how TLS tells a finished conversation "
            "from a cut one; Python's close() does not send it, only unwrap() does."
        )
    evidence.text("On the wire", f"your client's close_notify in frame {notify[0].number}")
