"""The capture `plaintext-http` hands a student: web traffic made by the grader's own endpoints.

``make()`` is the one code path for the handout's practice capture (seed "practice", made by
``wiregrade capture``) and every student's capture (seeded from their identity). The truth
is what the grader's clients sent, built as the answer a correct program prints.

The public capture holds the lecture's story with per-student secrets: a search phrase in a
query string (escaped: only a program that decodes it reads it), a session cookie, a login
form, and HTTPS connections whose content must not be reported, one of them without SNI.
Every detail a program could be fitted to (client and server addresses, HTTPS ports, host
name suffixes, the number and order of connections) is drawn from the seed, and a graded
capture shares none of them with the practice one (``apart_from_practice``).

The hidden capture holds the harder cases, one per connection, so one mistake
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import trustme

from harness import PRACTICE, HarnessError, Scene, Wire, apart_from_practice, loopback, rng_for

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
TLDS = ("example", "test", "lan", "internal", "home.arpa", "localdomain", "intranet", "corp")
HTTPS_KINDS = ("bank", "mail", "pay", "cloud", "health", "vault")
HTTPS_PORTS = (443, 4433, 6443, 8443, 9443, 10443)
PAGES = ("/about", "/help", "/contact", "/news", "/static/site.css", "/favicon.ico", "/profile")
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
    client: str,
    server: tuple[str, int],
    requests: list[Request],
    split: int = 1,
    tls: tuple[ssl.SSLContext, str | None] | None = None,
) -> None:
    """One client connection: each request (in ``split`` sends), then its whole response.

    A split request is cut inside its path first (so only a program that joins the segments
    reads the path right), then at random places after the request line."""
    sock: socket.socket = scene.connect(server, client)
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

    def __init__(self, scene: Scene, client: str) -> None:
        self.scene = scene
        self.client = client  # the browser's address
        self.requests: list[dict[str, Any]] = []
        self.https: list[dict[str, Any]] = []
        self.secrets: list[str] = []  # what travelled inside TLS: never in an answer
        self.servers: list[WebServer] = []
        self.cases: dict[str, list[int]] = {}  # a hidden case -> the indices of its requests

    def case(self, name: str, make: Callable[[], None]) -> None:
        """Run ``make`` (it adds requests) and remember which requests are case ``name``."""
        first = len(self.requests)
        make()
        self.cases[name] = list(range(first, len(self.requests)))

    def http(self, server: WebServer, requests: list[Request], split: int = 1) -> None:
        self.servers.append(server)
        _exchange(self.scene, self.client, server.address, requests, split)
        client = self.scene.last_client
        for r in requests:
            self.requests.append(r.answer(client, _addr(server.address)))

    def tls(self, server: WebServer, ctx: ssl.SSLContext, sni: str | None, request: Request) -> None:
        self.servers.append(server)
        _exchange(self.scene, self.client, server.address, [request], tls=(ctx, sni))
        self.https.append({"client": self.scene.last_client, "server": _addr(server.address), "sni": sni})
        self.secrets += [request.path, *(v for _, v in request.query), *(v for _, v in request.cookies)]


@dataclass
class Layout:
    """The public capture's shape: what a program fitted to the practice capture would rely on."""

    client: str  # the browser's address
    web: str  # the HTTP server's address (on port 80: HTTP elsewhere is the hidden capture's case)
    tls: list[tuple[str, int]]  # each HTTPS server's address and port (one connection to each)
    no_sni: int  # the HTTPS connection whose ClientHello names no server
    tlds: tuple[str, ...]  # the host names' suffixes
    kinds: list[str]  # the HTTPS names' prefixes
    order: list[str]  # the connections in order: home, search, login, page:PATH, tls:I, logout

    def addresses(self) -> set[str]:
        return {self.client, self.web, *(h for h, _ in self.tls)}


def layout(rng: random.Random) -> Layout:
    taken: set[str] = set()
    client, web = loopback(rng, taken), loopback(rng, taken)
    n = rng.randrange(2, 4)
    tls = [(loopback(rng, taken), rng.choice(HTTPS_PORTS)) for _ in range(n)]
    tlds = tuple(rng.sample(TLDS, 2))
    kinds = rng.sample(HTTPS_KINDS, n)
    pages = rng.sample(PAGES, rng.randrange(3))
    middle = ["search", "login", *(f"page:{p}" for p in pages), *(f"tls:{i}" for i in range(n))]
    rng.shuffle(middle)
    return Layout(client, web, tls, rng.randrange(n), tlds, kinds, ["home", *middle, "logout"])


def apart(a: Layout, b: Layout) -> bool:
    """No address, HTTPS port or name suffix in common, a different number of connections,
    and no HTTPS connection where the other has one (a program that knows which connections are
    HTTPS by their place in the practice capture is wrong about every one)."""

    def tls_places(x: Layout) -> set[int]:
        return {i for i, step in enumerate(x.order) if step.startswith("tls:")}

    return (
        not a.addresses() & b.addresses()
        and not tls_places(a) & tls_places(b)
        and not {p for _, p in a.tls} & {p for _, p in b.tls}
        and not set(a.tlds) & set(b.tlds)
        and len(a.order) != len(b.order)
    )


def make(wire: Wire, seed: str, part: str, folder: Path, name: str, exact: bool) -> dict[str, Any]:
    """Make ``folder/NAME.pcap`` for ``part`` ("public" or "hidden").

    Returns {"answers": {"": the answer a correct program prints}, "secrets": [what travelled
    inside TLS], "connections": {client address: its frames}}."""
    rng = rng_for(seed, part)
    scene = Scene(wire, rng, exact)
    try:
        if part == "public":
            shape = apart_from_practice(seed, part, rng, layout, apart)
            story = Story(scene, shape.client)
            _public(scene, story, rng, shape)
        else:
            practice = layout(rng_for(PRACTICE, "public"))  # the hidden capture shares nothing with it
            taken = practice.addresses()
            story = Story(scene, loopback(rng, taken))
            hidden("scenes")(scene, story, rng, taken, [t for t in TLDS if t not in practice.tlds])
        frames = scene.write(folder / f"{name}.pcap")
        errors = [e for server in dict.fromkeys(story.servers) for e in server.errors]
        if errors:
            raise HarnessError("the grader's web server failed: " + "; ".join(errors))
    finally:
        scene.close()
    if part == "hidden":
        hidden("check")(frames, story)
    return {
        "answers": {"": {"requests": story.requests, "https": story.https}},
        "secrets": story.secrets,
        "connections": scene.recorded,
        "cases": story.cases,
    }


# The hidden capture's scenes and their self-check, registered by hidden_scenes.py when it is
# imported (only for the hidden part: a student's bundle has no such file).
HIDDEN: dict[str, Callable[..., None]] = {}


def hidden(name: str) -> Callable[..., None]:
    """What hidden_scenes.py registered under ``name`` (its importer loads it: the hidden
    checks' module in a session, harness.load_scenario outside one)."""
    if name not in HIDDEN:
        raise HarnessError("the hidden scenes are not loaded: hidden_scenes.py registers them")
    return HIDDEN[name]


def _site(rng: random.Random, tlds: tuple[str, ...] | list[str]) -> str:
    return f"{rng.choice(SITES)}-{rng.choice(WORDS)}.{rng.choice(tlds)}"


def search_phrase(rng: random.Random) -> str:
    """Two words joined by '&' and a number after '/': the query string carries them escaped
    (q=rowan%26hazel%2F42), so only a program that decodes it reads the phrase."""
    a, b = rng.sample(WORDS, 2)
    return f"{a}&{b}/{rng.randrange(10, 100)}"


def _public(scene: Scene, story: Story, rng: random.Random, shape: Layout) -> None:
    host = _site(rng, shape.tlds)
    agent = rng.choice(AGENTS)
    session = ("session", token(rng, 24))
    cookies = [("theme", rng.choice(("dark", "light"))), session, ("_ga", f"GA1.2.{rng.randrange(10**9)}")]
    phrase = search_phrase(rng)
    user, password = f"{rng.choice(WORDS)}{rng.randrange(100, 1000)}", token(rng, 12)
    web = WebServer(scene.listen(shape.web, 80))
    # HTTPS to other names: an eavesdropper sees the names (if sent) and addresses, nothing inside.
    ca = trustme.CA(organization_name="wiregrade capture CA")
    client_ctx = ssl.create_default_context()
    client_ctx.load_verify_locations(cadata=ca.cert_pem.bytes().decode())
    no_sni_ctx = ssl.create_default_context()  # verifies the chain, sends no server name
    no_sni_ctx.check_hostname = False
    no_sni_ctx.load_verify_locations(cadata=ca.cert_pem.bytes().decode())
    for step in shape.order:
        if step == "home":
            story.http(web, [Request("GET", host, "/", agent=agent, cookies=cookies[:1])])
        elif step == "search":
            story.http(web, [Request("GET", host, "/search", [("q", phrase)], agent=agent, cookies=cookies)])
        elif step == "login":
            form = [("username", user), ("password", password)]
            story.http(web, [Request("POST", host, "/login", agent=agent, cookies=cookies, form=form)])
        elif step == "logout":
            story.http(web, [Request("GET", host, "/logout", agent=agent, cookies=cookies)])
        elif step.startswith("page:"):
            story.http(web, [Request("GET", host, step[5:], agent=agent, cookies=cookies)])
        else:
            i = int(step[4:])
            kind = shape.kinds[i]
            sni = f"{kind}-{rng.choice(WORDS)}.{rng.choice(shape.tlds)}"
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ca.issue_cert(sni).configure_cert(ctx)
            server = WebServer(scene.listen(*shape.tls[i]), ctx)
            inner = Request(
                "GET",
                sni,
                f"/account-{token(rng, 8)}",
                [("token", token(rng, 16))],
                agent=agent,
                cookies=[(f"{kind}_session", token(rng, 20))],
            )
            if i == shape.no_sni:
                story.tls(server, no_sni_ctx, None, inner)
            else:
                story.tls(server, client_ctx, sni, inner)
