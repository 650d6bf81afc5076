"""Checks for `https-requests`: the student's requests client against the grader's HTTPS servers.

Behaviour decides: a program "refuses" a lying server only if no request of it reached that
server (the grader's server records every request it answers). Whatever the program prints,
a request that arrived means the handshake was completed without verification. Reading the
source for verify=False only adds a hint."""

from __future__ import annotations

from support import (
    Fetch,
    Refuse,
    expect_output,
    fetch,
)

import harness
from harness import GraderPKI, GradingContext, Launcher, Shared, check, fail

# --- public checks ------------------------------------------------------------------------


@check(
    title="Fetches a page over HTTPS, trusting the given CA",
    points=4,
    expected="For https://horiem.ca:PORT/hello: exit 0, the status code, the Content-Type, the body.",
    hint="requests.get(url, verify=CAFILE), then print r.status_code, r.headers['Content-Type'], r.text.",
)
def test_fetch(hello: Shared[Fetch], token: str) -> None:
    expect_output(hello.get(owner=True), 200, f"Hello from the grader, {token}")


@check(
    title="Follows a redirect",
    points=2,
    expected="/old answers 301 to /hello: print what /hello gives.",
    hint="requests follows redirects by default; print the final response.",
)
def test_redirect(grading: GradingContext, student: Launcher, pki: GraderPKI, token: str) -> None:
    expect_output(fetch(grading, student, pki, token, "good", "/old"), 200, f"Hello from the grader, {token}")


@check(
    title="Reports a 404 as an answer",
    points=2,
    expected="/missing answers 404: print 404, the Content-Type and the body, and exit 0.",
    hint="A 404 is an HTTP answer, not a failure of your program: do not raise_for_status().",
)
def test_not_found(grading: GradingContext, student: Launcher, pki: GraderPKI, token: str) -> None:
    expect_output(
        fetch(grading, student, pki, token, "good", "/missing"), 404, f"Nothing at /missing ({token})"
    )


@check(
    title="Refuses a server whose certificate is from another CA",
    points=4,
    expected="No request reaches the server; exit code not 0.",
    needs="fetch",
)
def test_refuses_untrusted(refuse: Refuse) -> None:
    refuse("untrusted", "certificate is signed by another CA")


@check(
    title="Refuses a server whose certificate is for another host",
    points=4,
    expected="No request reaches the server; exit code not 0.",
    needs="fetch",
)
def test_refuses_wrong_host(refuse: Refuse) -> None:
    refuse("wrong-host", "certificate names another host")


@check(
    title="On the wire: TLS only, no HTTP in clear",
    points=3,
    expected="A capture of the fetch shows a TLS 1.2+ handshake and then only encrypted records: no "
    "request line, header or body an eavesdropper could read.",
    needs="fetch",
)
def test_tls_on_wire(hello: Shared[Fetch], token: str, evidence: harness.EvidenceRecorder) -> None:
    h = hello.get()
    if h.proc.returncode != 0 or not h.server.requests or not h.connections:
        raise harness.Blocked(
            "Your program does not fetch from the good server (see 'Fetches a page'), so there is "
            "no traffic to judge."
        )
    conn = h.connections[0]
    t = harness.dissect(conn)
    evidence.frames(
        "What an eavesdropper saw (no keys)",
        [
            {
                "no": f.number,
                "time": f"{f.time:.6f}",
                "src": "your program" if f.from_client else "grader",
                "protocol": f.protocol,
                "length": f.length,
                "info": f.info,
                "payload": harness.printable(f.payload[:160]),
                "plaintext": token.encode() in f.payload,
            }
            for f in t.frames
        ],
    )
    wire = conn.client_stream + conn.server_stream
    for secret in (b"GET /hello", token.encode(), b"Hello from the grader"):
        if secret in wire:
            raise fail(f"{secret.decode()!r} travels in clear.")
    if (t.version or 0) < 0x0303:
        raise fail(f"The connection used {t.version_name}.", expected="TLS 1.2 or 1.3")
