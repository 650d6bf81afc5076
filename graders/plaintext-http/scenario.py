"""The capture `plaintext-http` hands a student: web traffic made by the grader's own endpoints.

``make()`` is the one code path for the handout's practice capture (seed "practice", made by
``wiregrade capture``) and every student's capture (seeded from their identity). The truth
is what the grader's clients sent, built as the answer a correct program prints.

The public capture holds the lecture's story with per-student secrets: a search phrase in a
query string, a session cookie, a login form, and HTTPS connections whose content must not
be reported. The hidden capture holds the harder cases, one per connection, so one mistake
costs one check: a request split over three TCP segments, three requests on one keep-alive
connection, HTTP on a non-standard port, and percent-encoding with `+` for spaces.
"""

from __future__ import annotations

import contextlib
import random
import socket
import ssl
import string
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import trustme

from harness import HarnessError
from harness._capture import Scene, rng_for
from harness._wire import Wire

CLIENT = "127.0.0.2"
WORDS = [
    "kestrel",
    "osprey",
    "heron",
    "plover",
    "curlew",
    "dunlin",
    "merlin",
    "siskin",
    "linnet",
    "wren",
    "puffin",
    "gannet",
    "cedar",
    "alder",
    "rowan",
    "hazel",
    "willow",
    "aspen",
    "juniper",
    "larch",
    "spruce",
    "maple",
    "birch",
    "cypress",
]
SITES = ("shop", "news", "forum", "library", "recipes", "travel", "games", "weather")
TLDS = ("example", "test", "lan")
AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/13.1.2 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "curl/8.5.0",
)
# Ports Wireshark dissects as HTTP by default, and ones a student's filter might special-case.
KNOWN_HTTP_PORTS = {80, 443, 1900, 2710, 2869, 3128, 3132, 5985, 8000, 8008, 8080, 8088, 8443, 8888, 11371}


def token(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


@dataclass
class Request:
    """One request as the grader's client sends it, and the answer line it must produce."""

    method: str
    host: str
    path: str
    query: list[tuple[str, str]] = field(default_factory=list)
    raw_query: str | None = None  # sent as is (the encoding cases); else urlencode(query)
    cookies: list[tuple[str, str]] = field(default_factory=list)
    agent: str | None = None
    form: list[tuple[str, str]] = field(default_factory=list)
    keep_alive: bool = False

    def encode(self) -> bytes:
        qs = self.raw_query if self.raw_query is not None else urlencode(self.query)
        target = self.path + (f"?{qs}" if qs else "")
        lines = [f"{self.method} {target} HTTP/1.1", f"Host: {self.host}"]
        if self.agent:
            lines.append(f"User-Agent: {self.agent}")
        lines.append("Accept: text/html,application/xhtml+xml,*/*;q=0.8")
        if self.cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies))
        body = urlencode(self.form).encode() if self.method == "POST" else b""
        if self.method == "POST":
            lines += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
        lines.append("Connection: " + ("keep-alive" if self.keep_alive else "close"))
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def answer(self, client: str, server: str) -> dict[str, Any]:
        qs = self.raw_query if self.raw_query is not None else urlencode(self.query)
        return {
            "client": client,
            "server": server,
            "method": self.method,
            "host": self.host,
            "path": self.path,
            "query": parse_qs(qs, keep_blank_values=True),
            "cookies": dict(self.cookies),
            "user_agent": self.agent,
            "form": parse_qs(urlencode(self.form), keep_blank_values=True),
        }


# --- the grader's servers -------------------------------------------------------------------


def _read_request(f: Any) -> bool | None:
    """Reads one request (headers, then Content-Length bytes): None at end of stream, else
    whether the client asked to keep the connection open."""
    length, keep_alive = 0, True
    first = f.readline()
    if not first:
        return None
    while (line := f.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
        elif name.strip().lower() == "connection":
            keep_alive = value.strip().lower() != "close"
    f.read(length)
    return keep_alive


def _respond(conn: socket.socket | ssl.SSLSocket, keep_alive: bool) -> None:
    body = b"<html><body><p>OK</p></body></html>\n"
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    conn.sendall(head.encode() + body)


class WebServer:
    """Answers every request on every connection until the client closes (HTTP/1.1 keep-alive)."""

    def __init__(self, sock: socket.socket, tls: ssl.SSLContext | None = None) -> None:
        self.sock, self.tls = sock, tls
        self.address = sock.getsockname()
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            try:
                conn = self.tls.wrap_socket(raw, server_side=True) if self.tls else raw
                conn.settimeout(10)
                with conn, conn.makefile("rb") as f:
                    while (keep_alive := _read_request(f)) is not None:
                        _respond(conn, keep_alive)
                        if not keep_alive:
                            break  # "Connection: close": the server ends it, as real ones do
            except (OSError, ValueError) as exc:
                self.errors.append(str(exc))


def _exchange(
    scene: Scene,
    server: tuple[str, int],
    requests: list[Request],
    split: int = 1,
    tls: tuple[ssl.SSLContext, str] | None = None,
) -> None:
    """One client connection: each request (in ``split`` sends), then its whole response.

    A split request is cut inside its path first (so only a program that joins the segments
    reads the path right), then at random places after the request line."""
    sock: socket.socket = scene.connect(server, CLIENT)
    if tls:
        sock = tls[0].wrap_socket(sock, server_hostname=tls[1])
    with sock, sock.makefile("rb") as f:
        for r in requests:
            data = r.encode()
            cuts = []
            if split > 1:
                in_path = data.index(b" /") + 4
                after = data.index(b"\r\n") + 2
                cuts = [in_path, *sorted(scene.rng.sample(range(after, len(data) - 4), split - 2))]
            for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
                sock.sendall(data[a:b])
                if split > 1:
                    _wait_acked(sock)
            _read_response(f)
        if tls and isinstance(sock, ssl.SSLSocket):
            with contextlib.suppress(OSError, ssl.SSLError):
                sock.unwrap()


def _wait_acked(sock: socket.socket) -> None:
    """Until the kernel has nothing unacknowledged for this socket: the next send is a new segment."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        unacked = struct.unpack_from("I", info, 24)[0]  # tcpi_unacked
        if unacked == 0:
            return
        time.sleep(0.001)
    raise HarnessError("a split request's segment was never acknowledged on loopback")


def _read_response(f: Any) -> None:
    length = 0
    status = f.readline()
    if not status.startswith(b"HTTP/1.1 200"):
        raise HarnessError(f"the grader's web server answered {status[:60]!r}")
    while (line := f.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    f.read(length)


# --- the captures ---------------------------------------------------------------------------


def _addr(sock_or_addr: Any) -> str:
    host, port = sock_or_addr[:2]
    return f"{host}:{port}"


class Story:
    """Connections made in order; the answer lists every request in the order it was sent."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.requests: list[dict[str, Any]] = []
        self.https: list[dict[str, Any]] = []
        self.secrets: list[str] = []  # what travelled inside TLS: never in an answer
        self.servers: list[WebServer] = []

    def http(self, server: WebServer, requests: list[Request], split: int = 1) -> None:
        self.servers.append(server)
        _exchange(self.scene, server.address, requests, split)
        client = self.scene.last_client
        for r in requests:
            self.requests.append(r.answer(client, _addr(server.address)))

    def tls(self, server: WebServer, ctx: ssl.SSLContext, sni: str, request: Request) -> None:
        self.servers.append(server)
        _exchange(self.scene, server.address, [request], tls=(ctx, sni))
        self.https.append({"client": self.scene.last_client, "server": _addr(server.address), "sni": sni})
        self.secrets += [request.path, *(v for _, v in request.query), *(v for _, v in request.cookies)]


def make(wire: Wire, seed: str, part: str, folder: Path, name: str, exact: bool) -> dict[str, Any]:
    """Make ``folder/NAME.pcap`` for ``part`` ("public" or "hidden").

    Returns {"answers": {"": the answer a correct program prints}, "secrets": [what travelled
    inside TLS], "connections": {client address: its frames}}."""
    rng = rng_for(seed, part)
    scene = Scene(wire, rng, exact)
    try:
        story = Story(scene)
        if part == "public":
            _public(scene, story, rng)
        else:
            from hidden_scenes import hidden  # not in a student's bundle

            hidden(scene, story, rng)
        frames = scene.write(folder / f"{name}.pcap")
        errors = [e for server in dict.fromkeys(story.servers) for e in server.errors]
        if errors:
            raise HarnessError("the grader's web server failed: " + "; ".join(errors))
    finally:
        scene.close()
    if part == "hidden":
        from hidden_scenes import check_split

        check_split(frames, story)
    return {
        "answers": {"": {"requests": story.requests, "https": story.https}},
        "secrets": story.secrets,
        "connections": scene.recorded,
    }


def _site(rng: random.Random) -> str:
    return f"{rng.choice(SITES)}-{rng.choice(WORDS)}.{rng.choice(TLDS)}"


def _public(scene: Scene, story: Story, rng: random.Random) -> None:
    host = _site(rng)
    agent = rng.choice(AGENTS)
    session = ("session", token(rng, 24))
    cookies = [("theme", rng.choice(("dark", "light"))), session, ("_ga", f"GA1.2.{rng.randrange(10**9)}")]
    phrase = f"{rng.choice(WORDS)}{rng.randrange(10, 100)}"
    user, password = f"{rng.choice(WORDS)}{rng.randrange(100, 1000)}", token(rng, 12)
    web = WebServer(scene.listen("127.0.0.10", 80))
    story.http(web, [Request("GET", host, "/", agent=agent, cookies=cookies[:1])])
    story.http(web, [Request("GET", host, "/search", [("q", phrase)], agent=agent, cookies=cookies)])
    story.http(
        web,
        [
            Request(
                "POST",
                host,
                "/login",
                agent=agent,
                cookies=cookies,
                form=[("username", user), ("password", password)],
            )
        ],
    )
    # HTTPS to two other names: an eavesdropper sees the names and addresses, nothing inside.
    ca = trustme.CA(organization_name="wiregrade capture CA")
    client_ctx = ssl.create_default_context()
    client_ctx.load_verify_locations(cadata=ca.cert_pem.bytes().decode())
    for i, kind in enumerate(("bank", "mail")):
        sni = f"{kind}-{rng.choice(WORDS)}.{rng.choice(TLDS)}"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert(sni).configure_cert(ctx)
        server = WebServer(scene.listen(f"127.0.0.{20 + i}", 443), ctx)
        inner = Request(
            "GET",
            sni,
            f"/account-{token(rng, 8)}",
            [("token", token(rng, 16))],
            agent=agent,
            cookies=[(f"{kind}_session", token(rng, 20))],
        )
        story.tls(server, client_ctx, sni, inner)
    story.http(web, [Request("GET", host, "/logout", agent=agent, cookies=cookies)])
