"""Run in its own process (it enters a network namespace): one known exchange, seen by a backend.

Prints JSON: what each side sent, and what the backend saw of the connection.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from pathlib import Path

from harness._isolation import enter_private_network

iso = enter_private_network()  # first: still single-threaded

from harness._wire import DumpcapWire, RelayWire  # noqa: E402

backend, workdir = sys.argv[1], Path(sys.argv[2])
SECRET = b"attack at dawn: the password is hunter2"
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
port = server.getsockname()[1]


def serve() -> None:
    conn, _ = server.accept()
    with conn:
        got = b""
        while len(got) < len(SECRET):
            got += conn.recv(100)
        conn.sendall(got.upper() * 200)  # several segments' worth back


threading.Thread(target=serve, daemon=True).start()
wire = DumpcapWire(workdir / "c.pcap") if backend == "dumpcap" else RelayWire(workdir / "c.pcap")
with socket.create_connection(wire.address_for(port)) as c:
    client_port = c.getsockname()[1]
    c.sendall(SECRET)
    reply = b""
    while len(reply) < len(SECRET) * 200:
        reply += c.recv(65536)
conn = wire.connection(client_port, port)
wire.close()
print(
    json.dumps(
        {
            "isolation": iso.kind,
            "backend": conn.backend,
            "client_stream": conn.client_stream.decode(),
            "server_stream_len": len(conn.server_stream),
            "server_stream_ok": conn.server_stream == SECRET.upper() * 200,
            "closed_by": conn.closed_by(),
            "frames": len(conn.frames),
            "pcap_bytes": (workdir / "c.pcap").stat().st_size,
        }
    )
)
