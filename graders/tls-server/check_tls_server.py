"""Checks for `tls-server`: the lecture's TLS server, graded on the wire.

Every check that is not about certificates connects without verifying them, so a wrong
certificate costs the certificate checks only. A server may serve one client and exit (the
lecture's does), so each check that needs a fresh server starts its own. Claims about the
wire are read from the capture, decrypted with the grader's key log; where the grader's own
client saw something too, the two must agree, or the check is a harness ERROR."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from support import (
    TLS12,
    Contact,
    cert_summary,
    eavesdropper_view,
    message,
    require_message,
    require_tls,
    settings,
    start_server,
    wire_cert,
)

import harness
from harness import ALERTS, VERSIONS, GradingContext, HarnessError, Shared, check, fail

# --- public checks ------------------------------------------------------------------------


@check(
    title="Completes a TLS handshake",
    points=3,
    expected="A TLS client connecting to your server completes a handshake.",
    hint="Run the lecture's client against your server and read the error it prints.",
)
def test_tls_handshake(first: Shared[Contact], grading: GradingContext) -> None:
    require_tls(first.get(owner=True), grading, main=True)


@check(
    title="Sends its message over TLS",
    points=3,
    expected="The client receives 'Hello World!' inside the TLS session.",
    needs="tls-handshake",
)
def test_message(first: Shared[Contact], grading: GradingContext, evidence: harness.EvidenceRecorder) -> None:
    c = first.get()
    require_message(c, grading, main=True)
    want = message(grading)
    got = c.session.data
    evidence.text("What the grader's client received", repr(got))
    if got.strip() != want:
        raise fail(
            f"Your server sent {got[:200]!r}.",
            expected=f"exactly {want!r} (a trailing newline is fine)",
            hint="Send the handout's message, encoded as UTF-8.",
        )


@check(
    title="Nothing of the message is readable on the wire",
    points=4,
    expected="An eavesdropper capturing the traffic sees only TLS records, never the message.",
    needs="message",
)
def test_no_plaintext(
    first: Shared[Contact], grading: GradingContext, evidence: harness.EvidenceRecorder
) -> None:
    c = first.get()
    assert c.connection is not None and c.transcript is not None
    # Search for the handout's message, and for what was really sent if it is long enough
    # not to turn up in ciphertext by chance (two bytes would, one time in twenty).
    secrets = [message(grading)] + ([c.session.data.strip()] if len(c.session.data.strip()) >= 8 else [])
    secret = next(
        (x for x in secrets if x in c.connection.server_stream + c.connection.client_stream), secrets[-1]
    )
    evidence.frames("What an eavesdropper saw (no keys)", eavesdropper_view(c, secret))
    on_wire = c.connection.server_stream + c.connection.client_stream
    if secret in on_wire:
        raise fail(
            f"{secret.decode(errors='replace')!r} travels in clear on the wire: anyone on the "
            "network can read it (the report shows those frames, the message marked in red).",
            expected="the message only inside encrypted TLS records",
            hint="Send through the wrapped TLS socket only; never write to the raw socket.",
        )
    # No vacuous pass: credit only a message that really travelled over modern TLS.
    require_message(c, grading)
    if (c.transcript.version or 0) < TLS12:
        raise fail(
            f"The message travelled over {c.transcript.version_name}, which is not secure.",
            expected="TLS 1.2 or 1.3",
        )


@check(
    title="Negotiates TLS 1.2 or 1.3",
    points=2,
    expected="The ServerHello on the wire selects TLS 1.2 or TLS 1.3.",
    needs="tls-handshake",
)
def test_tls_version(
    first: Shared[Contact], grading: GradingContext, evidence: harness.EvidenceRecorder
) -> None:
    c = first.get()
    require_tls(c, grading)
    assert c.transcript is not None
    v = c.transcript.version
    if v is None:
        raise HarnessError("the handshake completed but no ServerHello was seen on the wire")
    client_view = c.session.version.replace("TLSv", "TLS ")
    if VERSIONS.get(v) != client_view:
        raise HarnessError(f"the wire says {VERSIONS.get(v)} but the grader's client says {client_view}")
    sh = c.transcript.server_hello
    evidence.text(
        "ServerHello",
        f"frame {sh.number if sh else '?'}: {c.transcript.version_name}, cipher suite {c.session.cipher}",
    )
    if v < TLS12:
        raise fail(
            f"Your server chose {VERSIONS.get(v)}.",
            expected="TLS 1.2 or 1.3",
            hint="Set context.minimum_version = ssl.TLSVersion.TLSv1_2.",
        )


@check(
    title="Its certificate verifies for the handout's host name",
    points=2,
    expected="A client that trusts your certificate and checks the host name accepts it.",
    hint="Make the certificate's commonName (better: a subjectAltName DNS entry) the handout's "
    "host name, and check it with `openssl x509 -text -in server.crt -noout`.",
    needs="tls-handshake",
)
def test_hostname(
    first: Shared[Contact],
    grading: GradingContext,
    student: harness.Launcher,
    evidence: harness.EvidenceRecorder,
) -> None:
    c = first.get()
    require_tls(c, grading)
    der = wire_cert(c)
    host = grading.assignment.host
    ctx = harness.client_context(
        trust_pem=harness.der_to_pem(der), hostname_check=True, keylog=grading.keylog
    )
    server, addr = start_server(grading, student)
    s = harness.tls_session(addr, ctx, server_hostname=host)
    evidence.text("The certificate your server sent", cert_summary(der))
    if not s.handshake_ok:
        raise fail(
            f"With your certificate trusted, verification for {host!r} failed: "
            f"{s.handshake_error or s.connect_error}; {server.describe_exit()}.",
            expected=f"a certificate valid now whose name matches {host!r}",
        )


@check(
    title="Serves the certificate in server.crt",
    points=2,
    expected="The certificate on the wire is the one in your server.crt.",
    hint="Load the key and certificate you made (server.pem = server.crt + server.key).",
    needs="tls-handshake",
)
def test_own_certificate(
    first: Shared[Contact], grading: GradingContext, evidence: harness.EvidenceRecorder
) -> None:
    c = first.get()
    require_tls(c, grading)
    der = wire_cert(c)
    name = settings(grading)["certificate"]
    data = grading.read_made(name)
    if data is None:
        raise fail(f"There is no {name} in your submission.", expected=f"{name} next to your server")
    try:
        mine = x509.load_pem_x509_certificates(data)[0]
    except ValueError as exc:
        raise fail(f"{name} is not a PEM certificate: {exc}.") from None
    evidence.text("On the wire", cert_summary(der))
    evidence.text(f"In {name}", cert_summary(mine.public_bytes(Encoding.DER)))
    if mine.public_bytes(Encoding.DER) != der:
        raise fail(
            f"Your server sent a different certificate from the one in {name}.",
            expected=f"the certificate in {name}",
        )


@check(
    title="Ends the session with close_notify",
    points=2,
    expected="Before closing TCP, the server sends a TLS close_notify alert.",
    hint="Call ssl_sock.unwrap() (it sends close_notify) before ssl_sock.close().",
    needs="message",
)
def test_close_notify(
    first: Shared[Contact], grading: GradingContext, evidence: harness.EvidenceRecorder
) -> None:
    c = first.get()
    require_message(c, grading)
    t = c.transcript
    assert t is not None
    if not t.handshake_visible:
        raise HarnessError("the capture could not be decrypted with the grader's key log")
    close = t.first_close(from_client=False)
    alerts = t.alerts(from_client=False)
    notify = [f for f, _lvl, desc in alerts if desc == 0]
    if notify and (close is None or notify[0].number <= close.number):
        # Our client's view is complete only if it read to the end (it stops at a byte limit
        # or a timeout): then it must agree with the wire; elsewhere the wire decides.
        if c.session.ending in ("eof", "reset"):
            raise HarnessError("the wire shows close_notify but the grader's client did not get it")
        evidence.text(
            "On the wire",
            f"close_notify in frame {notify[0].number}"
            + (f", then TCP {'FIN' if close.fin else 'RST'} in frame {close.number}" if close else ""),
        )
        return
    why = (
        "close_notify is how TLS says 'that was all of my data'. Without it, the client cannot "
        "tell your ending from an attacker cutting the connection short (a truncation attack), "
        "and strict clients report an error (Python: SSLEOFError, 'unexpected eof')."
    )
    if close is None:
        seen = "Your server never ended the session: the connection was still open when the grader gave up."
    else:
        other = ", ".join(ALERTS.get(d, str(d)) for _f, _l, d in alerts) or "no alert"
        seen = (
            f"Your server closed TCP ({'FIN' if close.fin else 'RST'} in frame {close.number}) "
            f"without a close_notify alert before it (it sent {other})."
        )
    raise fail(f"{seen}\n{why}")


@check(
    title="Serves a second client after the first",
    points=2,
    expected="After one client has been served, a second client is served too.",
    hint="Put accept() and the code that serves a client in a loop (while True: ...).",
    needs="message",
)
def test_second_client(first: Shared[Contact], grading: GradingContext, student: harness.Launcher) -> None:
    require_message(first.get(), grading)
    server, addr = start_server(grading, student)
    ctx = harness.client_context(keylog=grading.keylog)
    one = harness.tls_session(addr, ctx, server_hostname=grading.assignment.host)
    if not one.data:
        raise fail(f"This time the first client got nothing: {one.handshake_error or one.ending_detail}.")
    two = harness.tls_session(addr, ctx, server_hostname=grading.assignment.host)
    if two.data:
        return
    if server.wait(1.0) is not None:  # returns as soon as it exits
        raise fail(
            f"After the first client your server stopped: {server.describe_exit()}.\n{server.output_tail()}"
        )
    raise fail(
        f"Your server is running but the second client got nothing: "
        f"{two.connect_error or two.handshake_error or two.ending_detail or 'no data'}."
    )
