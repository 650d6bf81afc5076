#!/usr/bin/env python3
# Listens and accepts, but never starts TLS: the client's handshake waits in vain.
import sys, time
from socket import socket
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 12345
listener = socket()
listener.bind(('', PORT))
listener.listen(5)
held = []
while True:
    conn, _ = listener.accept()
    held.append(conn)
