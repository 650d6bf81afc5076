#!/usr/bin/env python3
# A server that forgot the TLS part: it sends the message in clear.
import sys
from socket import socket, AF_INET, SOCK_STREAM, SOL_SOCKET, SO_REUSEADDR

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 12345
listener = socket(AF_INET, SOCK_STREAM)
listener.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
listener.bind(('', PORT))
listener.listen(5)
while True:
    sock, _ = listener.accept()
    sock.sendall(b'Hello World!')
    sock.close()
