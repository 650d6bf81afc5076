"""Eavesdropper: HTTP requests and HTTPS server names from a capture.

Usage: python3 sniff.py CAPTURE

1. tshark -T json lists every TCP packet with the fields named below: who opened each
   connection (the SYN), and for TLS the ClientHello's server name, from tshark's own dissector.
2. tshark's "Follow TCP Stream" (-z follow,tcp,raw,N) gives what each client sent, in order.
3. http.client's own header parser reads the requests out of those bytes.
"""

import io
import json
import subprocess
import sys
from http.client import parse_headers
from urllib.parse import parse_qs, urlsplit

PACKET_FIELDS = ["tcp.stream", "ip.src", "tcp.srcport", "ip.dst", "tcp.dstport",
                 "tcp.flags.syn", "tcp.flags.ack", "tls.handshake.type",
                 "tls.handshake.extensions_server_name"]


def run_tshark(args):
    proc = subprocess.run(["tshark", "-n"] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.decode(errors="replace"))
        sys.exit("tshark failed")
    return proc.stdout.decode()


def packets(capture):
    cmd = ["-r", capture, "-Y", "tcp", "-T", "json"]
    for name in PACKET_FIELDS:
        cmd += ["-e", name]
    for pkt in json.loads(run_tshark(cmd) or "[]"):
        layers = pkt["_source"]["layers"]
        yield {name: layers.get(name, []) for name in PACKET_FIELDS}


def first(pkt, name, default=None):
    values = pkt[name]
    return values[0] if values else default


def connections(capture):
    """stream number -> {client, server, tls, sni}, in the order the connections started."""
    conns = {}
    for pkt in packets(capture):
        stream = int(first(pkt, "tcp.stream"))
        src = first(pkt, "ip.src") + ":" + first(pkt, "tcp.srcport")
        dst = first(pkt, "ip.dst") + ":" + first(pkt, "tcp.dstport")
        syn = first(pkt, "tcp.flags.syn") in ("1", "True")
        ack = first(pkt, "tcp.flags.ack") in ("1", "True")
        if stream not in conns:
            if syn and ack:  # the server's answer to a SYN we did not see
                client, server = dst, src
            else:
                client, server = src, dst
            conns[stream] = {"client": client, "server": server, "hello": False, "sni": None}
        conn = conns[stream]
        if "1" in pkt["tls.handshake.type"] and src == conn["client"] and not conn["hello"]:
            conn["hello"] = True
            conn["sni"] = first(pkt, "tls.handshake.extensions_server_name")
    return conns


def client_bytes(capture, streams):
    """What the client of each stream sent, put in order by tshark's Follow TCP Stream."""
    if not streams:
        return {}, {}
    cmd = ["-r", capture, "-q"]
    for s in streams:
        cmd += ["-z", "follow,tcp,raw,%d" % s]
    sent, node0 = {}, {}
    stream = None
    for line in run_tshark(cmd).splitlines():
        if line.startswith("Filter: tcp.stream eq "):
            stream = int(line.split()[-1])
        elif line.startswith("Node 0: "):
            node0[stream] = line[len("Node 0: "):].strip()  # who tshark calls node 0
        elif stream is not None and line and not line.startswith(("=", "Node ", "Follow:")):
            from_node1 = line.startswith("\t")
            sent.setdefault((stream, from_node1), bytearray()).extend(bytes.fromhex(line.strip()))
    return sent, node0


def read_requests(data):
    found = []
    stream = io.BytesIO(bytes(data))
    while True:
        line = stream.readline()
        if not line.endswith(b"\r\n"):
            break
        words = line.decode("latin-1").rstrip("\r\n").split(" ")
        if len(words) != 3 or not words[2].startswith("HTTP/"):
            break
        method, target, _version = words
        headers = parse_headers(stream)
        body = stream.read(int(headers.get("Content-Length", 0)))
        url = urlsplit(target)
        cookies = {}
        for crumb in (headers.get("Cookie") or "").split(";"):
            if "=" in crumb:
                key, value = crumb.strip().split("=", 1)
                cookies[key] = value
        form = {}
        if headers.get_content_type() == "application/x-www-form-urlencoded" and method == "POST":
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        found.append({
            "method": method,
            "host": headers.get("Host"),
            "path": url.path,
            "query": parse_qs(url.query, keep_blank_values=True),
            "cookies": cookies,
            "user_agent": headers.get("User-Agent"),
            "form": form,
        })
    return found


def main(argv):
    if len(argv) != 2:
        print("usage: python3 sniff.py CAPTURE", file=sys.stderr)
        return 2
    capture = argv[1]
    conns = connections(capture)
    sent, node0 = client_bytes(capture, list(conns))
    report = {"requests": [], "https": []}
    for stream, conn in conns.items():
        client_is_node1 = node0.get(stream, conn["client"]) != conn["client"]
        data = sent.get((stream, client_is_node1), b"")
        if conn["hello"] or data[:1] == b"\x16":
            report["https"].append({"client": conn["client"], "server": conn["server"], "sni": conn["sni"]})
            continue
        for request in read_requests(data):
            report["requests"].append({"client": conn["client"], "server": conn["server"], **request})
    json.dump(report, sys.stdout, indent=4)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
