"""Shared by the public and hidden checks of `tls-client`: helpers and fixtures (no check lives here)."""

from __future__ import annotations

import ast
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import pytest

import harness
from harness import ALERTS, GraderPKI, GradingContext, Launcher, Shared, TLSTestServer, fail


@dataclass
class Run:
    """One run of the student's client against one of our servers."""

    variant: str
    proc: harness.StudentProcess
    server: TLSTestServer
    transcript: harness.Transcript | None

    @property
    def visit(self) -> harness.ClientVisit | None:
        return self.server.visits[0] if self.server.visits else None

    def client_alerts(self) -> list[str]:
        if self.transcript is None:
            return []
        return [ALERTS.get(d, str(d)) for _f, _l, d in self.transcript.alerts(from_client=True)]


@pytest.fixture(scope="session")
def payload() -> tuple[bytes, ...]:
    token = secrets.token_hex(8)
    return tuple(
        (f"record {i} of 3, secret {token}: " + "abcdefghij" * 200 + "\n").encode() for i in range(1, 4)
    )


def printed(out: bytes) -> bytes:
    """What a client printed, with the lecture's print(data) repr lines (b'...') undone."""
    text = out.decode("utf-8", "replace")
    lines = text.splitlines()
    if lines and all(ln.startswith(("b'", 'b"')) for ln in lines if ln):
        try:
            return b"".join(ast.literal_eval(ln) for ln in lines if ln)
        except (ValueError, SyntaxError):
            pass
    return out


def run_client(
    ctx: GradingContext, launcher: Launcher, pki: GraderPKI, variant: str, payload: tuple[bytes, ...]
) -> Run:
    server = TLSTestServer(pki, variant, keylog=ctx.keylog, payload=payload)
    try:
        _host, port = ctx.wire.address_for(server.port)
        since = ctx.wire.mark()
        proc = launcher.run(
            ctx.assignment.settings["program"]["client"],
            ctx.assignment.host,
            str(port),
            "ca.crt",
            timeout=20,
        )
        server.wait_finished(1, 5)
        conns = ctx.wire.connections(server.port, since)
    finally:
        server.close()
    transcript = harness.dissect(conns[0], ctx.keylog) if conns else None
    return Run(variant, proc, server, transcript)


@pytest.fixture(scope="session")
def good(grading: GradingContext, pki: GraderPKI, payload: tuple[bytes, ...]) -> Shared[Run]:
    def run() -> Run:
        with grading.launcher() as launcher:
            return run_client(grading, launcher, pki, "good", payload)

    return Shared(run, owner="Reads everything from a good server, then exits 0")


def require_good(good: Shared[Run]) -> Run:
    """No vacuous refusals: the client must complete a handshake with the good server."""
    r = good.get()
    if r.visit is None or not r.visit.handshake_ok:
        raise harness.Blocked(
            "Your client does not complete a handshake with the grader's good server (see 'Reads "
            "everything from a good server'), so refusing the bad ones proves nothing: refusing "
            "everything is not verifying.",
            hint="Make the good-server check pass first; this check runs again then.",
        )
    return r


def refusal(
    ctx: GradingContext,
    student: Launcher,
    pki: GraderPKI,
    payload: tuple[bytes, ...],
    good: Shared[Run],
    variant: str,
    lie: str,
    evidence: harness.EvidenceRecorder,
) -> None:
    require_good(good)
    r = run_client(ctx, student, pki, variant, payload)
    out = printed(r.proc.stdout.data())
    leaked = [i + 1 for i, chunk in enumerate(payload) if chunk[:40] in out]
    alerts = r.client_alerts()
    evidence.text(
        "What happened",
        f"server: {lie}\nyour client: exit code {r.proc.returncode}; its alerts on the wire: "
        f"{', '.join(alerts) or 'none'}\n{r.proc.output_tail(4)}",
    )
    if r.proc.returncode == 0 or leaked:
        shown = f" and printed record(s) {leaked} of the server's data" if leaked else ""
        raise fail(
            f"Against a server whose {lie}, your client exited with code {r.proc.returncode}{shown}.",
            expected="the handshake refused: exit code not 0, none of the server's data printed",
            hint="Use create_default_context(Purpose.SERVER_AUTH, cafile=CAFILE) and wrap_socket(..., "
            "server_hostname=HOST); never set CERT_NONE or check_hostname = False.",
        )


Refuse = Callable[[str, str], None]


@pytest.fixture
def refuse(
    grading: GradingContext,
    student: Launcher,
    pki: GraderPKI,
    payload: tuple[bytes, ...],
    good: Shared[Run],
    evidence: harness.EvidenceRecorder,
) -> Refuse:
    """refuse(variant, lie): run the refusal check against that lying server."""

    def run(variant: str, lie: str) -> None:
        refusal(grading, student, pki, payload, good, variant, lie, evidence)

    return run
