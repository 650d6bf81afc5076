"""Frames, TCP segments and pcap files: just enough to sort loopback traffic by connection.

Both wire backends end here: dumpcap's frames are parsed, the relay's byte streams are
turned into equivalent frames, and either way a :class:`Connection` can write a classic pcap
for tshark and give back each direction's reassembled bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

LINKTYPE_ETHERNET = 1
_PCAP_HEADER = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


@dataclass(frozen=True, slots=True)  # slots: a session may hold up to 100,000 of them
class Frame:
    ts: float
    data: bytes


@dataclass(frozen=True)
class Segment:
    ts: float
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    flags: int
    payload: bytes
    ack: int = 0


def parse_segment(frame: Frame) -> Segment | None:
    """The TCP segment in an Ethernet frame (IPv4 or IPv6), or None."""
    d = frame.data
    if len(d) < 14:
        return None
    ethertype = struct.unpack_from("!H", d, 12)[0]
    off = 14
    if ethertype == 0x0800:
        ihl = (d[off] & 0x0F) * 4
        if d[off + 9] != 6:
            return None
        total = struct.unpack_from("!H", d, off + 2)[0]
        src = ".".join(str(b) for b in d[off + 12 : off + 16])
        dst = ".".join(str(b) for b in d[off + 16 : off + 20])
        end = off + total
        off += ihl
    elif ethertype == 0x86DD:
        if d[off + 6] != 6:  # no extension headers on loopback traffic we make
            return None
        plen = struct.unpack_from("!H", d, off + 4)[0]
        src = d[off + 8 : off + 24].hex(":", 2)
        dst = d[off + 24 : off + 40].hex(":", 2)
        end = off + 40 + plen
        off += 40
    else:
        return None
    if len(d) < off + 20:
        return None
    sport, dport, seq, ack = struct.unpack_from("!HHII", d, off)
    doff = (d[off + 12] >> 4) * 4
    flags = d[off + 13]
    return Segment(frame.ts, src, sport, dst, dport, seq, flags, bytes(d[off + doff : end]), ack)


def tcp_ports_flags(data: bytes) -> tuple[int, int, int] | None:
    """(source port, destination port, TCP flags) of an Ethernet frame, or None if not TCP.

    :func:`parse_segment` without copying the payload: what the frame log needs per frame.
    """
    if len(data) < 14:
        return None
    ethertype = struct.unpack_from("!H", data, 12)[0]
    if ethertype == 0x0800 and len(data) >= 34 and data[23] == 6:
        off = 14 + (data[14] & 0x0F) * 4
    elif ethertype == 0x86DD and len(data) >= 54 and data[20] == 6:
        off = 54
    else:
        return None
    if len(data) < off + 14:
        return None
    sport, dport = struct.unpack_from("!HH", data, off)
    return sport, dport, data[off + 13]


# --- pcap files --------------------------------------------------------------------------


def pcap_header(snaplen: int = 262144) -> bytes:
    return _PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET)


def pcap_record(frame: Frame) -> bytes:
    sec = int(frame.ts)
    usec = int(round((frame.ts - sec) * 1e6))
    if usec >= 1_000_000:
        sec, usec = sec + 1, usec - 1_000_000
    return _RECORD.pack(sec, usec, len(frame.data), len(frame.data)) + frame.data


def write_pcap(path: Path, frames: Iterable[Frame]) -> None:
    with open(path, "wb") as f:
        f.write(pcap_header())
        for fr in frames:
            f.write(pcap_record(fr))


class PcapStreamParser:
    """Incremental parser of a classic pcap byte stream (dumpcap ``-P -w -``)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._endian: str | None = None
        self._nano = False
        self.linktype: int | None = None

    def feed(self, chunk: bytes) -> Iterator[Frame]:
        self._buf += chunk
        if self._endian is None:
            if len(self._buf) < 24:
                return
            magic = self._buf[:4]
            table = {
                b"\xd4\xc3\xb2\xa1": ("<", False),
                b"\xa1\xb2\xc3\xd4": (">", False),
                b"\x4d\x3c\xb2\xa1": ("<", True),
                b"\xa1\xb2\x3c\x4d": (">", True),
            }
            if bytes(magic) not in table:
                raise ValueError(f"not a pcap stream (magic {bytes(magic).hex()})")
            self._endian, self._nano = table[bytes(magic)]
            self.linktype = struct.unpack_from(self._endian + "I", self._buf, 20)[0]
            del self._buf[:24]
        rec = struct.Struct(self._endian + "IIII")
        while len(self._buf) >= 16:
            sec, frac, incl, _orig = rec.unpack_from(self._buf, 0)
            if len(self._buf) < 16 + incl:
                return
            data = bytes(self._buf[16 : 16 + incl])
            del self._buf[: 16 + incl]
            yield Frame(sec + frac / (1e9 if self._nano else 1e6), data)


def read_pcap(path: Path) -> list[Frame]:
    p = PcapStreamParser()
    return list(p.feed(path.read_bytes()))


# --- making frames (for the relay backend and for tests) -----------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def make_frame(
    ts: float,
    src: tuple[str, int],
    dst: tuple[str, int],
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
) -> Frame:
    """An Ethernet/IPv4/TCP frame as Linux's loopback would carry it (zero MAC addresses)."""
    tcp = (
        struct.pack(
            "!HHIIBBHHH", src[1], dst[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0
        )
        + payload
    )
    s_ip = bytes(int(x) for x in src[0].split("."))
    d_ip = bytes(int(x) for x in dst[0].split("."))
    pseudo = s_ip + d_ip + struct.pack("!BBH", 0, 6, len(tcp))
    csum = _checksum(pseudo + tcp)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, s_ip, d_ip)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return Frame(ts, b"\0" * 12 + b"\x08\x00" + ip + tcp)


# --- connections ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Connection:
    """The frames of one TCP connection, as one wire backend saw them."""

    client: tuple[str, int]
    server: tuple[str, int]
    frames: tuple[Frame, ...]
    backend: str

    def segments(self) -> list[Segment]:
        return [s for f in self.frames if (s := parse_segment(f)) is not None]

    def from_client(self, seg: Segment) -> bool:
        return seg.sport == self.client[1]

    def stream(self, from_client: bool) -> bytes:
        """Reassembled payload of one direction (duplicates and retransmissions folded)."""
        segs = [s for s in self.segments() if self.from_client(s) == from_client and s.payload]
        if not segs:
            return b""
        base = min(s.seq for s in segs)
        out = bytearray()
        for s in sorted(segs, key=lambda s: (s.seq - base) & 0xFFFFFFFF):
            rel = (s.seq - base) & 0xFFFFFFFF
            if rel > len(out):  # a hole (a lost segment): keep what follows, in order
                out += s.payload
            elif rel + len(s.payload) > len(out):
                out += s.payload[len(out) - rel :]
        return bytes(out)

    @property
    def client_stream(self) -> bytes:
        return self.stream(True)

    @property
    def server_stream(self) -> bytes:
        return self.stream(False)

    def lost_frames(self) -> bool:
        """Whether frames of this connection are missing (a capture that dropped packets).

        Each side's sequence numbers must run on without a hole from its SYN (a bare ACK
        carries the next sequence number to send, so one beyond what was seen shows a loss
        too), and cover everything the other side acknowledged; a side that sent data
        without a SYN lost it.
        """
        segs = self.segments()
        for side in (self.client[1], self.server[1]):
            mine = [s for s in segs if s.sport == side]
            syn = next((s for s in mine if s.flags & SYN), None)
            if syn is None:
                if any(s.payload or s.flags & FIN for s in mine):
                    return True
                continue
            base = syn.seq + 1
            covered = 0  # bytes of this side seen, in order, from its SYN
            for s in sorted(mine, key=lambda s: (s.seq - base) & 0xFFFFFFFF):
                rel = (s.seq - base) & 0xFFFFFFFF
                if s is syn or rel >= 1 << 31:  # the SYN itself, or before it
                    continue
                if rel > covered:
                    return True
                covered = max(covered, rel + len(s.payload) + (1 if s.flags & FIN else 0))
            acked = [
                (s.ack - base) & 0xFFFFFFFF
                for s in segs
                if s.sport != side and s.flags & ACK and not s.flags & RST
            ]
            if any(covered < a < 1 << 31 for a in acked):
                return True
        return False

    def closed_by(self) -> list[tuple[str, str]]:
        """[(side, "FIN"|"RST")] in wire order."""
        out = []
        for s in self.segments():
            side = "client" if self.from_client(s) else "server"
            if s.flags & RST:
                out.append((side, "RST"))
            elif s.flags & FIN:
                out.append((side, "FIN"))
        return out

    def write_pcap(self, path: Path) -> Path:
        write_pcap(path, self.frames)
        return path
