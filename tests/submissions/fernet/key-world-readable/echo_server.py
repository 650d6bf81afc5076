#!/usr/bin/env python3
"""Echo server that speaks only Fernet tokens (reference solution).

    echo_server.py KEYFILE [PORT]

Each message is one token followed by a newline, in both directions. The server decrypts
each token and answers with a fresh token of the same plaintext.
"""

import socket
import sys

from cryptography.fernet import Fernet, InvalidToken

with open(sys.argv[1], 'rb') as f:
    fernet = Fernet(f.read().strip())
port = int(sys.argv[2]) if len(sys.argv) > 2 else 23456

with socket.create_server(('', port)) as listener:
    while True:
        conn, address = listener.accept()
        # makefile() reads whole lines, however many recv() calls a long token takes.
        with conn, conn.makefile('rb') as lines:
            try:
                for line in lines:
                    plaintext = fernet.decrypt(line.strip())
                    conn.sendall(fernet.encrypt(plaintext) + b'\n')
            except InvalidToken:
                print(f'{address}: a message that is not a token for our key; closing', file=sys.stderr)
            except OSError as exc:
                print(f'{address}: {exc}', file=sys.stderr)
