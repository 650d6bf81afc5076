"""Checks for `tunnel`: real stunnel4 and nginx, started with the student's configuration.

The grader runs the plaintext programs (an echo server, a small web app) that must not be
changed, writes a certificate for the host from its own CA into the folder (server.crt,
server.key), starts the real program on the student's configuration, and talks to it as a
verifying client. One capture shows both hops: TLS on the public port, plaintext only on the
loopback hop behind the proxy. The stunnel and nginx checks are independent of each other.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

import harness
from harness import GraderPKI, GradingContext, Launcher, Shared, check, fail

WRAPPER = ".wiregrade-nginx-main.conf"


def cfg(ctx: GradingContext) -> dict[str, object]:
    return ctx.assignment.settings["tunnel"]


def port(ctx: GradingContext, name: str) -> int:
    return int(cfg(ctx)[name])  # type: ignore[call-overload]


# --- the plaintext programs the grader runs -------------------------------------------------


@dataclass
class EchoBackend:
    """A plaintext line echo server: the code stunnel must protect without changing it."""

    port: int
    lines: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as f:
            try:
                for line in f:
                    self.lines.append(line)
                    conn.sendall(b"echo: " + line)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


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


@pytest.fixture(scope="module")
def token() -> str:
    return secrets.token_hex(8)


@pytest.fixture(scope="module")
def backends(grading: GradingContext, pki: GraderPKI, token: str) -> Iterator[tuple[EchoBackend, AppBackend]]:
    """The plaintext programs, at the handout's ports (behind a recording relay if the wire
    backend is a relay, so the plaintext hop is seen either way), and the certificate."""
    cert = pki.certs["good"]
    cert.cert_chain_pems[0].write_to_path(str(grading.submission / "server.crt"))
    cert.private_key_pem.write_to_path(str(grading.submission / "server.key"))
    os.chmod(grading.submission / "server.key", 0o600)
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


# --- stunnel -------------------------------------------------------------------------------


def start_stunnel(ctx: GradingContext, launcher: Launcher) -> harness.StudentProcess:
    exe = shutil.which("stunnel4") or shutil.which("stunnel")
    if exe is None:
        raise harness.HarnessError("stunnel is not installed (Debian: apt-get install stunnel4)")
    conf = str(cfg(ctx)["stunnel_config"])
    if not (ctx.submission / conf).is_file():
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
    hop = ctx.wire.connections(port(ctx, "echo_port"), since)
    return EchoTrip(handshake_ok, ok, detail, public, hop)


@pytest.fixture(scope="module")
def stunnel_trip(
    grading: GradingContext, pki: GraderPKI, backends: tuple[EchoBackend, AppBackend], token: str
) -> Shared[EchoTrip]:
    def run() -> EchoTrip:
        with grading.launcher() as launcher:
            start_stunnel(grading, launcher)
            return echo_trip(grading, pki, backends[0], f"secret {token}".encode())

    return Shared(run, owner="stunnel starts with your configuration")


@check(
    title="stunnel starts with your configuration",
    points=2,
    expected="stunnel4 accepts stunnel.conf and listens on port 8443.",
)
def test_stunnel_starts(stunnel_trip: Shared[EchoTrip]) -> None:
    stunnel_trip.get(owner=True)


@check(
    title="Through stunnel, a verifying TLS client reaches the echo server",
    points=3,
    expected="A client that verifies the certificate for horiem.ca sends a line to 8443 and gets the echo.",
    hint="Server mode (no `client = yes`), accept = 8443, connect = the echo server's port 9000, "
    "cert = server.crt, key = server.key.",
)
def test_stunnel_tls(stunnel_trip: Shared[EchoTrip], backends: tuple[EchoBackend, AppBackend]) -> None:
    t = stunnel_trip.get()
    if not t.ok:
        raise fail(
            f"The round trip through stunnel failed: {t.detail}; the echo server received "
            f"{len(backends[0].lines)} line(s)."
        )


@check(
    title="On the wire: TLS on 8443, plaintext only on the loopback hop",
    points=3,
    expected="The public connection never shows the message; the hop from stunnel to the echo server "
    "does (that is the point of the tunnel: the code behind it is unchanged).",
)
def test_stunnel_wire(stunnel_trip: Shared[EchoTrip], token: str, evidence: harness.EvidenceRecorder) -> None:
    t = stunnel_trip.get()
    if not t.handshake_ok or t.public is None:  # no vacuous pass: the message must have been sent
        raise fail(
            "No verifying TLS session could be made with stunnel, so no message travelled to judge "
            f"({t.detail}; see the round-trip check)."
        )
    secret = token.encode()
    public = t.public.client_stream + t.public.server_stream
    hop = b"".join(c.client_stream + c.server_stream for c in t.hidden_hop)
    evidence.text(
        "Public port 8443 (what an eavesdropper on the network sees)", harness.printable(public[:600])
    )
    evidence.text("Loopback hop stunnel -> echo server (inside the machine)", harness.printable(hop[:600]))
    if secret in public:
        raise fail("The message travels in clear on the public port 8443.")
    for side, data in (("the client", t.public.client_stream), ("stunnel", t.public.server_stream)):
        if (why := harness.not_tls_records(data)) is not None:
            raise fail(f"On the public port, what {side} sent is not only TLS records: {why}.")
    if t.ok and secret not in hop:
        raise harness.HarnessError("the echo worked but the loopback hop was not seen on the wire")


@check(
    title="stunnel survives a plaintext client and serves the next",
    points=1,
    visibility="hidden",
    expected="After a client that sends plain text to 8443, a TLS client still gets its echo.",
)
def test_stunnel_junk(
    grading: GradingContext,
    student: Launcher,
    pki: GraderPKI,
    backends: tuple[EchoBackend, AppBackend],
    stunnel_trip: Shared[EchoTrip],
) -> None:
    if not stunnel_trip.get().ok:
        raise fail("stunnel does not carry a normal session (see the round-trip check).")
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
)
def test_stunnel_old_tls(
    grading: GradingContext, student: Launcher, pki: GraderPKI, stunnel_trip: Shared[EchoTrip]
) -> None:
    if not stunnel_trip.get().handshake_ok:  # refusing everything is not refusing old TLS
        raise fail("stunnel completes no modern TLS handshake (see the round-trip check).")
    start_stunnel(grading, student)
    s = harness.tls_session(
        grading.wire.address_for(port(grading, "stunnel_port")),
        verifying(grading, pki, legacy=True),
        server_hostname=grading.assignment.host,
    )
    if s.handshake_ok:
        raise fail(f"stunnel accepted a {s.version} handshake.")


# --- nginx ---------------------------------------------------------------------------------


def start_nginx(ctx: GradingContext, launcher: Launcher) -> harness.StudentProcess:
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if exe is None:
        raise harness.HarnessError("nginx is not installed (Debian: apt-get install nginx-light)")
    conf = str(cfg(ctx)["nginx_config"])
    if not (ctx.submission / conf).is_file():
        raise fail(f"There is no {conf} in your submission.")
    tmp = ctx.submission / ".nginx-tmp"
    tmp.mkdir(exist_ok=True)
    temp_paths = "\n".join(
        f"    {k}_temp_path {tmp}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (ctx.submission / WRAPPER).write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"daemon off;\nworker_processes 1;\npid {tmp}/nginx.pid;\nerror_log stderr notice;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n    access_log off;\n{temp_paths}\n    include {ctx.submission / conf};\n}}\n"
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
    reply: harness._tls.HTTPReply | None
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
    return WebTrip(reply, "", public, ctx.wire.connections(port(ctx, "app_port"), since))


@pytest.fixture(scope="module")
def nginx_trip(
    grading: GradingContext, pki: GraderPKI, backends: tuple[EchoBackend, AppBackend]
) -> Shared[WebTrip]:
    def run() -> WebTrip:
        with grading.launcher() as launcher:
            start_nginx(grading, launcher)
            return https_trip(grading, pki, "/hello")

    return Shared(run, owner="nginx starts with your configuration")


def require_tls(t: WebTrip) -> harness._tls.HTTPReply:
    """A reply means a verifying TLS handshake worked and the request travelled in it."""
    if t.reply is None:
        raise fail(f"No verifying HTTPS request could be made to nginx ({t.error}; see the HTTPS check).")
    return t.reply


def require_page(t: WebTrip, token: str) -> harness._tls.HTTPReply:
    if t.reply is None or t.reply.status != 200 or token.encode() not in t.reply.body:
        raise fail("nginx does not pass a normal HTTPS request to the app (see the HTTPS check).")
    return t.reply


@check(
    title="nginx starts with your configuration",
    points=2,
    expected="nginx accepts nginx.conf (inside an http { } block) and listens on port 9443.",
)
def test_nginx_starts(nginx_trip: Shared[WebTrip]) -> None:
    nginx_trip.get(owner=True)


@check(
    title="Through nginx, a verifying HTTPS client gets the app's page",
    points=3,
    expected="GET https://horiem.ca:9443/hello returns the app's answer (200).",
    hint="listen 9443 ssl; ssl_certificate server.crt; ssl_certificate_key server.key; "
    "location / { proxy_pass http://127.0.0.1:8000; }",
)
def test_nginx_https(nginx_trip: Shared[WebTrip], token: str) -> None:
    t = nginx_trip.get()
    if t.reply is None:
        raise fail(f"No HTTPS answer: {t.error}.")
    if t.reply.status != 200 or token.encode() not in t.reply.body:
        raise fail(
            f"nginx answered {t.reply.status} with {t.reply.body[:200]!r}, not the app's page.",
            hint="A 502 means nginx could not talk to the app: it speaks plain HTTP on port 8000.",
        )


@check(
    title="On the wire: TLS on 9443, plain HTTP only on the loopback hop",
    points=2,
    expected="The public connection shows no HTTP in clear; the hop from nginx to the app does.",
)
def test_nginx_wire(nginx_trip: Shared[WebTrip], token: str, evidence: harness.EvidenceRecorder) -> None:
    t = nginx_trip.get()
    reply = require_tls(t)  # the request travelled over TLS: the public hop can be judged
    assert t.public is not None
    public = t.public.client_stream + t.public.server_stream
    hop = b"".join(c.client_stream + c.server_stream for c in t.hop)
    evidence.text(
        "Public port 9443 (what an eavesdropper on the network sees)", harness.printable(public[:600])
    )
    evidence.text("Loopback hop nginx -> app (inside the machine)", harness.printable(hop[:600]))
    if b"GET /hello" in public or token.encode() in public:
        raise fail("HTTP travels in clear on the public port 9443.")
    if token.encode() in reply.body and token.encode() not in hop:
        raise harness.HarnessError("the page came back but the loopback hop was not seen on the wire")


@check(
    title="Plain HTTP is redirected to HTTPS",
    points=2,
    expected="GET http://horiem.ca:9080/some/path answers 301 or 308 with Location "
    "https://horiem.ca:9443/some/path.",
    hint="A second server block: listen 9080; return 301 https://$host:9443$request_uri;",
)
def test_nginx_redirect(grading: GradingContext, student: Launcher, nginx_trip: Shared[WebTrip]) -> None:
    nginx_trip.get()  # nginx must start; the redirect does not depend on the app
    start_nginx(grading, student)
    host = grading.assignment.host
    try:
        r = harness.http_get(
            grading.wire.address_for(port(grading, "http_port")), host, "/some/path?x=1", None
        )
    except (OSError, Exception) as exc:
        raise fail(f"Nothing answered plain HTTP on port {port(grading, 'http_port')}: {exc}.") from None
    want = f"https://{host}:{port(grading, 'https_port')}/some/path?x=1"
    if r.status not in (301, 308) or r.headers.get("location") != want:
        raise fail(
            f"Plain HTTP answered {r.status} with Location {r.headers.get('location')!r}.",
            expected=f"301 or 308 to {want}",
        )


@check(
    title="HTTPS answers carry Strict-Transport-Security",
    points=2,
    expected="A Strict-Transport-Security header with a max-age of at least a day.",
    hint='add_header Strict-Transport-Security "max-age=31536000" always;',
)
def test_nginx_hsts(nginx_trip: Shared[WebTrip]) -> None:
    reply = require_tls(nginx_trip.get())
    value = reply.headers.get("strict-transport-security", "")
    age = next(
        (
            int(p.split("=", 1)[1])
            for p in value.replace(" ", "").split(";")
            if p.lower().startswith("max-age=") and p.split("=", 1)[1].isdigit()
        ),
        0,
    )
    if age < 86400:
        raise fail(f"Strict-Transport-Security is {value or 'absent'!r}.")


@check(
    title="The app is told the client's address and scheme",
    points=2,
    expected="The app receives X-Forwarded-For (the client's address) and X-Forwarded-Proto: https.",
    hint="proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; "
    "proxy_set_header X-Forwarded-Proto $scheme;",
)
def test_nginx_forwarded(
    nginx_trip: Shared[WebTrip], backends: tuple[EchoBackend, AppBackend], token: str
) -> None:
    require_page(nginx_trip.get(), token)
    headers = backends[1].seen[0] if backends[1].seen else {}
    problems = []
    if "127.0.0.1" not in headers.get("x-forwarded-for", ""):
        problems.append(f"X-Forwarded-For is {headers.get('x-forwarded-for')!r}")
    if headers.get("x-forwarded-proto") != "https":
        problems.append(f"X-Forwarded-Proto is {headers.get('x-forwarded-proto')!r}")
    if problems:
        raise fail("The app received: " + "; ".join(problems) + ".")


@check(
    title="nginx refuses TLS 1.0 and 1.1",
    points=2,
    visibility="hidden",
    expected="A client offering only TLS 1.0/1.1 is refused.",
    hint="ssl_protocols TLSv1.2 TLSv1.3;",
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
