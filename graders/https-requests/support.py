"""Shared by the public and hidden checks of `https-requests`: helpers and fixtures (no check lives here)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import pytest

import harness
from harness import GraderPKI, GradingContext, HTTPSTestServer, Launcher, Shared, fail

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


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
def hello(grading: GradingContext, pki: GraderPKI, token: str) -> Shared[Fetch]:
    def run() -> Fetch:
        with grading.launcher() as launcher:
            return fetch(grading, launcher, pki, token, "good", "/hello")

    return Shared(run, owner="Fetches a page over HTTPS, trusting the given CA")


def insecure_source(ctx: GradingContext) -> str:
    found = sorted(
        {
            m.group(0)
            for name in harness.regular_files(ctx.submission, ".py")
            for m in INSECURE.finditer((ctx.read_made(name) or b"").decode(errors="replace"))
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
        raise harness.Blocked(
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
        # Which part of verification was skipped: the wrong-host server's certificate is signed
        # by the student's CA, so only a client that skips the name check gets through to it.
        skipped = (
            "it did not check the host name (that certificate is signed by your CA, so only the "
            "name was wrong)"
            if variant == "wrong-host"
            else "it completed the TLS handshake without verifying the certificate"
        )
        raise fail(
            f"Your program sent its request to a server whose {lie}: {skipped} "
            f"(exit code {f.proc.returncode}, whatever it printed).{insecure_source(ctx)}",
            expected="the handshake refused, no request sent",
            hint="requests.get(url, verify=CAFILE): verification on (the chain and the host name), "
            "trusting the CA file you are given.",
        )
    said = f.proc.stderr.text().strip()
    if f.proc.returncode == 0 or token in f.proc.stdout.text() or not said:
        raise fail(
            f"After the refusal your program exited with code {f.proc.returncode} and said "
            f"{said[:200]!r} on stderr.",
            expected="exit code not 0 and a message on stderr",
        )


Refuse = Callable[[str, str], None]


@pytest.fixture
def refuse(
    grading: GradingContext,
    student: Launcher,
    pki: GraderPKI,
    token: str,
    hello: Shared[Fetch],
    evidence: harness.EvidenceRecorder,
) -> Refuse:
    """refuse(variant, lie): run the refusal check against that lying server."""

    def run(variant: str, lie: str) -> None:
        refusal(grading, student, pki, token, hello, variant, lie, evidence)

    return run
