"""Checks for `tunnel`: real stunnel4 and nginx, started with the student's configuration.

The grader runs the plaintext programs (an echo server, a small web app) that must not be
changed, writes a certificate for the host from its own CA into the folder (server.crt,
server.key), starts the real program on the student's configuration, and talks to it as a
verifying client. One capture shows both hops: TLS on the public port, plaintext only on the
loopback hop behind the proxy. The stunnel and nginx checks are independent of each other."""

from __future__ import annotations

import urllib.parse

from support import (
    HTTP_REQUEST,
    AppBackend,
    EchoBackend,
    EchoTrip,
    WebTrip,
    hop_carried,
    port,
    require_page,
    require_tls,
    start_nginx,
)

import harness
from harness import GradingContext, Launcher, Shared, check, fail


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
    needs="stunnel-starts",
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
    "carries it in plaintext (that is the point of the tunnel: the code behind it is unchanged).",
    needs="stunnel-starts",
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
    to_echo = b"".join(c.client_stream for c in t.hidden_hop)
    hop = b"".join(c.client_stream + c.server_stream for c in t.hidden_hop)
    evidence.side_by_side(
        "One capture, two hops",
        ("Public port 8443: what an eavesdropper on the network sees", harness.printable(public[:600])),
        ("Loopback hop stunnel -> echo server, inside the machine", harness.printable(hop[:600])),
    )
    if secret in public:
        raise fail("The message travels in clear on the public port 8443.")
    for side, data in (("the client", t.public.client_stream), ("stunnel", t.public.server_stream)):
        if (why := harness.not_tls_records(data)) is not None:
            raise fail(f"On the public port, what {side} sent is not only TLS records: {why}.")
    if secret in to_echo:
        return  # the message itself crossed the hop in plaintext, and only TLS crossed 8443
    if t.ok:
        raise harness.HarnessError("the echo worked but the loopback hop was not seen on the wire")
    raise fail(
        "The message never reached the echo server on port 9000, so this cannot be judged "
        f"(see the round-trip check): {hop_carried(to_echo, 'echo server')}.",
        hint="connect = the echo server's address, 127.0.0.1:9000, in server mode.",
    )


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
    needs="nginx-starts",
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
    expected="The public connection shows no HTTP in clear; the hop from nginx to the app carries the "
    "request as plain HTTP.",
    needs="nginx-starts",
)
def test_nginx_wire(nginx_trip: Shared[WebTrip], token: str, evidence: harness.EvidenceRecorder) -> None:
    t = nginx_trip.get()
    reply = require_tls(t)  # the request travelled over TLS: the public hop can be judged
    assert t.public is not None
    public = t.public.client_stream + t.public.server_stream
    to_app = b"".join(c.client_stream for c in t.hop)
    hop = b"".join(c.client_stream + c.server_stream for c in t.hop)
    evidence.side_by_side(
        "One capture, two hops",
        ("Public port 9443: what an eavesdropper on the network sees", harness.printable(public[:600])),
        ("Loopback hop nginx -> app, inside the machine", harness.printable(hop[:600])),
    )
    if b"GET /hello" in public or token.encode() in public:
        raise fail("HTTP travels in clear on the public port 9443.")
    for side, data in (("the client", t.public.client_stream), ("nginx", t.public.server_stream)):
        if (why := harness.not_tls_records(data)) is not None:
            raise fail(f"On the public port, what {side} sent is not only TLS records: {why}.")
    if HTTP_REQUEST.search(to_app):
        return  # the request itself crossed the hop as plain HTTP, and only TLS crossed 9443
    if reply.status == 200 and token.encode() in reply.body:
        raise harness.HarnessError("the page came back but the loopback hop was not seen on the wire")
    raise fail(
        f"The request never reached the app as plain HTTP (nginx answered {reply.status}), so this cannot "
        f"be judged (see the HTTPS check): {hop_carried(to_app, 'app')}.",
        hint="proxy_pass http://127.0.0.1:8000; (the app speaks plain HTTP on the loopback hop).",
    )


@check(
    title="Plain HTTP is redirected to HTTPS",
    points=2,
    expected="GET http://horiem.ca:9080/some/path?x=1 answers 301 or 308 with Location "
    "https://horiem.ca:9443/some/path?x=1 (the same host name, port 9443, the same path and query).",
    hint="A second server block: listen 9080; return 301 https://$host:9443$request_uri;",
    needs="nginx-starts",
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
    location = r.headers.get("location")
    if r.status not in (301, 308) or location != want:
        why = redirect_problem(r.status, location, want)
        raise fail(
            f"Plain HTTP answered {r.status} with Location {location!r}{why}.",
            expected=f"301 or 308 to {want}",
        )


def redirect_problem(status: int, location: str | None, want: str) -> str:
    """Why a redirect is not the one asked for, in words (empty when the Location is right)."""
    if status not in (301, 308):
        return ": a permanent redirect is 301 or 308" if location else ""
    if location is None or location == want:
        return ""
    parts = urllib.parse.urlsplit(location)
    wanted = urllib.parse.urlsplit(want)
    if parts.scheme != "https":
        return ": the client must be sent to https://"
    if parts.hostname != wanted.hostname:
        return (
            f": the client asked for {wanted.hostname}; the certificate is for that name, so a browser "
            f"sent to {parts.hostname} refuses the connection"
        )
    if parts.port != wanted.port:
        return f": the HTTPS server listens on port {wanted.port}"
    return ": the path and query of the request must be kept ($request_uri)"


@check(
    title="HTTPS answers carry Strict-Transport-Security",
    points=2,
    expected="A Strict-Transport-Security header with a max-age of at least a day.",
    hint='add_header Strict-Transport-Security "max-age=31536000" always;',
    needs=("nginx-starts", "nginx-https"),
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
    needs=("nginx-starts", "nginx-https"),
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
