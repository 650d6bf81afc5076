"""HTTP eavesdropper that reads the capture file itself: pcap and pcapng, parsed with struct.

Usage: python3 sniff.py [-h] [--indent N] CAPTURE

No tshark here: the file format (pcap, pcapng), the link layer (Ethernet, Linux cooked,
loopback, raw IP), IPv4/IPv6 and TCP are all unpacked by hand, and each direction of each
TCP connection is put back in order by sequence number before HTTP is looked for in it.
"""

import argparse
import json
import struct
import sys
from urllib.parse import parse_qs

ETH_IPV4, ETH_IPV6, ETH_VLAN = 0x0800, 0x86DD, 0x8100


class CaptureError(Exception):
    pass


class CaptureFile:
    """Yields (linktype, frame bytes) for every packet of a pcap or pcapng file."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.data = f.read()

    def frames(self):
        magic = self.data[:4]
        if magic == b"\x0a\x0d\x0d\x0a":
            yield from self._pcapng()
        elif magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            yield from self._pcap("<")
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            yield from self._pcap(">")
        else:
            raise CaptureError("not a pcap or pcapng file")

    def _pcap(self, endian):
        linktype = struct.unpack(endian + "I", self.data[20:24])[0] & 0x0FFFFFFF
        pos = 24
        while pos + 16 <= len(self.data):
            _sec, _frac, incl, _orig = struct.unpack(endian + "IIII", self.data[pos:pos + 16])
            pos += 16
            yield linktype, self.data[pos:pos + incl]
            pos += incl

    def _pcapng(self):
        data = self.data
        endian = "<"
        interfaces = []
        pos = 0
        while pos + 12 <= len(data):
            if data[pos:pos + 4] == b"\x0a\x0d\x0d\x0a":  # section header: its byte order
                endian = "<" if data[pos + 8:pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
                interfaces = []
            btype, blen = struct.unpack(endian + "II", data[pos:pos + 8])
            body = data[pos + 8:pos + blen - 4]
            if btype == 1:  # interface description
                interfaces.append(struct.unpack(endian + "H", body[:2])[0])
            elif btype == 6:  # enhanced packet
                iface, _hi, _lo, caplen, _len = struct.unpack(endian + "IIIII", body[:20])
                yield interfaces[iface], body[20:20 + caplen]
            elif btype == 3:  # simple packet
                caplen = min(struct.unpack(endian + "I", body[:4])[0], len(body) - 4)
                yield interfaces[0], body[4:4 + caplen]
            if blen < 12:
                raise CaptureError("broken pcapng block")
            pos += blen


def network_layer(linktype, frame):
    """(ethertype-ish, IP packet) from a link-layer frame, or (None, b'')."""
    if linktype == 1:  # Ethernet
        kind, pos = struct.unpack("!H", frame[12:14])[0], 14
        while kind == ETH_VLAN:
            kind, pos = struct.unpack("!H", frame[pos + 2:pos + 4])[0], pos + 4
        return kind, frame[pos:]
    if linktype == 113:  # Linux cooked (SLL)
        return struct.unpack("!H", frame[14:16])[0], frame[16:]
    if linktype == 276:  # Linux cooked v2 (SLL2)
        return struct.unpack("!H", frame[0:2])[0], frame[20:]
    if linktype in (0, 108):  # BSD loopback: address family in host order
        family = struct.unpack("=I", frame[:4])[0]
        return (ETH_IPV4 if family == 2 else ETH_IPV6), frame[4:]
    if linktype in (101, 228, 229, 12, 14):  # raw IP
        return (ETH_IPV4 if frame[:1] and frame[0] >> 4 == 4 else ETH_IPV6), frame
    return None, b""


def tcp_segment(kind, packet):
    """(src, dst, seq, flags, payload) of a TCP segment, or None."""
    if kind == ETH_IPV4 and len(packet) >= 20:
        ihl = (packet[0] & 0x0F) * 4
        total = struct.unpack("!H", packet[2:4])[0]
        if packet[9] != 6:
            return None
        src_ip = ".".join(str(b) for b in packet[12:16])
        dst_ip = ".".join(str(b) for b in packet[16:20])
        tcp = packet[ihl:total]
        fmt = "{}:{}"
    elif kind == ETH_IPV6 and len(packet) >= 40:
        if packet[6] != 6:
            return None
        length = struct.unpack("!H", packet[4:6])[0]
        import ipaddress

        src_ip = str(ipaddress.IPv6Address(packet[8:24]))
        dst_ip = str(ipaddress.IPv6Address(packet[24:40]))
        tcp = packet[40:40 + length]
        fmt = "[{}]:{}"
    else:
        return None
    if len(tcp) < 20:
        return None
    sport, dport, seq, _ack, off_flags = struct.unpack("!HHIIH", tcp[:14])
    offset = (off_flags >> 12) * 4
    return fmt.format(src_ip, sport), fmt.format(dst_ip, dport), seq, off_flags & 0x1FF, tcp[offset:]


class Direction:
    """One direction of a TCP connection, in sequence order."""

    def __init__(self):
        self.isn = None
        self.chunks = {}

    def add(self, seq, payload):
        if self.isn is None:  # started before the capture: count from the first segment seen
            self.isn = seq - 1
        rel = (seq - self.isn - 1) % 2**32
        self.chunks.setdefault(rel, payload)

    def data(self):
        out = bytearray()
        for rel in sorted(self.chunks):
            chunk = self.chunks[rel]
            if rel > len(out):  # a hole: nothing more can be read in order
                break
            out += chunk[len(out) - rel:]
        return bytes(out)


class Connection:
    def __init__(self, client, server):
        self.client, self.server = client, server
        self.sent = Direction()  # client -> server
        self.received = Direction()
        self.closed = False


class Sniffer:
    def __init__(self, path):
        self.path = path
        self.connections = []
        self.open = {}

    def run(self):
        for linktype, frame in CaptureFile(self.path).frames():
            seg = tcp_segment(*network_layer(linktype, frame))
            if seg:
                self.segment(*seg)
        return self.connections

    def segment(self, src, dst, seq, flags, payload):
        syn, ack, fin, rst = flags & 0x02, flags & 0x10, flags & 0x01, flags & 0x04
        key = frozenset((src, dst))
        conn = self.open.get(key)
        if syn and not ack and (conn is None or conn.closed or conn.client != src):
            conn = Connection(src, dst)  # a new connection (possibly on a reused port pair)
            conn.sent.isn = seq
            self.open[key] = conn
            self.connections.append(conn)
        elif conn is None:  # no SYN seen: the side that sends the SYN-ACK is the server
            conn = Connection(dst, src) if syn else Connection(src, dst)
            self.open[key] = conn
            self.connections.append(conn)
        toward_server = src == conn.client
        direction = conn.sent if toward_server else conn.received
        if syn:
            direction.isn = seq
        if payload:
            direction.add(seq, payload)
        if fin or rst:
            conn.closed = True


def header_map(block):
    headers = {}
    for line in block.split("\r\n"):
        name, colon, value = line.partition(":")
        if colon:
            headers.setdefault(name.strip().lower(), value.strip())
    return headers


def parse_requests(stream):
    requests = []
    pos = 0
    while True:
        end = stream.find(b"\r\n\r\n", pos)
        if end < 0:
            return requests
        head = stream[pos:end].decode("iso-8859-1")
        request_line, _, rest = head.partition("\r\n")
        try:
            method, target, version = request_line.split(" ")
        except ValueError:
            return requests
        if not version.startswith("HTTP/1"):
            return requests
        headers = header_map(rest)
        length = int(headers.get("content-length") or "0")
        body = stream[end + 4:end + 4 + length]
        pos = end + 4 + length
        path, _, query = target.partition("?")
        cookies = {}
        if "cookie" in headers:
            for pair in headers["cookie"].split(";"):
                if "=" in pair:
                    name, _, value = pair.strip().partition("=")
                    cookies[name] = value
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True) if (
            ctype == "application/x-www-form-urlencoded") else {}
        requests.append({
            "method": method, "host": headers.get("host"), "path": path,
            "query": parse_qs(query, keep_blank_values=True), "cookies": cookies,
            "user_agent": headers.get("user-agent"), "form": form,
        })


def client_hello_sni(stream):
    """The server_name of the ClientHello that starts a TLS stream (may span several records)."""
    hs = bytearray()
    pos = 0
    while pos + 5 <= len(stream) and stream[pos] == 0x16:  # handshake records
        size = struct.unpack("!H", stream[pos + 3:pos + 5])[0]
        hs += stream[pos + 5:pos + 5 + size]
        pos += 5 + size
        if len(hs) >= 4 and len(hs) >= 4 + int.from_bytes(hs[1:4], "big"):
            break
    if len(hs) < 4 or hs[0] != 1:
        return None
    body = bytes(hs[4:4 + int.from_bytes(hs[1:4], "big")])
    p = 2 + 32
    p += 1 + body[p]
    (n,) = struct.unpack("!H", body[p:p + 2])
    p += 2 + n
    p += 1 + body[p]
    if p + 2 > len(body):
        return None
    (ext_total,) = struct.unpack("!H", body[p:p + 2])
    p += 2
    end = p + ext_total
    while p + 4 <= end:
        ext_type, ext_len = struct.unpack("!HH", body[p:p + 4])
        ext = body[p + 4:p + 4 + ext_len]
        if ext_type == 0:
            q = 2
            while q + 3 <= len(ext):
                name_type, name_len = ext[q], struct.unpack("!H", ext[q + 1:q + 3])[0]
                if name_type == 0:
                    return ext[q + 3:q + 3 + name_len].decode("ascii")
                q += 3 + name_len
            return None
        p += 4 + ext_len
    return None


def main():
    parser = argparse.ArgumentParser(description="What an eavesdropper reads in a capture.")
    parser.add_argument("capture", help="a .pcap or .pcapng file")
    parser.add_argument("--indent", type=int, default=2)
    args = parser.parse_args()
    try:
        connections = Sniffer(args.capture).run()
    except (OSError, CaptureError) as e:
        parser.exit(1, f"sniff.py: {e}\n")
    report = {"requests": [], "https": []}
    for conn in connections:
        data = conn.sent.data()
        if data.startswith(b"\x16\x03"):
            report["https"].append(
                {"client": conn.client, "server": conn.server, "sni": client_hello_sni(data)})
            continue
        for req in parse_requests(data):
            report["requests"].append({"client": conn.client, "server": conn.server, **req})
    print(json.dumps(report, indent=args.indent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
