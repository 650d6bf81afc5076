#!/usr/bin/env python3.11
# The lecture's client, with only what the handout requires changed: host, port and CA file
# come from the command line instead of constants.
import sys
from socket import socket, AF_INET, SOCK_STREAM
from ssl import create_default_context, Purpose

HOST = sys.argv[1]
PORT = int(sys.argv[2])
BUF_SIZE = 1024

purpose = Purpose.SERVER_AUTH
context = create_default_context(purpose, cafile=sys.argv[3])

raw_sock = socket(AF_INET, SOCK_STREAM)
raw_sock.connect((HOST, PORT))

ssl_sock = context.wrap_socket(raw_sock, server_hostname=HOST)
while True:
    data = ssl_sock.recv(BUF_SIZE)
    if not data:
        break
    print(data)
