#!/usr/bin/env python3
"""Starter for tls-server: the lecture's TLS server.

Run it in this folder, next to server.pem and server.crt:   python3 server.py [PORT]
Then self-check it:                                          wiregrade check tls-server .

It works once, for one client. The handout (README.md) says what is still missing.
"""

import sys
from socket import AF_INET, SO_REUSEADDR, SOCK_STREAM, SOL_SOCKET, socket
from ssl import Purpose, create_default_context

HOST = ''
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 12345  # the grader may pass a port
NUM_CLIENTS = 1

purpose = Purpose.CLIENT_AUTH
context = create_default_context(purpose, cafile=None)
context.load_cert_chain('server.pem')

listener = socket(AF_INET, SOCK_STREAM)
listener.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
listener.bind((HOST, PORT))
listener.listen(NUM_CLIENTS)
raw_sock, address = listener.accept()

ssl_sock = context.wrap_socket(raw_sock, server_side=True)
ssl_sock.sendall('Hello World!'.encode('utf-8'))

ssl_sock.close()
