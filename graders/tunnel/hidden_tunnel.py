"""Hidden checks for `tunnel`: run when the instructor grades; never in a student bundle."""

from __future__ import annotations

from support import (
    AppBackend,
    EchoBackend,
    EchoTrip,
    WebTrip,
    echo_trip,
    port,
    require_tls,
    start_nginx,
    start_stunnel,
    verifying,
)

import harness
from harness import GraderPKI, GradingContext, Launcher, Shared, check, fail


@check(
    title="stunnel survives a plaintext client and serves the next",
    points=1,
    visibility="hidden",
    expected="After a client that sends plain text to 8443, a TLS client still gets its echo.",
    needs=("stunnel-starts", "stunnel-tls"),
)
def test_stunnel_junk(
    grading: GradingContext,
    student: Launcher,
    pki: GraderPKI,
    backends: tuple[EchoBackend, AppBackend],
    stunnel_trip: Shared[EchoTrip],
) -> None:
    if not stunnel_trip.get().ok:
        raise harness.Blocked("stunnel does not carry a normal session (see the round-trip check).")
    start_stunnel(grading, student)
    harness.plain_exchange(grading.wire.address_for(port(grading, "stunnel_port")), b"hello in clear\n", 2)
    if not echo_trip(grading, pki, backends[0], b"after the junk").ok:
        raise fail("After the plaintext client, the next TLS client got no echo.")


@check(
    title="stunnel refuses TLS 1.0 and 1.1",
    points=1,
    visibility="hidden",
    expected="A client offering only TLS 1.0/1.1 is refused.",
    hint="sslVersionMin = TLSv1.2",
    needs=("stunnel-starts", "stunnel-tls"),
)
def test_stunnel_old_tls(
    grading: GradingContext, student: Launcher, pki: GraderPKI, stunnel_trip: Shared[EchoTrip]
) -> None:
    if not stunnel_trip.get().handshake_ok:  # refusing everything is not refusing old TLS
        raise harness.Blocked("stunnel completes no modern TLS handshake (see the round-trip check).")
    start_stunnel(grading, student)
    s = harness.tls_session(
        grading.wire.address_for(port(grading, "stunnel_port")),
        verifying(grading, pki, legacy=True),
        server_hostname=grading.assignment.host,
    )
    if s.handshake_ok:
        raise fail(f"stunnel accepted a {s.version} handshake.")


@check(
    title="nginx refuses TLS 1.0 and 1.1",
    points=2,
    visibility="hidden",
    expected="A client offering only TLS 1.0/1.1 is refused.",
    hint="ssl_protocols TLSv1.2 TLSv1.3;",
    needs=("nginx-starts", "nginx-https"),
)
def test_nginx_old_tls(
    grading: GradingContext, student: Launcher, pki: GraderPKI, nginx_trip: Shared[WebTrip]
) -> None:
    require_tls(nginx_trip.get())  # refusing everything is not refusing old TLS
    start_nginx(grading, student)
    s = harness.tls_session(
        grading.wire.address_for(port(grading, "https_port")),
        verifying(grading, pki, legacy=True),
        server_hostname=grading.assignment.host,
        timeout=3,
    )
    if s.handshake_ok:
        raise fail(f"nginx accepted a {s.version} handshake.")
