"""Shared by the public and hidden checks of `ssh-tunnel`: helpers and fixtures (no check lives here).

One run ("the trip") serves most checks: the grader starts a real sshd as horiem.ca:2222 (a
per-run host key certified by the course's host CA), the plaintext echo server behind it, then
the student's tunnel.sh (sandboxed, as the student's uid) with a per-run key pair in the folder.
Once the tunnel listens on 127.0.0.1:7000 the grader sends a line through it, reads where the
forward listens, asks the tunnel to end (SIGTERM) and keeps sshd's log. A second run puts an
impostor sshd (a fresh host key nobody certified) where the server was.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import harness
from harness import GradingContext, Shared, SSHKeyPair, SSHLog, SSHServer, fail

# The course's host CA (its public half is the handout's host_ca.pub). Not a secret, and kept
# in this file so that every copy of the grader (student bundle, Gradescope) carries it: it
# certifies only the host keys of the sshd this grader starts itself, so holding it gains a
# student's client nothing.
HOST_CA = b"""\
-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACCNrOeR1lwRzYSVa2NN2h4GCXWsPxgpu6O22D93Ets2uwAAAMDJzgB6yc4A
egAAAAtzc2gtZWQyNTUxOQAAACCNrOeR1lwRzYSVa2NN2h4GCXWsPxgpu6O22D93Ets2uw
AAAEDttAAdANK3VOW4BdjYH0zA/YRYuyCCkFkv/TKD6hzAyo2s55HWXBHNhJVrY03aHgYJ
daw/GCm7o7bYP3cS2za7AAAAPHdpcmVncmFkZSBjb3Vyc2UgaG9zdCBDQSAoc3NoLXR1bm
5lbCBleGVyY2lzZTsgbm90IGEgc2VjcmV0KQE=
-----END OPENSSH PRIVATE KEY-----
"""

ROUND_TRIP = "Through your tunnel, the echo server answers"


def cfg(ctx: GradingContext) -> dict[str, object]:
    return ctx.assignment.settings["ssh"]


def setting(ctx: GradingContext, name: str) -> str:
    return str(cfg(ctx)[name])


def port(ctx: GradingContext, name: str) -> int:
    return int(cfg(ctx)[name])  # type: ignore[call-overload]


EchoBackend = harness.EchoServer  # the plaintext line echo server the tunnel must protect, unchanged


@pytest.fixture(scope="session")
def token() -> str:
    return secrets.token_hex(8)


@pytest.fixture(scope="session")
def echo(grading: GradingContext) -> Iterator[EchoBackend]:
    """The echo server at the handout's port (behind a recording relay if the wire is one)."""
    relayed = grading.wire.info.backend == "relay"
    backend = EchoBackend(0 if relayed else port(grading, "echo_port"))
    if relayed:
        grading.wire.serve_at(port(grading, "echo_port"), backend.port)
    yield backend
    backend.close()


@dataclass(frozen=True)
class Keys:
    student: SSHKeyPair
    login: harness.Account  # the account sshd runs as, and the login name of the handout


@pytest.fixture(scope="session")
def keys(grading: GradingContext) -> Keys:
    """The student's per-run key pair, in their folder; the session's users known to OpenSSH.

    Anything that stops sshd from running here is ours (HarnessError): every check is an ERROR."""
    why = harness.sshd_unavailable(grading.sandbox)
    if why:
        raise harness.HarnessError(why)
    student_key = SSHKeyPair.generate("student@wiregrade")
    login = harness.server_account(setting(grading, "user"), grading.workdir / "sshd")
    # the student's account first: where both are one uid (an ordinary user's self-check),
    # ssh finds the student's name and home for it, sshd the login name
    student = harness.student_account("wiregrade-student", grading.submission, grading.student_user)
    harness.add_accounts([a for a in (student, login) if a is not None], grading.workdir)
    key = setting(grading, "key")
    grading.give(key, student_key.private, 0o400)
    grading.give(key + ".pub", student_key.public.encode() + b"\n", 0o444)
    return Keys(student_key, login)


def server(ctx: GradingContext, keys: Keys, impostor: bool = False) -> SSHServer:
    """The course's server (its host key certified by the host CA), or an impostor with a fresh
    bare host key, at the handout's port (behind a relay if the wire is one)."""
    host_key = SSHKeyPair.generate("impostor" if impostor else "horiem.ca")
    cert = "" if impostor else harness.host_certificate(HOST_CA, host_key, [ctx.assignment.host])
    listen = sshd_port(ctx)
    echo_port = port(ctx, "echo_port")
    srv = SSHServer(
        Path(keys.login.home) / ("impostor" if impostor else "course"),
        keys.login,
        listen,
        host_key,
        keys.student.public,
        [f"localhost:{echo_port}", f"127.0.0.1:{echo_port}"],
        host_cert=cert,
        sandbox=ctx.sandbox,
    )
    return srv


_BEHIND_RELAY: dict[int, int] = {}


def sshd_port(ctx: GradingContext) -> int:
    """Where sshd listens: the handout's port, or (the wire being a relay) a port of its own
    behind a recording relay on the handout's port, the same for every run of the session."""
    if ctx.wire.info.backend != "relay":
        return port(ctx, "ssh_port")
    if id(ctx) not in _BEHIND_RELAY:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            _BEHIND_RELAY[id(ctx)] = s.getsockname()[1]
        ctx.wire.serve_at(port(ctx, "ssh_port"), _BEHIND_RELAY[id(ctx)])
    return _BEHIND_RELAY[id(ctx)]


@dataclass
class Trip:
    failure: harness.CheckFailed | None  # why the tunnel never listened (None: it did)
    ok: bool  # the echo came back through the tunnel
    detail: str
    listening: list[str]  # where the forwarded port listened
    public: list[harness.Connection]  # the ssh connection(s) to 2222
    hop: list[harness.Connection]  # sshd -> echo server
    ending: harness.Ending | None
    log: SSHLog
    said: str  # the tunnel's own output

    @property
    def ready(self) -> bool:
        return self.failure is None


def first_host(config: bytes) -> str | None:
    """The first ``Host`` entry's first name that is not a pattern (``*``, ``?``, ``!``)."""
    for line in config.decode(errors="replace").splitlines():
        words = line.replace("=", " ").split()
        if len(words) >= 2 and words[0].lower() == "host":
            name = next((w for w in words[1:] if not set(w) & set("*?!")), None)
            if name is not None:
                return name
    return None


def start_tunnel(ctx: GradingContext, launcher: harness.Launcher) -> harness.StudentProcess:
    """tunnel.sh; without one, ``ssh -F ssh_config -N HOST`` on the first Host entry of ssh_config."""
    script, config = setting(ctx, "script"), setting(ctx, "config")
    if ctx.stat_made(script) is not None:
        return launcher.start(script)
    data = ctx.read_made(config, 64 << 10)
    host = first_host(data) if data is not None else None
    if host is None:
        raise fail(
            f"There is no {script} in your submission, and no {config} with a Host entry to run instead.",
            expected=f"{script} (it runs ssh), or an {config} whose first Host entry is the tunnel",
            hint="See the handout: tunnel.sh holds the `exec ssh -N -L ...` command.",
        )
    return launcher.start_system(["ssh", "-F", config, "-N", host], f"ssh -F {config} -N {host}")


def wait_ready(ctx: GradingContext, proc: harness.StudentProcess) -> harness.CheckFailed | None:
    try:
        proc.wait_listening(port(ctx, "local_port"), ctx.assignment.ready_seconds)
    except harness.CheckFailed as exc:
        return exc
    return None


def echo_through(ctx: GradingContext, message: bytes) -> tuple[bool, str]:
    """Send one line into the tunnel's local end; (the echo came back, what happened)."""
    try:
        with socket.create_connection(ctx.wire.address_for(port(ctx, "local_port")), timeout=5) as s:
            s.sendall(message + b"\n")
            s.settimeout(3)
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    want = b"echo: " + message + b"\n"
    if answer == want:
        return True, "the echo came back"
    if answer:
        return False, f"the answer was {answer[:120]!r}"
    return False, "the tunnel closed the connection unanswered"


def run_trip(ctx: GradingContext, keys: Keys, message: bytes) -> Trip:
    ok, detail, listening, ending, said = False, "", [], None, ""
    public: list[harness.Connection] = []
    hop: list[harness.Connection] = []
    with server(ctx, keys) as srv:
        since = ctx.wire.mark()
        with ctx.launcher() as launcher:
            proc = start_tunnel(ctx, launcher)
            failure = wait_ready(ctx, proc)
            if failure is None:
                listening = harness.listening_addresses(port(ctx, "local_port"), proc.pids())
                sent = ctx.wire.mark()
                ok, detail = echo_through(ctx, message)
                # the exchange is over: what crossed either hop for it is on the wire by now
                public = ctx.wire.carried(port(ctx, "ssh_port"), since)
                hop = ctx.wire.carried(port(ctx, "echo_port"), sent)
                ending = harness.ask_to_end(proc)
            said = proc.output_tail(12)
    return Trip(failure, ok, detail, listening, public, hop, ending, srv.seen(), said)


@pytest.fixture(scope="session")
def trip(grading: GradingContext, keys: Keys, echo: EchoBackend, token: str) -> Shared[Trip]:
    return Shared(lambda: run_trip(grading, keys, f"secret {token}".encode()), owner=ROUND_TRIP)


@dataclass
class ImpostorRun:
    opened: bool  # the tunnel listened with the impostor behind it
    log: SSHLog  # judged by this: did the client log in to the impostor
    said: str


def run_impostor(ctx: GradingContext, keys: Keys) -> ImpostorRun:
    with server(ctx, keys, impostor=True) as srv, ctx.launcher() as launcher:
        proc = start_tunnel(ctx, launcher)
        opened = wait_ready(ctx, proc) is None
        if opened:  # ssh listens once logged in; anything else listening may not have tried yet
            login = re.compile(r"(?m)^(Accepted \S+ for|Connection closed by|Disconnected from)")
            srv.log.wait_for(login, time.monotonic() + ctx.assignment.ready_seconds)
        said = proc.output_tail(8)
    return ImpostorRun(opened, srv.seen(), said)


def sshd_apart(ctx: GradingContext, keys: Keys) -> bool:
    """sshd runs as a uid no student process has, and the echo server accepts its connections
    itself (no relay between): the kernel can say who connected to it."""
    user = ctx.student_user
    relayed = ctx.wire.info.backend == "relay"
    return not relayed and user is not None and user.uid >= 0 and user.uid != keys.login.uid


def through_sshd(ctx: GradingContext, t: Trip, echo: EchoBackend, keys: Keys, secret: bytes) -> bool:
    """The line went through the tunnel, not around it: the connection that carried it to the
    echo server was opened by sshd (its uid, from the kernel's socket table: nothing the client
    says can fake it, where a client can put words into sshd's log). Where sshd and the student
    share a uid (an ordinary user's self-check) or a relay sits between, sshd's log says whether
    it opened a forward to the echo server."""
    if sshd_apart(ctx, keys):
        return any(secret in line for line in echo.by_owner.get(keys.login.uid, []))
    return any(p == port(ctx, "echo_port") for _, p in t.log.forwards)


def require_ready(t: Trip) -> None:
    if not t.ready:
        raise harness.Blocked(f"Your tunnel never listened on its local port (see '{ROUND_TRIP}').")


def sshd_view(log: SSHLog) -> str:
    """sshd's lines about logins and forwards, for the report."""
    keep = [
        ln
        for ln in log.text.splitlines()
        if re.match(r"(Accepted|Failed) \S+ for |Connection (from|closed)|Received disc|Disconnected", ln)
        or "but the request was denied" in ln
        or "Invalid user" in ln
    ]
    return "\n".join(keep[:40]) or "(sshd saw no login)"
