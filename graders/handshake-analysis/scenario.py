"""The captures `handshake-analysis` hands a student: TLS connections between the grader's own
endpoints, with the key log of their secrets.

``make()`` is the one code path for the handout's practice capture and every student's. The
truth comes from the grader's endpoints, not from dissecting the capture: the server's
OpenSSL reports every TLS message it writes and reads (``SSLContext._msg_callback``, the hook
behind ``openssl s_server -msg``), with each record's header, so the grader knows which
handshake messages each side sent, which went in clear and which encrypted, every alert, and
the ServerHello's chosen version and cipher suite. Application data counts are what the
endpoints passed to ``sendall()``.

Two answers per capture: with the key log (everything) and without it (only what travels in
clear; what would need decrypting is null).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness import (
    ALERTS,
    HANDSHAKE_TYPES,
    PRACTICE,
    HarnessError,
    Scene,
    Wire,
    apart_from_practice,
    loopback,
    rng_for,
)

WORDS = [
    "amber",
    "basalt",
    "cobalt",
    "dune",
    "ember",
    "fjord",
    "glacier",
    "harbor",
    "iris",
    "jasper",
    "kelp",
    "lagoon",
    "meadow",
    "nimbus",
    "onyx",
    "prairie",
    "quartz",
    "ridge",
    "summit",
    "tundra",
]  # noqa: E501
# TLS 1.2 suites for an ECDSA certificate: (OpenSSL name, IANA name). TLS 1.3's suite is the
# server's choice among the three of RFC 8446; Python cannot restrict it, OpenSSL picks AES-256-GCM.
SUITES_12 = {
    0xC02B: ("ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    0xC02C: ("ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    0xCCA9: ("ECDHE-ECDSA-CHACHA20-POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    0xC023: ("ECDHE-ECDSA-AES128-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"),
    0xC024: ("ECDHE-ECDSA-AES256-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"),
}
SUITES_13 = {
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
}
TLDS = ("example", "test", "internal", "lan", "corp", "home.arpa", "localdomain", "intranet")
# Never 443: tshark hands TLS data on 443 to its HTTP dissector, and data.len no longer counts it.
PORTS = (7443, 4433, 5443, 6443, 8443, 9443, 10443, 11443)
VERSION_NAMES = {ssl.TLSVersion.TLSv1_2: "TLS 1.2", ssl.TLSVersion.TLSv1_3: "TLS 1.3"}


# --- certificates -----------------------------------------------------------------------------


@dataclass
class Cert:
    cert_pem: bytes
    key_pem: bytes
    subject_cn: str
    issuer_cn: str
    not_after: dt.datetime

    def answer(self) -> dict[str, str]:
        return {
            "subject_cn": self.subject_cn,
            "issuer_cn": self.issuer_cn,
            "not_after": self.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], cn: str, names: list[str], not_after: dt.datetime
) -> Cert:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    issuer = ca_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    return Cert(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        cn,
        str(issuer),
        not_after,
    )


# --- the grader's endpoints -------------------------------------------------------------------


@dataclass
class Event:
    from_client: bool
    kind: str  # "handshake" | "alert" | "ccs"
    value: int  # handshake type, or alert description
    level: int  # alert level (0 otherwise)
    encrypted: bool
    data: bytes


@dataclass
class Plan:
    """What one connection does: chosen per student, known to the grader by construction."""

    version: ssl.TLSVersion
    suite: int | None  # TLS 1.2: the one suite the server allows
    sni: str | None
    cert: Cert
    client_bytes: int
    server_bytes: int
    client_closes: bool  # the client sends close_notify (unwrap) when it is done
    server_closes: bool  # the server sends close_notify (unwrap) after its data
    trusted: bool = True  # False: the client does not trust the server's CA (unknown_ca)
    session: Any = None  # resume this session
    events: list[Event] = field(default_factory=list)
    client: str = ""
    server: str = ""
    resumed: bool = False
    new_session: Any = None


class Recorder:
    """Turns the server's message callback into events of the connection being served."""

    def __init__(self, tls13: bool) -> None:
        self.tls13 = tls13
        self.events: list[Event] = []
        self._encrypted = {True: False, False: False}
        self._ccs = {True: False, False: False}

    def __call__(self, conn: Any, direction: str, version: Any, ctype: Any, mtype: Any, data: bytes) -> None:
        from_client = direction == "read"
        ct = int(ctype)
        if ct == 256:  # a record header: is what follows encrypted?
            outer = data[0] if data else 0
            if outer == 20:  # a read ChangeCipherSpec is reported by its header only
                self._ccs[from_client] = True
            # TLS 1.3 hides every encrypted record as type 23; TLS 1.2 encrypts all after its CCS.
            self._encrypted[from_client] = outer == 23 if self.tls13 else self._ccs[from_client]
            return
        if ct == 20:
            self._ccs[from_client] = True
            self.events.append(Event(from_client, "ccs", 1, 0, False, data))
        elif ct == 22:
            self.events.append(
                Event(from_client, "handshake", data[0], 0, self._encrypted[from_client], data)
            )
        elif ct == 21 and len(data) >= 2:
            self.events.append(
                Event(from_client, "alert", data[1], data[0], self._encrypted[from_client], data)
            )


class Server:
    """The grader's TLS server: one connection at a time, each following its plan."""

    def __init__(self, scene: Scene, host: str, port: int, keylog: Path) -> None:
        self.sock = scene.listen(host, port)
        self.address = self.sock.getsockname()[:2]
        self.keylog = keylog
        self.errors: list[str] = []
        self._contexts: dict[tuple[int, ssl.TLSVersion, int | None], ssl.SSLContext] = {}

    def context(self, plan: Plan) -> ssl.SSLContext:
        """One context per certificate, version and suite: a resumed session needs the context
        (and its ticket key) of the first connection."""
        key = (id(plan.cert), plan.version, plan.suite)
        if key not in self._contexts:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ctx.maximum_version = plan.version
            ctx.options |= ssl.OP_IGNORE_UNEXPECTED_EOF  # no decode_error alert when a client just hangs up
            ctx.keylog_filename = str(self.keylog)
            if plan.suite is not None:
                ctx.set_ciphers(SUITES_12[plan.suite][0])
            cert_path = self.keylog.parent / f".{id(plan)}.pem"
            cert_path.write_bytes(plan.cert.cert_pem + plan.cert.key_pem)
            try:
                ctx.load_cert_chain(cert_path)
            finally:
                cert_path.unlink()
            self._contexts[key] = ctx
        return self._contexts[key]

    def serve(self, plan: Plan, ready: threading.Event) -> None:
        ctx = self.context(plan)
        rec = Recorder(plan.version is ssl.TLSVersion.TLSv1_3)
        ctx._msg_callback = rec  # type: ignore[attr-defined]
        ready.set()
        try:
            raw, _ = self.sock.accept()
        except OSError as exc:
            self.errors.append(f"accept: {exc}")
            return
        raw.settimeout(10)
        try:
            with contextlib.suppress(ssl.SSLError, OSError):
                tls = ctx.wrap_socket(raw, server_side=True)
                got = _read_exactly(tls, plan.client_bytes)
                if got != plan.client_bytes:
                    self.errors.append(f"the server read {got} of {plan.client_bytes} bytes")
                tls.sendall(b"s" * plan.server_bytes)
                if plan.server_closes:
                    tls.unwrap()
                else:
                    _drain(tls)  # until the client's close_notify or its FIN
        finally:
            raw.close()
            plan.events = rec.events


def _read_exactly(tls: ssl.SSLSocket, n: int) -> int:
    got = 0
    while got < n:
        chunk = tls.recv(min(65536, n - got))
        if not chunk:
            break
        got += len(chunk)
    return got


def _drain(tls: ssl.SSLSocket) -> None:
    with contextlib.suppress(ssl.SSLError, OSError):
        while tls.recv(65536):
            pass


def run_plan(scene: Scene, client: str, server: Server, plan: Plan, ctx: ssl.SSLContext) -> None:
    ready = threading.Event()
    t = threading.Thread(target=server.serve, args=(plan, ready), daemon=True)
    t.start()
    ready.wait(5)
    raw = scene.connect(server.address, client)
    plan.client, plan.server = scene.last_client, f"{server.address[0]}:{server.address[1]}"
    try:
        tls = ctx.wrap_socket(raw, server_hostname=plan.sni, session=plan.session)
    except ssl.SSLError:
        raw.close()
        if plan.trusted:
            raise
        t.join(10)
        return
    with tls:
        tls.sendall(b"c" * plan.client_bytes)
        got = _read_exactly(tls, plan.server_bytes)
        if got != plan.server_bytes:
            raise HarnessError(f"the client read {got} of {plan.server_bytes} bytes")
        plan.resumed = tls.session_reused
        plan.new_session = tls.session
        if plan.client_closes:
            with contextlib.suppress(ssl.SSLError, OSError):
                tls.unwrap()
    t.join(10)
    if t.is_alive():
        raise HarnessError("the grader's TLS server did not finish its connection")


# --- answers ----------------------------------------------------------------------------------


def answer(plan: Plan, keys: bool) -> dict[str, Any]:
    """What a correct program prints for this connection, with or without the key log."""
    seen = [e for e in plan.events if keys or not e.encrypted]
    hello = next(
        (e for e in plan.events if e.kind == "handshake" and not e.from_client and e.value == 2), None
    )
    if hello is None:
        raise HarnessError("the grader's server sent no ServerHello")
    version, suite = _server_hello(hello.data)
    names = {True: [], False: []}  # type: dict[bool, list[str]]
    for e in seen:
        if e.kind == "handshake":
            names[e.from_client].append(HANDSHAKE_TYPES[e.value])
    sent_cert = any(e.kind == "handshake" and not e.from_client and e.value == 11 for e in plan.events)
    cert_clear = any(e.kind == "handshake" and not e.from_client and e.value == 11 for e in seen)
    fatal = [e for e in plan.events if e.kind == "alert" and e.level == 2]
    fatal_seen = [e for e in fatal if keys or not e.encrypted]

    def closed(client: bool) -> bool | None:
        if not keys:
            return None
        return any(e.kind == "alert" and e.value == 0 and e.from_client == client for e in plan.events)

    done = plan.trusted
    return {
        "client": plan.client,
        "server": plan.server,
        "version": version,
        "cipher_suite": suite,
        "sni": plan.sni,
        "resumed": plan.resumed,
        "client_handshake": names[True],
        "server_handshake": names[False],
        "certificate": plan.cert.answer() if sent_cert and cert_clear else None,
        "fatal_alert": (
            {
                "from": "client" if fatal_seen[0].from_client else "server",
                "description": ALERTS[fatal_seen[0].value],
            }
            if fatal_seen
            else None
        ),
        "close_notify": {"client": closed(True), "server": closed(False)},
        "application_data": {
            "client": (plan.client_bytes if done else 0) if keys else None,
            "server": (plan.server_bytes if done else 0) if keys else None,
        },
    }


def _server_hello(msg: bytes) -> tuple[str, str]:
    """Version and IANA suite name from a ServerHello message (as the server wrote it)."""
    p = 4 + 2 + 32
    p += 1 + msg[p]
    code = int.from_bytes(msg[p : p + 2], "big")
    p += 2 + 1
    version = int.from_bytes(msg[4:6], "big")
    end = p + 2 + int.from_bytes(msg[p : p + 2], "big")
    p += 2
    while p + 4 <= end:
        ext, size = int.from_bytes(msg[p : p + 2], "big"), int.from_bytes(msg[p + 2 : p + 4], "big")
        if ext == 43:  # supported_versions: the real version in TLS 1.3
            version = int.from_bytes(msg[p + 4 : p + 6], "big")
        p += 4 + size
    name = SUITES_13.get(code) or SUITES_12.get(code, ("", ""))[1]
    if not name:
        raise HarnessError(f"the grader's server chose a suite it does not know: 0x{code:04x}")
    return {0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}[version], name


# --- the captures -----------------------------------------------------------------------------


@dataclass
class Layout:
    """A capture's shape: what a program fitted to the practice capture would rely on."""

    client: str
    server: str
    port: int
    tlds: tuple[str, ...]  # the server names' suffixes
    extra: int  # connections beyond the four every public capture has (their number varies)


def layout(rng: random.Random) -> Layout:
    taken: set[str] = set()
    client, server = loopback(rng, taken), loopback(rng, taken)
    return Layout(client, server, rng.choice(PORTS), tuple(rng.sample(TLDS, 2)), rng.randrange(3))


def apart(a: Layout, b: Layout) -> bool:
    """No address, port or name suffix in common, and a different number of connections."""
    return (
        not {a.client, a.server} & {b.client, b.server}
        and a.port != b.port
        and not set(a.tlds) & set(b.tlds)
        and a.extra != b.extra
    )


def make(wire: Wire, seed: str, part: str, folder: Path, name: str, exact: bool) -> dict[str, Any]:
    """Make ``folder/NAME.pcap`` and ``folder/NAME.keys`` for ``part`` ("public" or "hidden").

    Returns {"answers": {"": the answer without the key log, "-keylog": with it}, "plans": what
    each connection did, "connections": {client address: its frames}}.
    """
    rng = rng_for(seed, part)
    keylog = folder / f"{name}.keys"
    keylog.write_text("")
    scene = Scene(wire, rng, exact)
    try:
        if part == "public":
            shape = apart_from_practice(seed, part, rng, layout, apart)
        else:  # the hidden capture shares no address, port or suffix with the practice one either
            shape = apart_from_practice(PRACTICE + "/hidden", "public", rng, layout, apart)
        world = World(rng, shape.tlds)
        server = Server(scene, shape.server, shape.port, keylog)
        plans = public_plans(world, rng, shape.extra) if part == "public" else hidden("plans")(world, rng)
        for plan in plans:
            if plan.session == "previous":
                plan.session = plans[plans.index(plan) - 1].new_session
            run_plan(scene, shape.client, server, plan, world.client_context(plan))
        if server.errors:
            raise HarnessError("the grader's TLS server: " + "; ".join(server.errors))
        scene.write(folder / f"{name}.pcap")
    finally:
        scene.close()
    keys = {"connections": [answer(p, True) for p in plans]}
    clear = {"connections": [answer(p, False) for p in plans]}
    return {"answers": {"": clear, "-keylog": keys}, "plans": plans, "connections": scene.recorded}


class World:
    """The student's names and certificates."""

    def __init__(self, rng: random.Random, tlds: tuple[str, ...]) -> None:
        self.rng = rng
        self.tlds = tlds
        self.ca = make_ca(
            f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()} Root CA {rng.randrange(1, 9)}"
        )
        self.ca_pem = self.ca[1].public_bytes(serialization.Encoding.PEM)
        self.other_ca_pem = make_ca("Somebody Else's CA")[1].public_bytes(serialization.Encoding.PEM)

        self._clients: dict[tuple[bool, bool], ssl.SSLContext] = {}

    def client_context(self, plan: Plan) -> ssl.SSLContext:
        """The client's context; one per kind, since a session resumes only with its own."""
        key = (plan.trusted, plan.sni is not None)
        if key not in self._clients:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(cadata=(self.ca_pem if plan.trusted else self.other_ca_pem).decode())
            ctx.check_hostname = plan.sni is not None
            self._clients[key] = ctx
        return self._clients[key]

    def name(self) -> str:
        return f"{self.rng.choice(WORDS)}-{self.rng.randrange(10, 99)}.{self.rng.choice(self.tlds)}"

    def cert(self, sni: str | None, ca: Any = None) -> Cert:
        # From a fixed date, not from today: the same seed gives the same answer on any day.
        not_after = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(
            days=self.rng.randrange(0, 900), hours=self.rng.randrange(24)
        )
        host = sni or "localhost"
        return make_leaf(
            ca or self.ca, f"{self.rng.choice(('www', 'api', 'shop', 'mail'))}.{host}", [host], not_after
        )

    def plan(self, version: ssl.TLSVersion, **kw: Any) -> Plan:
        rng = self.rng
        sni = kw.pop("sni", self.name())
        suite = rng.choice(sorted(SUITES_12)) if version is ssl.TLSVersion.TLSv1_2 else None
        return Plan(
            version=version,
            suite=kw.pop("suite", suite),
            sni=sni,
            cert=kw.pop("cert", None) or self.cert(sni),
            client_bytes=kw.pop("client_bytes", rng.randrange(20, 2000)),
            server_bytes=kw.pop("server_bytes", rng.randrange(100, 40000)),
            **kw,
        )


def public_plans(world: World, rng: random.Random, extra: int) -> list[Plan]:
    """Two TLS 1.2 connections with different suites, two TLS 1.3; close_notify patterns that
    differ; one connection without SNI; then ``extra`` more of any kind, in a shuffled order."""
    v12, v13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
    a, b = rng.sample(sorted(SUITES_12), 2)
    closes = [(True, True), (False, True), (True, False), (False, False)]
    rng.shuffle(closes)
    plans = [
        world.plan(v12, suite=a, client_closes=closes[0][0], server_closes=closes[0][1]),
        world.plan(v13, client_closes=closes[1][0], server_closes=closes[1][1]),
        world.plan(v12, suite=b, client_closes=closes[2][0], server_closes=closes[2][1]),
        world.plan(v13, client_closes=closes[3][0], server_closes=closes[3][1]),
    ]
    no_sni = rng.randrange(4)
    plans[no_sni].sni = None
    plans[no_sni].cert = world.cert(None)
    for _ in range(extra):
        client_closes, server_closes = rng.choice(closes)
        plans.append(
            world.plan(rng.choice((v12, v13)), client_closes=client_closes, server_closes=server_closes)
        )
    rng.shuffle(plans)
    return plans


# The hidden capture's plans, registered by hidden_scenes.py when it is imported (only for the
# hidden part: a student's bundle has no such file).
HIDDEN: dict[str, Callable[..., list[Plan]]] = {}


def hidden(name: str) -> Callable[..., list[Plan]]:
    """What hidden_scenes.py registered under ``name`` (its importer loads it: the hidden
    checks' module in a session, harness.load_scenario outside one)."""
    if name not in HIDDEN:
        raise HarnessError("the hidden scenes are not loaded: hidden_scenes.py registers them")
    return HIDDEN[name]
