#!/usr/bin/env python3
# Careful with every client, but serves only one: accept() is not in a loop.
# It must lose "second client" and nothing else (one mistake, one penalty).
import sys
from socket import AF_INET, SO_REUSEADDR, SOCK_STREAM, SOL_SOCKET, socket
from ssl import Purpose, SSLError, create_default_context

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 12345
context = create_default_context(Purpose.CLIENT_AUTH)
context.load_cert_chain('server.pem')

listener = socket(AF_INET, SOCK_STREAM)
listener.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
listener.bind(('', PORT))
listener.listen(1)
raw_sock, address = listener.accept()
try:
    ssl_sock = context.wrap_socket(raw_sock, server_side=True)
    ssl_sock.sendall(b'Hello World!')
    ssl_sock.unwrap().close()
except (SSLError, OSError) as exc:
    print(f'{address}: {exc}', file=sys.stderr)
