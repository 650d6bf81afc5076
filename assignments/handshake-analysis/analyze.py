"""Read the TLS handshakes in a capture.

Usage: python3 analyze.py CAPTURE [KEYLOG]   (prints JSON on stdout; see the handout)
"""

from __future__ import annotations

import json
import subprocess
import sys

FIELDS = [
    "tcp.stream", "ip.src", "tcp.srcport", "ip.dst", "tcp.dstport", "tcp.flags",
    "tls.handshake.type", "tls.handshake.extensions_server_name",
]  # fmt: skip  (add the fields you need: see the handout and `tshark -G fields | grep tls.`)


def packets(capture: str, keylog: str | None) -> list[dict[str, str]]:
    """One dict per packet: field name -> tshark's value(s), comma-separated when repeated."""
    args = ["tshark", "-r", capture, "-n", "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"]
    if keylog:
        args += ["-o", f"tls.keylog_file:{keylog}"]
    for f in FIELDS:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [dict(zip(FIELDS, line.split("\t"))) for line in out.splitlines()]


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print("usage: analyze.py CAPTURE [KEYLOG]", file=sys.stderr)
        return 2
    keylog = sys.argv[2] if len(sys.argv) == 3 else None
    for p in packets(sys.argv[1], keylog):
        print(p, file=sys.stderr)  # TODO: one entry per TLS connection
    json.dump({"connections": []}, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
