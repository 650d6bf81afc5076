#!/usr/bin/python3.11

from socket import socket, AF_INET, SOCK_STREAM, SOL_SOCKET, SO_REUSEADDR
from ssl import create_default_context, Purpose

HOST = ''
PORT = 12345
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
