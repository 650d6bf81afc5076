"""What an eavesdropper learns from a capture.

Usage: python3 sniff.py CAPTURE   (prints JSON on stdout; see the handout for its shape)
"""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit  # noqa: F401  (you will want these)

FIELDS = ["tcp.stream", "ip.src", "tcp.srcport", "ip.dst", "tcp.dstport", "tcp.flags", "tcp.seq", "tcp.payload"]


def read_segments(capture: str) -> list[list[str]]:
    """One row per TCP segment, as tshark decodes it: the FIELDS above, as strings.

    tcp.stream numbers the connections; tcp.seq is relative (the first data byte is 1);
    tcp.payload is the segment's data in hex ('' when it has none): bytes.fromhex() it.
    """
    cmd = ["tshark", "-r", capture, "-n", "-T", "fields", "-E", "separator=/t"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: sniff.py CAPTURE", file=sys.stderr)
        return 2
    report: dict[str, list] = {"requests": [], "https": []}
    for row in read_segments(sys.argv[1]):
        print(row, file=sys.stderr)  # TODO: group by connection, find the requests and the TLS names
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
