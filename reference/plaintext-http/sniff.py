"""What an eavesdropper learns from a capture: every HTTP request, and only the names of HTTPS.

Usage: python3 sniff.py CAPTURE   (pcap or pcapng; prints JSON on stdout)

tshark reads the capture and gives each TCP segment's payload; this program puts each
connection's bytes back in order itself, so it finds requests split over several segments,
several requests on one keep-alive connection, and HTTP on any port (tshark only decodes
HTTP on the ports it knows). For TLS it reports what travels in clear: the server name
from the ClientHello (SNI) and the server's address. Never anything inside.
"""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

FIELDS = [
    "tcp.stream",
    "ip.src",
    "tcp.srcport",
    "ip.dst",
    "tcp.dstport",
    "tcp.flags",
    "tcp.seq",
    "tcp.payload",
]


def read_segments(capture: str) -> list[list[str]]:
    cmd = ["tshark", "-r", capture, "-n", "-T", "fields", "-E", "separator=/t"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def streams(capture: str) -> list[dict]:
    """Each TCP connection, in the order it started: its client, server, and both byte streams."""
    conns: dict[str, dict] = {}
    for stream, src, sport, dst, dport, flags, seq, payload in read_segments(capture):
        flags_i = int(flags, 16)
        if stream not in conns:
            syn_only = flags_i & 0x12 == 0x02
            client, server = (
                (f"{src}:{sport}", f"{dst}:{dport}") if syn_only else (f"{dst}:{dport}", f"{src}:{sport}")
            )
            conns[stream] = {"client": client, "server": server, "data": {True: {}, False: {}}}
        c = conns[stream]
        if payload:
            from_client = f"{src}:{sport}" == c["client"]
            c["data"][from_client].setdefault(int(seq), bytes.fromhex(payload))  # retransmissions: first copy
    for c in conns.values():
        for side in (True, False):
            buf = b""
            for seq, chunk in sorted(c["data"][side].items()):
                if seq - 1 + len(chunk) > len(buf):
                    buf += chunk[len(buf) - (seq - 1) :] if seq - 1 <= len(buf) else chunk
            c[side] = buf
    return list(conns.values())


def http_requests(data: bytes) -> list[dict]:
    """Every request in a client's byte stream (keep-alive: one after another)."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            break
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        body, data = rest[:length], rest[length:]
        url = urlsplit(parts[1])
        cookies = {}
        for item in headers.get("cookie", "").split(";"):
            if "=" in item:
                k, _, v = item.strip().partition("=")
                cookies[k] = v
        form = {}
        if "application/x-www-form-urlencoded" in headers.get("content-type", ""):
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        out.append(
            {
                "method": parts[0],
                "host": headers.get("host"),
                "path": url.path,
                "query": parse_qs(url.query, keep_blank_values=True),
                "cookies": cookies,
                "user_agent": headers.get("user-agent"),
                "form": form,
            }
        )
    return out


def server_name(hello: bytes) -> str | None:
    """The SNI of a ClientHello at the start of a TLS stream (RFC 8446 4.1.2, RFC 6066 3)."""
    try:
        if hello[0] != 0x16 or hello[5] != 0x01:
            return None
        p = 5 + 4 + 2 + 32  # record header, handshake header, legacy_version, random
        p += 1 + hello[p]  # session id
        p += 2 + int.from_bytes(hello[p : p + 2], "big")  # cipher suites
        p += 1 + hello[p]  # compression methods
        end = p + 2 + int.from_bytes(hello[p : p + 2], "big")
        p += 2
        while p + 4 <= end:
            ext, size = int.from_bytes(hello[p : p + 2], "big"), int.from_bytes(hello[p + 2 : p + 4], "big")
            if ext == 0:  # server_name: list length (2), type (1), name length (2), name
                n = int.from_bytes(hello[p + 7 : p + 9], "big")
                return hello[p + 9 : p + 9 + n].decode("ascii")
            p += 4 + size
    except (IndexError, UnicodeDecodeError):
        pass
    return None


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: sniff.py CAPTURE", file=sys.stderr)
        return 2
    report: dict[str, list] = {"requests": [], "https": []}
    for c in streams(sys.argv[1]):
        sent = c[True]
        if sent[:1] == b"\x16":  # a TLS handshake record: nothing inside is ours to read
            report["https"].append({"client": c["client"], "server": c["server"], "sni": server_name(sent)})
            continue
        for r in http_requests(sent):
            report["requests"].append({"client": c["client"], "server": c["server"], **r})
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
