"""Checks for `tls-server`: the lecture's TLS server, graded on the wire.

Every check that is not about certificates connects without verifying them, so a wrong
certificate costs the certificate checks only. A server may serve one client and exit (the
lecture's does), so each check that needs a fresh server starts its own. Claims about the
wire are read from the capture, decrypted with the grader's key log; where the grader's own
client saw something too, the two must agree, or the check is a harness ERROR.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

import harness
from harness import (
    ALERTS,
    VERSIONS,
    Connection,
    GradingContext,
    HarnessError,
    Shared,
    StudentProcess,
    TLSSession,
    Transcript,
    check,
    fail,
)

TLS12 = 0x0303


@dataclass
class Contact:
    """One grader client's session with a freshly started server, and the wire under it."""

    session: TLSSession
    connection: Connection | None
    transcript: Transcript | None
    server: StudentProcess
    _state: str = ""

    def server_state(self) -> str:
        """How the server was doing (worked out while it may still run, then kept)."""
        if not self._state:
            self.server.wait(0.25)  # a server dying of this session is gone by now
            state = self.server.describe_exit()
            self._state = f"{state[0].upper()}{state[1:]}.\n{self.server.output_tail()}"
        return self._state


def settings(ctx: GradingContext) -> dict[str, str]:
    return ctx.assignment.settings["program"]


def message(ctx: GradingContext) -> bytes:
    return settings(ctx)["message"].encode()


def start_server(ctx: GradingContext, launcher: harness.Launcher) -> tuple[StudentProcess, tuple[str, int]]:
    """Start the student's server as the handout says, and where a grader client should connect."""
    server = launcher.server(settings(ctx)["server"], str(ctx.port))
    return server, ctx.wire.address_for(ctx.port)


def contact(ctx: GradingContext, launcher: harness.Launcher, **kw: object) -> Contact:
    """Start the server, run one TLS session through the wire, dissect it."""
    server, addr = start_server(ctx, launcher)
    session = harness.tls_session(
        addr,
        harness.client_context(keylog=ctx.keylog, **kw),  # type: ignore[arg-type]
        server_hostname=ctx.assignment.host,
    )
    if not session.connected:
        raise fail(
            f"The grader could not connect to your server on {ctx.port_note}: "
            f"{session.connect_error}. {server.describe_exit()}.",
            hint="Does your server accept() connections on that port?",
        )
    conn = ctx.wire.connection(session.client_port, ctx.port)
    c = Contact(session, conn, harness.dissect(conn, ctx.keylog), server)
    if not session.handshake_ok or not session.data:
        c.server_state()  # describe it now, before the check's end stops it
    return c


@pytest.fixture(scope="module")
def first(grading: GradingContext) -> Shared[Contact]:
    """The first, ordinary session with the server, shared by the checks that read it."""

    def run() -> Contact:
        with grading.launcher() as launcher:
            return contact(grading, launcher)

    return Shared(run, owner="Completes a TLS handshake")


def describe_handshake_failure(c: Contact, ctx: GradingContext) -> str:
    seen = f"The TLS handshake failed: {c.session.handshake_error}."
    raw = c.connection.server_stream if c.connection else b""
    if raw and raw[:1] != b"\x16":
        seen += (
            f"\nInstead of a TLS ServerHello your server sent {len(raw)} bytes in clear: "
            f"{harness.printable(raw[:120])!r}"
        )
    elif not raw:
        seen += "\nYour server sent nothing back to the ClientHello."
    return f"{seen}\n{c.server_state()}"


def require_tls(c: Contact, ctx: GradingContext, *, main: bool = False) -> None:
    """Fail unless the first contact completed a TLS handshake.

    The full story is told once, by the handshake check (``main``); the checks that merely
    need a session point there instead of repeating it.
    """
    if not c.session.handshake_ok and not main:
        raise fail(
            "This check needs a TLS session with your server, and the handshake failed "
            "(see 'Completes a TLS handshake').",
            hint="Fix the handshake first; this check runs again on your next submission.",
        )
    if not c.session.handshake_ok:
        raise fail(
            describe_handshake_failure(c, ctx),
            expected="a TLS handshake: the server answers the ClientHello with a ServerHello",
            hint="Wrap the accepted socket with context.wrap_socket(raw_sock, server_side=True) "
            "before sending anything, and load your certificate with load_cert_chain('server.pem').",
        )


def require_message(c: Contact, ctx: GradingContext) -> None:
    require_tls(c, ctx)
    if not c.session.data:
        raise fail(
            f"The TLS handshake worked, but your server sent no data before the session "
            f"ended ({c.session.ending or 'no ending'}: {c.session.ending_detail}).",
            expected=f"{message(ctx).decode()!r} sent over the TLS connection",
            hint="Send with ssl_sock.sendall(...) on the wrapped socket, not on the raw one.",
        )


def wire_cert(c: Contact) -> bytes:
    """The leaf certificate as read from the capture; it must match what our client got."""
    assert c.transcript is not None
    if not c.transcript.handshake_visible:
        raise HarnessError("the capture could not be decrypted with the grader's key log")
    certs = c.transcript.server_certificates
    if not certs:
        raise HarnessError("the handshake completed but no Certificate message was seen on the wire")
    if certs[0] != c.session.peer_cert_der:
        raise HarnessError("the certificate on the wire differs from the one the grader's client got")
    return certs[0]


def cert_summary(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = ", ".join(san.get_values_for_type(x509.DNSName)) or "none"
    except x509.ExtensionNotFound:
        names = "none"
    return (
        f"subject {cert.subject.rfc4514_string()}, DNS names in subjectAltName: {names}, "
        f"valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}"
    )


def eavesdropper_view(c: Contact, secret: bytes) -> list[dict[str, object]]:
    """The connection as Wireshark lists it without keys, frames with the secret marked."""
    assert c.connection is not None
    plain = harness.dissect(c.connection)
    rows = []
    for f in plain.frames:
        rows.append(
            {
                "no": f.number,
                "time": f"{f.time:.6f}",
                "src": "grader" if f.from_client else "your server",
                "protocol": f.protocol,
                "length": f.length,
                "info": f.info,
                "payload": harness.printable(f.payload[:160]),
                "plaintext": bool(secret) and secret in f.payload,
            }
        )
    return rows


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
)
def test_message(first: Shared[Contact], grading: GradingContext, evidence: harness.EvidenceRecorder) -> None:
    c = first.get()
    require_message(c, grading)
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
            "network can read it (see the frames marked in red below).",
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
)
def test_own_certificate(
    first: Shared[Contact], grading: GradingContext, evidence: harness.EvidenceRecorder
) -> None:
    c = first.get()
    require_tls(c, grading)
    der = wire_cert(c)
    name = settings(grading)["certificate"]
    path = grading.submission / name
    if not path.is_file():
        raise fail(f"There is no {name} in your submission.", expected=f"{name} next to your server")
    try:
        mine = x509.load_pem_x509_certificates(path.read_bytes())[0]
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
        if c.session.ending != "close_notify":
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


# --- hidden checks ------------------------------------------------------------------------


@check(
    title="Refuses clients that offer only TLS 1.0 or 1.1",
    points=2,
    visibility="hidden",
    expected="A client offering only TLS 1.0/1.1 fails the handshake.",
    hint="Keep the default minimum (TLS 1.2) or set context.minimum_version = TLSVersion.TLSv1_2.",
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
)
def test_survives_junk(first: Shared[Contact], grading: GradingContext, student: harness.Launcher) -> None:
    require_message(first.get(), grading)
    survives(grading, student, "junk")


@check(
    title="Survives a client that hangs up mid-handshake",
    points=1,
    visibility="hidden",
    expected="A client that sends half a ClientHello and leaves does not bring the server down.",
)
def test_survives_dropped_handshake(
    first: Shared[Contact], grading: GradingContext, student: harness.Launcher
) -> None:
    require_message(first.get(), grading)
    survives(grading, student, "drop")
