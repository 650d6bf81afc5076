"""Dissecting a connection with tshark.

We call tshark directly (``-T fields``) rather than through pyshark: measured here, one
FileCapture costs 170-290 ms on top of tshark's own ~150 ms, pyshark's asyncio loop breaks
after any ``asyncio.run()`` and in threads, its XML mode returns only the first value of a
repeated field (a frame carries several TLS records), and it does not run on Python 3.14.
One tshark run per connection gives every field we need, in wire order.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ._errors import HarnessError
from ._packets import Connection
from ._timing import timed

# TLS numbers the checks speak about (RFC 8446 / 5246).
CONTENT_TYPES = {20: "ChangeCipherSpec", 21: "Alert", 22: "Handshake", 23: "ApplicationData"}
HANDSHAKE_TYPES = {
    1: "ClientHello",
    2: "ServerHello",
    4: "NewSessionTicket",
    8: "EncryptedExtensions",
    11: "Certificate",
    12: "ServerKeyExchange",
    13: "CertificateRequest",
    14: "ServerHelloDone",
    15: "CertificateVerify",
    16: "ClientKeyExchange",
    20: "Finished",
}
ALERTS = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    109: "missing_extension",
    112: "unrecognized_name",
    116: "certificate_required",
    120: "no_application_protocol",
}
VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}

_FIELDS = (
    "frame.number",
    "frame.time_relative",
    "tcp.srcport",
    "tcp.flags",
    "tcp.len",
    "tls.record.content_type",
    "tls.record.opaque_type",
    "tls.handshake.type",
    "tls.handshake.version",
    "tls.handshake.extensions.supported_version",
    "tls.handshake.ciphersuite",
    "tls.handshake.extensions_server_name",
    "tls.alert_message.level",
    "tls.alert_message.desc",
    "tls.handshake.certificate",
    "_ws.col.Protocol",
    "frame.len",
    "_ws.col.Info",
    "tcp.payload",
)


@dataclass(frozen=True)
class WireFrame:
    number: int
    time: float
    from_client: bool
    tcp_flags: int
    tcp_len: int
    content_types: tuple[int, ...]  # decrypted inner types where the key log allowed
    opaque_records: int  # TLS 1.3 records tshark could not (or need not) decrypt
    handshake_types: tuple[int, ...]
    handshake_versions: tuple[int, ...]
    supported_versions: tuple[int, ...]
    ciphersuites: tuple[int, ...]
    sni: str
    alerts: tuple[tuple[int, int], ...]  # (level, description)
    certificates: tuple[bytes, ...]
    protocol: str
    length: int
    info: str
    payload: bytes

    @property
    def fin(self) -> bool:
        return bool(self.tcp_flags & 0x01)

    @property
    def rst(self) -> bool:
        return bool(self.tcp_flags & 0x04)


def _ints(s: str) -> tuple[int, ...]:
    return tuple(int(x, 0) for x in s.split(";") if x)


@dataclass(frozen=True)
class Transcript:
    """A connection as tshark dissected it, with or without the grader's key log."""

    frames: tuple[WireFrame, ...]
    decrypted_with_keylog: bool

    def _first(self, from_client: bool, hs_type: int) -> WireFrame | None:
        return next(
            (f for f in self.frames if f.from_client == from_client and hs_type in f.handshake_types),
            None,
        )

    @property
    def client_hello(self) -> WireFrame | None:
        return self._first(True, 1)

    @property
    def server_hello(self) -> WireFrame | None:
        return self._first(False, 2)

    @property
    def version(self) -> int | None:
        """The negotiated version, from the ServerHello (supported_versions wins, RFC 8446)."""
        sh = self.server_hello
        if sh is None:
            return None
        if sh.supported_versions:
            return sh.supported_versions[-1]
        return sh.handshake_versions[-1] if sh.handshake_versions else None

    @property
    def version_name(self) -> str:
        v = self.version
        return VERSIONS.get(v, f"0x{v:04x}") if v is not None else "none"

    @property
    def cipher_suite(self) -> int | None:
        sh = self.server_hello
        return sh.ciphersuites[0] if sh and sh.ciphersuites else None

    @property
    def server_certificates(self) -> tuple[bytes, ...]:
        """The chain in the server's Certificate message (leaf first), if visible."""
        for f in self.frames:
            if not f.from_client and f.certificates:
                return f.certificates
        return ()

    @property
    def handshake_visible(self) -> bool:
        """True if the server's side of the handshake could be read (decrypted in TLS 1.3)."""
        return any(not f.from_client and {11, 20} & set(f.handshake_types) for f in self.frames)

    def alerts(self, from_client: bool) -> list[tuple[WireFrame, int, int]]:
        return [
            (f, level, desc) for f in self.frames if f.from_client == from_client for level, desc in f.alerts
        ]

    def first_close(self, from_client: bool) -> WireFrame | None:
        """The first frame with FIN or RST from that side."""
        return next((f for f in self.frames if f.from_client == from_client and (f.fin or f.rst)), None)


TSHARK_MISSING = (
    "tshark is not installed, and this check reads the traffic with it (Debian/Ubuntu: "
    "apt install tshark; the Wireshark window's package alone does not bring it)"
)


def tshark_path() -> str:
    exe = shutil.which("tshark")
    if exe is None:
        raise HarnessError(TSHARK_MISSING)
    return exe


class Undissected(Transcript):
    """What :func:`dissect` gives where tshark is missing: a check that reads no field of it
    (the handshake, the message, a second client) runs as usual; the first read of one is
    the grader's error, not the student's failure, and never a pass."""

    _why: str

    def __init__(self, why: str) -> None:
        object.__setattr__(self, "_why", why)

    @property
    def frames(self) -> tuple[WireFrame, ...]:  # type: ignore[override]
        raise HarnessError(self._why)

    @property
    def decrypted_with_keylog(self) -> bool:  # type: ignore[override]
        raise HarnessError(self._why)

    def __repr__(self) -> str:
        return f"Undissected({self._why!r})"


def dissect(conn: Connection, keylog: Path | None = None, *, two_pass: bool = False) -> Transcript:
    """Run tshark over one connection (decrypting with ``keylog`` if given). Without tshark,
    an :class:`Undissected` transcript: only the checks that read it are left undone.

    ``two_pass`` (``tshark -2``) labels the Protocol column as Wireshark's window does: a
    ClientHello reads as the session's version (TLSv1.3), not its record's (TLSv1), which a
    student learning to refuse TLS 1.0 would take for the real thing. The checks read
    fields, which one pass gives alike; the report's frame table asks for two.
    """
    if shutil.which("tshark") is None:
        return Undissected(TSHARK_MISSING)
    exe = tshark_path()
    with tempfile.TemporaryDirectory(prefix="wiregrade-tshark-") as tmp:
        pcap = conn.write_pcap(Path(tmp) / "conn.pcap")
        cmd = [
            exe,
            "-n",
            "-r",
            str(pcap),
            "-T",
            "fields",
            "-E",
            "separator=\t",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=;",
        ]
        if two_pass:
            cmd.append("-2")
        if keylog is not None:
            cmd += ["-o", f"tls.keylog_file:{keylog}"]
        for f in _FIELDS:
            cmd += ["-e", f]
        # tshark wants a HOME it can read (inside a user namespace /root is not).
        env = {**os.environ, "HOME": tmp}
        try:
            with timed("tshark dissection"):
                out = subprocess.run(cmd, capture_output=True, timeout=30, env=env, check=False)
        except subprocess.TimeoutExpired as exc:
            raise HarnessError("tshark did not finish dissecting within 30 s") from exc
    if out.returncode != 0:
        raise HarnessError(f"tshark failed ({out.returncode}): {out.stderr.decode(errors='replace')[-500:]}")
    frames = []
    for line in out.stdout.decode(errors="replace").splitlines():
        v = line.split("\t")
        if len(v) < len(_FIELDS):
            continue
        levels, descs = _ints(v[12]), _ints(v[13])
        frames.append(
            WireFrame(
                number=int(v[0]),
                time=float(v[1] or 0),
                from_client=int(v[2] or 0) == conn.client[1],
                tcp_flags=int(v[3] or "0", 0),
                tcp_len=int(v[4] or 0),
                content_types=_ints(v[5]),
                opaque_records=len(_ints(v[6])),
                handshake_types=_ints(v[7]),
                handshake_versions=_ints(v[8]),
                supported_versions=_ints(v[9]),
                ciphersuites=_ints(v[10]),
                sni=v[11].split(";")[0],
                alerts=tuple(zip(levels, descs, strict=False)),  # tshark pairs them per alert
                certificates=tuple(bytes.fromhex(c) for c in v[14].split(";") if c),
                protocol=v[15],
                length=int(v[16] or 0),
                info=v[17],
                payload=bytes.fromhex(v[18].replace(":", "").replace(";", "")),
            )
        )
    return Transcript(tuple(frames), keylog is not None)


def printable(data: bytes) -> str:
    """Bytes as Wireshark's ASCII pane shows them: printable characters, '.' elsewhere."""
    return "".join(chr(b) if 32 <= b < 127 else "." for b in data)


def not_tls_records(stream: bytes) -> str | None:
    """Why ``stream`` is not a sequence of TLS records, or None if it is (a cut last record is fine).

    A structural check that needs no message to look for: every byte belongs to a record of
    type 20-23 with a 0x03xx version.
    """
    i = 0
    while i + 5 <= len(stream):
        ctype, major, length = stream[i], stream[i + 1], int.from_bytes(stream[i + 3 : i + 5], "big")
        if ctype not in (20, 21, 22, 23) or major != 3:
            return f"at byte {i}: {printable(stream[i : i + 40])!r}"
        i += 5 + length
    return None


def frame_rows(
    conn: Connection,
    client: str,
    server: str,
    keylog: Path | None = None,
    secret: bytes = b"",
) -> list[dict[str, object]]:
    """One connection as Wireshark lists it (for a report's frame table): ``client`` and
    ``server`` name the two ends; frames whose payload holds ``secret`` are marked, and every
    row says whether a secret was looked for (the report's legend depends on it)."""
    return [
        {
            "no": f.number,
            "time": f"{f.time:.6f}",
            "src": client if f.from_client else server,
            "protocol": f.protocol,
            "length": f.length,
            "info": f.info,
            "payload": printable(f.payload[:160]),
            "plaintext": bool(secret) and secret in f.payload,
            "searched": bool(secret),
        }
        for f in dissect(conn, keylog, two_pass=True).frames
    ]
