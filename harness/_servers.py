"""The grader's own servers, honest and adversarial, for grading students' clients.

A client that skips verification "works" against a good server; only a server that lies to
it can tell. :class:`GraderPKI` makes, per session, a CA the student is told to trust and the
certificates of every lie: another CA, another host name, expired, not yet valid. Nothing is
committed; everything lives in memory and in the session's folder.

:class:`TLSTestServer` serves one variant on loopback in a thread, writes the grader's key
log (so tshark can decrypt TLS 1.3 as seen from our end) and records what each client did.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trustme

from ._listeners import socket_owner

VARIANTS = ("good", "untrusted", "wrong-host", "expired", "not-yet-valid", "old-tls")


class GraderPKI:
    """Certificates for one grading session."""

    def __init__(self, host: str, folder: Path) -> None:
        self.host = host
        self.ca = trustme.CA(organization_name="wiregrade test CA")
        self.evil_ca = trustme.CA(organization_name="Not the CA you were given")
        now = dt.datetime.now(dt.timezone.utc)
        self.certs: dict[str, trustme.LeafCert] = {
            "good": self.ca.issue_cert(host),
            "untrusted": self.evil_ca.issue_cert(host),
            "wrong-host": self.ca.issue_cert("not-" + host),
            "expired": self.ca.issue_cert(
                host, not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1)
            ),
            "not-yet-valid": self.ca.issue_cert(
                host, not_before=now + dt.timedelta(days=1), not_after=now + dt.timedelta(days=365)
            ),
        }
        self.certs["old-tls"] = self.certs["good"]
        self.ca_file = folder / "ca.crt"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def server_context(self, variant: str, keylog: Path | None) -> ssl.SSLContext:
        if variant not in VARIANTS:
            raise ValueError(f"unknown server variant {variant!r}")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.certs[variant].configure_cert(ctx)
        ctx.num_tickets = 0  # no session tickets: a client that closes at once causes no errors
        if variant == "old-tls":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.minimum_version = ssl.TLSVersion.TLSv1
                ctx.maximum_version = ssl.TLSVersion.TLSv1_1
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        if keylog is not None:
            ctx.keylog_filename = str(keylog)
        return ctx


@dataclass
class ClientVisit:
    """What one client connection did, seen from the grader's server."""

    client_port: int
    sni: str | None = None
    handshake_ok: bool = False
    handshake_error: str = ""
    version: str = ""
    received: bytes = b""
    client_close_notify: bool = False  # the client answered our close_notify with its own
    error: str = ""


@dataclass
class TLSTestServer:
    """Serves one variant: handshake, then ``respond`` (by default: send ``payload`` in several
    records and end with close_notify, waiting briefly for the client's)."""

    pki: GraderPKI
    variant: str
    keylog: Path | None = None
    payload: tuple[bytes, ...] = ()
    respond: Callable[[ssl.SSLSocket, ClientVisit], None] | None = None
    visits: list[ClientVisit] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ctx = self.pki.server_context(self.variant, self.keylog)
        self.ctx.sni_callback = self._sni
        self._by_obj: dict[int, ClientVisit] = {}
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._finished = 0
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _sni(self, sslobj: ssl.SSLObject | ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext) -> None:
        visit = self._by_obj.get(id(sslobj))
        if visit is not None:
            visit.sni = name
        return None

    def _accept_loop(self) -> None:
        while True:
            try:
                raw, addr = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw, addr[1]), daemon=True).start()

    def _serve(self, raw: socket.socket, port: int) -> None:
        visit = ClientVisit(port)
        with self._lock:
            self.visits.append(visit)
        raw.settimeout(10)
        try:
            tls = self.ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            self._by_obj[id(tls)] = visit
            try:
                tls.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                visit.handshake_error = str(exc)
                return
            visit.handshake_ok = True
            visit.version = tls.version() or ""
            (self.respond or self._send_payload)(tls, visit)
        except (ssl.SSLError, OSError) as exc:
            visit.error = str(exc)
        finally:
            raw.close()
            with self._lock:
                self._finished += 1
                self._done.notify_all()

    def _send_payload(self, tls: ssl.SSLSocket, visit: ClientVisit) -> None:
        for chunk in self.payload:
            tls.sendall(chunk)  # one TLS record (or more) per chunk
        try:
            tls.settimeout(3)
            tls.unwrap()  # our close_notify; returns once the client's arrives
            visit.client_close_notify = True
        except (ssl.SSLError, OSError) as exc:
            visit.error = f"no close_notify from the client: {exc}"

    def wait_finished(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` connections have been served to the end."""
        deadline = time.monotonic() + timeout
        with self._done:
            while self._finished < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._done.wait(left)
            return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> TLSTestServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HTTPSTestServer:
    """An HTTPS server for one variant, with a few routes, recording each request it answers.

    Routes: ``/hello`` (200, text), ``/old`` (301 to /hello), anything else 404 with a body.
    A request recorded here means the client completed the handshake and sent it: for a
    lying variant, that is the proof the client did not verify.
    """

    def __init__(self, pki: GraderPKI, variant: str, keylog: Path | None, token: str) -> None:
        import http.server

        self.requests: list[str] = []
        self.token = token
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                outer.requests.append(self.path)
                if self.path == "/hello":
                    self._send(200, f"Hello from the grader, {outer.token}\n", {"X-Token": outer.token})
                elif self.path == "/old":
                    self._send(301, "moved\n", {"Location": "/hello"})
                else:
                    self._send(404, f"Nothing at {self.path} ({outer.token})\n", {})

            def _send(self, status: int, body: str, headers: dict[str, str]) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a refused handshake is the expected outcome, not an error to print

        self.httpd = Server(("127.0.0.1", 0), Handler)
        ctx = pki.server_context(variant, keylog)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> HTTPSTestServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class EchoServer:
    """The lecture's plaintext line echo server, the unmodified code a student's tunnel must
    protect: it answers each line with ``echo: <line>`` and keeps what it received, and by whom
    (``by_owner``: the uid the kernel says opened each connection, -1 where it cannot say)."""

    port: int  # 0: any free port (then the one it got)
    lines: list[bytes] = field(default_factory=list)
    by_owner: dict[int, list[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            owner = socket_owner(peer[0], peer[1], self.port)  # while it is connected
            args = (conn, -1 if owner is None else owner)
            threading.Thread(target=self._echo, args=args, daemon=True).start()

    def _echo(self, conn: socket.socket, owner: int) -> None:
        with conn, conn.makefile("rb") as f:
            try:
                for line in f:
                    self.lines.append(line)
                    self.by_owner.setdefault(owner, []).append(line)
                    conn.sendall(b"echo: " + line)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
