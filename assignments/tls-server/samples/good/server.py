#!/usr/bin/env python3
"""A correct solution written differently from the reference: a thread per client."""
import socket
import ssl
import sys
import threading

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 12345

context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.minimum_version = ssl.TLSVersion.TLSv1_2
context.load_cert_chain('server.crt', 'server.key')


def serve(raw: socket.socket, address) -> None:
    with raw:
        raw.settimeout(10)
        try:
            with context.wrap_socket(raw, server_side=True) as tls:
                tls.sendall(b'Hello World!\n')
                tls.unwrap()
        except (ssl.SSLError, OSError) as exc:
            print(f'{address}: {exc}', file=sys.stderr)


with socket.create_server(('', PORT), reuse_port=False) as listener:
    while True:
        conn, addr = listener.accept()
        threading.Thread(target=serve, args=(conn, addr), daemon=True).start()
