#!/usr/bin/env python3
"""Echo client that speaks only Fernet tokens (reference solution).

    echo_client.py KEYFILE HOST PORT  < messages

Sends each line of stdin as a token, prints each decrypted answer on its own line.
"""

import socket
import sys

from cryptography.fernet import Fernet, InvalidToken


def main() -> int:
    with open(sys.argv[1], 'rb') as f:
        fernet = Fernet(f.read().strip())
    host, port = sys.argv[2], int(sys.argv[3])
    with socket.create_connection((host, port)) as sock, sock.makefile('rb') as replies:
        for line in sys.stdin.buffer:
            sock.sendall(fernet.encrypt(line.rstrip(b'\n')) + b'\n')
            reply = replies.readline()
            if not reply:
                print('echo_client: the server closed the connection', file=sys.stderr)
                return 1
            try:
                plaintext = fernet.decrypt(reply.strip())
            except InvalidToken:
                print('echo_client: the answer is not a token for our key (wrong key?)', file=sys.stderr)
                return 1
            sys.stdout.buffer.write(plaintext + b'\n')
            sys.stdout.flush()
    return 0


if __name__ == '__main__':
    sys.exit(main())
