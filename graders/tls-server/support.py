"""Shared by the public and hidden checks of `tls-server`: helpers and fixtures (no check lives here)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from cryptography import x509

import harness
from harness import (
    Connection,
    GradingContext,
    HarnessError,
    Shared,
    StudentProcess,
    TLSSession,
    Transcript,
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


@pytest.fixture(scope="session")
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
        raise harness.Blocked(
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


def require_message(c: Contact, ctx: GradingContext, *, main: bool = False) -> None:
    """Fail unless the first contact carried data; only ``main`` (the message check) tells why."""
    require_tls(c, ctx)
    if not c.session.data:
        raise (fail if main else harness.Blocked)(
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
    return harness.frame_rows(c.connection, "grader", "your server", secret=secret)
