#!/usr/bin/env python3
"""Echo client that splits the server's answers into lines itself."""
import socket
import sys

from cryptography.fernet import Fernet, InvalidToken


class LineReader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b''

    def readline(self) -> bytes:
        while b'\n' not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                return b''
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b'\n', 1)
        return line


def main() -> int:
    with open(sys.argv[1], 'rb') as f:
        fernet = Fernet(f.read().strip())
    with socket.create_connection((sys.argv[2], int(sys.argv[3]))) as sock:
        reader = LineReader(sock)
        for line in sys.stdin.buffer.read().splitlines():
            sock.sendall(fernet.encrypt(line) + b'\n')
            answer = reader.readline()
            if not answer:
                print('connection closed by the server', file=sys.stderr)
                return 1
            try:
                sys.stdout.buffer.write(fernet.decrypt(answer) + b'\n')
            except InvalidToken:
                print('the answer is not a token for this key', file=sys.stderr)
                return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
