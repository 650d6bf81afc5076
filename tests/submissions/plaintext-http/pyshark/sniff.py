"""Sniffs HTTP requests and HTTPS server names out of a capture, with pyshark.

Usage: python3 sniff.py CAPTURE
"""

import json
import sys
from urllib.parse import parse_qs

import pyshark


class Connection:
    def __init__(self, client, server):
        self.client = client
        self.server = server
        self.pieces = {}  # relative seq -> payload, client to server only

    def add(self, seq, data):
        self.pieces.setdefault(seq, data)

    def stream(self):
        out = b""
        for seq in sorted(self.pieces):
            data = self.pieces[seq]
            start = seq - 1
            if start + len(data) > len(out):
                out += data[len(out) - start:] if start <= len(out) else data
        return out


def read(path):
    conns = {}
    cap = pyshark.FileCapture(path, display_filter="tcp")
    try:
        for pkt in cap:
            tcp = pkt.tcp
            src = f"{pkt.ip.src}:{tcp.srcport}"
            dst = f"{pkt.ip.dst}:{tcp.dstport}"
            key = tcp.stream
            if key not in conns:
                flags = int(tcp.flags, 16)
                if flags & 0x12 == 0x02:
                    conns[key] = Connection(src, dst)
                else:
                    conns[key] = Connection(dst, src)
            conn = conns[key]
            payload = getattr(tcp, "payload", None)
            if payload and src == conn.client:
                conn.add(int(tcp.seq), bytes.fromhex(str(payload).replace(":", "")))
    finally:
        cap.close()
    return list(conns.values())


def header_dict(lines):
    headers = {}
    for line in lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return headers


def requests_in(data):
    found = []
    while b"\r\n\r\n" in data:
        head, data = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        words = lines[0].split(" ")
        if len(words) != 3 or not words[2].startswith("HTTP/"):
            break
        method, target, _ = words
        headers = header_dict(lines[1:])
        size = int(headers.get("content-length") or 0)
        body, data = data[:size], data[size:]
        path, _, query = target.partition("?")
        cookies = {}
        for part in headers.get("cookie", "").split(";"):
            name, eq, value = part.strip().partition("=")
            if eq:
                cookies[name] = value
        form = {}
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = parse_qs(body.decode(), keep_blank_values=True)
        found.append({
            "method": method,
            "host": headers.get("host"),
            "path": path,
            "query": parse_qs(query, keep_blank_values=True),
            "cookies": cookies,
            "user_agent": headers.get("user-agent"),
            "form": form,
        })
    return found


def sni(data):
    """server_name from the ClientHello at the start of a TLS stream, or None."""
    if len(data) < 6 or data[0] != 22 or data[5] != 1:
        return None
    i = 9 + 2 + 32
    i += 1 + data[i]
    i += 2 + int.from_bytes(data[i:i + 2], "big")
    i += 1 + data[i]
    end = i + 2 + int.from_bytes(data[i:i + 2], "big")
    i += 2
    while i + 4 <= end:
        kind = int.from_bytes(data[i:i + 2], "big")
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if kind == 0:
            n = int.from_bytes(data[i + 7:i + 9], "big")
            return data[i + 9:i + 9 + n].decode()
        i += 4 + length
    return None


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: sniff.py CAPTURE")
    result = {"requests": [], "https": []}
    for conn in read(sys.argv[1]):
        data = conn.stream()
        if data[:1] == b"\x16":
            result["https"].append({"client": conn.client, "server": conn.server, "sni": sni(data)})
        else:
            for r in requests_in(data):
                result["requests"].append({"client": conn.client, "server": conn.server, **r})
    print(json.dumps(result, indent=1))


main()
