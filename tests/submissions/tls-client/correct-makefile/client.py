#!/usr/bin/env python3
import socket
import ssl
import sys

host, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the name by default
ctx.minimum_version = ssl.TLSVersion.TLSv1_2
ctx.load_verify_locations(cafile)
try:
    sock = socket.create_connection((host, port), timeout=10)
    tls = ctx.wrap_socket(sock, server_hostname=host)
    with tls.makefile("rb") as stream:
        for block in iter(lambda: stream.read1(8192), b""):
            sys.stdout.buffer.write(block)
            sys.stdout.buffer.flush()
    tls.unwrap().close()
except (ssl.SSLError, OSError) as e:
    sys.exit(f"could not talk to {host}:{port} safely: {e}")
