"""Shared by the public and hidden checks of `tunnel`: helpers and fixtures (no check lives here)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import harness
from harness import GraderPKI, GradingContext, Launcher, Shared, fail

WRAPPER = ".wiregrade-nginx-main.conf"


def cfg(ctx: GradingContext) -> dict[str, object]:
    return ctx.assignment.settings["tunnel"]


def port(ctx: GradingContext, name: str) -> int:
    return int(cfg(ctx)[name])  # type: ignore[call-overload]


EchoBackend = harness.EchoServer  # the plaintext line echo server stunnel must protect, unchanged


@dataclass
class AppBackend:
    """A plaintext HTTP app behind nginx; it records the headers of each request."""

    port: int
    token: str
    seen: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        import http.server

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                outer.seen.append({k.lower(): v for k, v in self.headers.items()})
                body = f"app page {self.path} {outer.token}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def token() -> str:
    return secrets.token_hex(8)


@pytest.fixture(scope="session")
def backends(grading: GradingContext, pki: GraderPKI, token: str) -> Iterator[tuple[EchoBackend, AppBackend]]:
    """The plaintext programs, at the handout's ports (behind a recording relay if the wire
    backend is a relay, so the plaintext hop is seen either way), and the certificate."""
    cert = pki.certs["good"]
    grading.give("server.crt", cert.cert_chain_pems[0].bytes(), 0o444)
    grading.give("server.key", cert.private_key_pem.bytes(), 0o400)  # stunnel and nginx run as the student
    relayed = grading.wire.info.backend == "relay"
    echo = EchoBackend(0 if relayed else port(grading, "echo_port"))
    app = AppBackend(0 if relayed else port(grading, "app_port"), token)
    if relayed:
        grading.wire.serve_at(port(grading, "echo_port"), echo.port)
        grading.wire.serve_at(port(grading, "app_port"), app.port)
    yield echo, app
    echo.close()
    app.close()


def verifying(ctx: GradingContext, pki: GraderPKI, legacy: bool = False) -> ssl.SSLContext:
    c = harness.client_context(
        trust_pem=pki.ca.cert_pem.bytes().decode(), hostname_check=True, keylog=ctx.keylog, legacy_only=legacy
    )
    return c


def program_error(
    proc: harness.StudentProcess, name: str, port_: int, exc: harness.CheckFailed
) -> harness.CheckFailed:
    """The program's own words when it refuses the configuration."""
    return harness.CheckFailed(
        f"{name} did not start listening on port {port_}: {proc.describe_exit()}.\n"
        f"What {name} said:\n{proc.output_tail(12)}",
        expected=f"{name} accepts your configuration and listens on port {port_}",
        hint=f"Run {name} yourself on your file and read its first error line.",
    )


def start_stunnel(ctx: GradingContext, launcher: Launcher) -> harness.StudentProcess:
    exe = shutil.which("stunnel4") or shutil.which("stunnel")
    if exe is None:
        raise harness.HarnessError("stunnel is not installed (Debian: apt-get install stunnel4)")
    conf = str(cfg(ctx)["stunnel_config"])
    if ctx.stat_made(conf) is None:
        raise fail(f"There is no {conf} in your submission.")
    proc = launcher.start_system([exe, conf], f"stunnel {conf}")
    try:
        proc.wait_listening(port(ctx, "stunnel_port"), ctx.assignment.ready_seconds)
    except harness.CheckFailed as exc:
        raise program_error(proc, "stunnel", port(ctx, "stunnel_port"), exc) from None
    return proc


@dataclass
class EchoTrip:
    handshake_ok: bool  # a verifying TLS handshake completed on the public port
    ok: bool  # ... and the echo came back
    detail: str
    public: harness.Connection | None
    hidden_hop: list[harness.Connection]


def echo_trip(ctx: GradingContext, pki: GraderPKI, echo: EchoBackend, message: bytes) -> EchoTrip:
    since = ctx.wire.mark()
    addr = ctx.wire.address_for(port(ctx, "stunnel_port"))
    try:
        with socket.create_connection(addr, timeout=5) as raw:
            client_port = raw.getsockname()[1]
            handshake_ok = False
            answer = b""
            try:
                with verifying(ctx, pki).wrap_socket(raw, server_hostname=ctx.assignment.host) as tls:
                    handshake_ok = True  # verified: the public port speaks modern TLS
                    tls.sendall(message + b"\n")
                    tls.settimeout(3)
                    while not answer.endswith(b"\n"):
                        chunk = tls.recv(4096)
                        if not chunk:
                            break
                        answer += chunk
                detail = f"the answer was {answer[:120]!r}"
            except (OSError, ssl.SSLError) as exc:
                detail = f"{type(exc).__name__}: {exc}"
    except OSError as exc:
        return EchoTrip(False, False, f"no connection to the public port: {exc}", None, [])
    ok = answer == b"echo: " + message + b"\n"
    public = ctx.wire.connection(client_port, port(ctx, "stunnel_port"))
    # The exchange is over: whatever stunnel sent the echo server for it was sent before now.
    hop = ctx.wire.carried(port(ctx, "echo_port"), since)
    return EchoTrip(handshake_ok, ok, detail, public, hop)


@pytest.fixture(scope="session")
def stunnel_trip(
    grading: GradingContext, pki: GraderPKI, backends: tuple[EchoBackend, AppBackend], token: str
) -> Shared[EchoTrip]:
    def run() -> EchoTrip:
        with grading.launcher() as launcher:
            start_stunnel(grading, launcher)
            return echo_trip(grading, pki, backends[0], f"secret {token}".encode())

    return Shared(run, owner="stunnel starts with your configuration")


def start_nginx(ctx: GradingContext, launcher: Launcher) -> harness.StudentProcess:
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if exe is None:
        raise harness.HarnessError("nginx is not installed (Debian: apt-get install nginx-light)")
    conf = str(cfg(ctx)["nginx_config"])
    if ctx.stat_made(conf) is None:
        raise fail(f"There is no {conf} in your submission.")
    # nginx's own files go to the sandbox's private /tmp (else a folder of the session's own)
    tmp = Path("/tmp") if ctx.sandbox is not None else ctx.workdir / "nginx-tmp"
    if ctx.sandbox is None:
        tmp = ctx.scratch("nginx-tmp")
    temp_paths = "\n".join(
        f"    {k}_temp_path {tmp}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    as_root = os.geteuid() == 0 and (ctx.student_user is None or ctx.student_user.uid < 0)
    ctx.give(
        WRAPPER,
        (
            ("user root;\n" if as_root else "")
            + f"daemon off;\nworker_processes 1;\npid {tmp}/nginx.pid;\nerror_log stderr notice;\n"
            "events { worker_connections 64; }\n"
            f"http {{\n    access_log off;\n{temp_paths}\n    include {ctx.submission / conf};\n}}\n"
        ).encode(),
        0o444,
    )
    proc = launcher.start_system(
        [exe, "-p", str(ctx.submission), "-c", str(ctx.submission / WRAPPER), "-e", "stderr"],
        f"nginx with {conf}",
    )
    try:
        proc.wait_listening(port(ctx, "https_port"), ctx.assignment.ready_seconds)
    except harness.CheckFailed as exc:
        raise program_error(proc, "nginx", port(ctx, "https_port"), exc) from None
    return proc


@dataclass
class WebTrip:
    reply: harness.HTTPReply | None
    error: str
    public: harness.Connection | None
    hop: list[harness.Connection]


def https_trip(ctx: GradingContext, pki: GraderPKI, path: str) -> WebTrip:
    since = ctx.wire.mark()
    try:
        reply = harness.http_get(
            ctx.wire.address_for(port(ctx, "https_port")), ctx.assignment.host, path, verifying(ctx, pki)
        )
    except (OSError, ssl.SSLError, Exception) as exc:  # http.client raises its own kinds too
        return WebTrip(None, f"{type(exc).__name__}: {exc}", None, [])
    public = ctx.wire.connection(reply.client_port, port(ctx, "https_port"))
    # The request is answered, so what nginx sent the app for it is on the wire already; nginx
    # may keep its connection to the app open (an upstream keep-alive pool): read it as it is.
    return WebTrip(reply, "", public, ctx.wire.carried(port(ctx, "app_port"), since))


@pytest.fixture(scope="session")
def nginx_trip(
    grading: GradingContext, pki: GraderPKI, backends: tuple[EchoBackend, AppBackend]
) -> Shared[WebTrip]:
    def run() -> WebTrip:
        with grading.launcher() as launcher:
            start_nginx(grading, launcher)
            return https_trip(grading, pki, "/hello")

    return Shared(run, owner="nginx starts with your configuration")


def require_tls(t: WebTrip) -> harness.HTTPReply:
    """A reply means a verifying TLS handshake worked and the request travelled in it."""
    if t.reply is None:
        raise harness.Blocked(
            f"No verifying HTTPS request could be made to nginx ({t.error}; see the HTTPS check)."
        )
    return t.reply


def require_page(t: WebTrip, token: str) -> harness.HTTPReply:
    if t.reply is None or t.reply.status != 200 or token.encode() not in t.reply.body:
        raise harness.Blocked("nginx does not pass a normal HTTPS request to the app (see the HTTPS check).")
    return t.reply


HTTP_REQUEST = re.compile(rb"^[A-Z]+ /\S* HTTP/1\.[01]\r?$", re.M)


def hop_carried(data: bytes, name: str) -> str:
    """What a loopback hop carried towards the plaintext program, when it was not the message."""
    if not data:
        return f"nothing reached the {name} on that hop"
    if data[:1] == b"\x16" and harness.not_tls_records(data) is None:
        return (
            f"the hop carried TLS (a ClientHello), not the message: the proxy spoke TLS to the {name}, "
            "which speaks plaintext"
        )
    return f"the hop carried {len(data)} byte(s), not the message: {harness.printable(data[:80])!r}"
