"""Checks for `https-requests`: the student's requests client against the grader's HTTPS servers.

Behaviour decides: a program "refuses" a lying server only if no request of it reached that
server (the grader's server records every request it answers). Whatever the program prints,
a request that arrived means the handshake was completed without verification. Reading the
source for verify=False only adds a hint.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import pytest

import harness
from harness import GraderPKI, GradingContext, HTTPSTestServer, Launcher, Shared, check, fail

INSECURE = re.compile(r"verify\s*=\s*False|disable_warnings|CERT_NONE|check_hostname\s*=\s*False")


@dataclass
class Fetch:
    path: str
    proc: harness.StudentProcess
    server: HTTPSTestServer
    connections: list[harness.Connection]

    @property
    def lines(self) -> list[str]:
        return self.proc.stdout.data().decode("utf-8", "replace").split("\n")


@pytest.fixture(scope="module")
def token() -> str:
    return secrets.token_hex(8)


def fetch(
    ctx: GradingContext, launcher: Launcher, pki: GraderPKI, token: str, variant: str, path: str
) -> Fetch:
    server = HTTPSTestServer(pki, variant, ctx.keylog, token)
    try:
        _host, port = ctx.wire.address_for(server.port)
        since = ctx.wire.mark()
        url = f"https://{ctx.assignment.host}:{port}{path}"
        proc = launcher.run(ctx.assignment.settings["program"]["client"], url, "ca.crt", timeout=20)
        conns = ctx.wire.connections(server.port, since)
    finally:
        server.close()
    return Fetch(path, proc, server, conns)


def expect_output(f: Fetch, status: int, body: str) -> None:
    want = [str(status), "text/plain; charset=utf-8"]
    got_body = "\n".join(f.lines[2:])
    if f.proc.returncode != 0 or f.lines[:2] != want or got_body.rstrip("\n") != body.rstrip("\n"):
        tail = f.proc.output_tail(4) if f.proc.returncode else ""
        raise fail(
            f"For {f.path} your program exited with code {f.proc.returncode} and printed:\n"
            f"{f.proc.stdout.text()[:400] or '(nothing)'}\n{tail}",
            expected=f"exit code 0, then the lines: {status} / text/plain; charset=utf-8 / {body.strip()}",
        )


@pytest.fixture(scope="module")
def hello(grading: GradingContext, pki: GraderPKI, token: str) -> Shared[Fetch]:
    def run() -> Fetch:
        with grading.launcher() as launcher:
            return fetch(grading, launcher, pki, token, "good", "/hello")

    return Shared(run)


def insecure_source(ctx: GradingContext) -> str:
    found = sorted(
        {
            m.group(0)
            for p in ctx.submission.rglob("*.py")
            for m in INSECURE.finditer(p.read_text(errors="replace"))
        }
    )
    return f" Your code contains {', '.join(found)}: never switch verification off." if found else ""


def refusal(
    ctx: GradingContext,
    student: Launcher,
    pki: GraderPKI,
    token: str,
    hello: Shared[Fetch],
    variant: str,
    lie: str,
    evidence: harness.EvidenceRecorder,
) -> None:
    h = hello.get()
    if h.proc.returncode != 0 or not h.server.requests:
        raise fail(
            "Your program does not fetch from the grader's good server (see 'Fetches a page'), so "
            "refusing a bad one proves nothing: refusing everything is not verifying.",
            hint="Make that check pass first; this one runs again then.",
        )
    f = fetch(ctx, student, pki, token, variant, "/hello")
    evidence.text(
        "What happened",
        f"server: {lie}\nrequests that reached it: {f.server.requests or 'none'}\n"
        f"your program: exit code {f.proc.returncode}\n{f.proc.output_tail(3)}",
    )
    if f.server.requests:
        raise fail(
            f"Your program sent its request to a server whose {lie}: it completed the TLS handshake "
            f"without verifying (exit code {f.proc.returncode}, whatever it printed).{insecure_source(ctx)}",
            expected="the handshake refused, no request sent",
            hint="requests.get(url, verify=CAFILE): verification on, trusting the CA file you are given.",
        )
    said = f.proc.stderr.text().strip()
    if f.proc.returncode == 0 or token in f.proc.stdout.text() or not said:
        raise fail(
            f"After the refusal your program exited with code {f.proc.returncode} and said "
            f"{said[:200]!r} on stderr.",
            expected="exit code not 0 and a message on stderr",
        )


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
)
def test_refuses_untrusted(
    grading: GradingContext,
    student: Launcher,
    pki: GraderPKI,
    token: str,
    hello: Shared[Fetch],
    evidence: harness.EvidenceRecorder,
) -> None:
    refusal(grading, student, pki, token, hello, "untrusted", "certificate is signed by another CA", evidence)


@check(
    title="Refuses a server whose certificate is for another host",
    points=4,
    expected="No request reaches the server; exit code not 0.",
)
def test_refuses_wrong_host(
    grading: GradingContext,
    student: Launcher,
    pki: GraderPKI,
    token: str,
    hello: Shared[Fetch],
    evidence: harness.EvidenceRecorder,
) -> None:
    refusal(grading, student, pki, token, hello, "wrong-host", "certificate names another host", evidence)


@check(
    title="On the wire: TLS only, no HTTP in clear",
    points=3,
    expected="A capture of the fetch shows a TLS 1.2+ handshake and then only encrypted records: no "
    "request line, header or body an eavesdropper could read.",
)
def test_tls_on_wire(hello: Shared[Fetch], token: str, evidence: harness.EvidenceRecorder) -> None:
    h = hello.get()
    if h.proc.returncode != 0 or not h.server.requests or not h.connections:
        raise fail(
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


# --- hidden checks ------------------------------------------------------------------------


@check(
    title="Refuses a server whose certificate has expired",
    points=3,
    visibility="hidden",
    expected="No request reaches the server; exit code not 0.",
)
def test_refuses_expired(
    grading: GradingContext,
    student: Launcher,
    pki: GraderPKI,
    token: str,
    hello: Shared[Fetch],
    evidence: harness.EvidenceRecorder,
) -> None:
    refusal(grading, student, pki, token, hello, "expired", "certificate expired yesterday", evidence)


@check(
    title="Refuses a server whose certificate is not yet valid",
    points=3,
    visibility="hidden",
    expected="No request reaches the server; exit code not 0.",
)
def test_refuses_not_yet_valid(
    grading: GradingContext,
    student: Launcher,
    pki: GraderPKI,
    token: str,
    hello: Shared[Fetch],
    evidence: harness.EvidenceRecorder,
) -> None:
    refusal(
        grading, student, pki, token, hello, "not-yet-valid", "certificate is valid from tomorrow", evidence
    )
