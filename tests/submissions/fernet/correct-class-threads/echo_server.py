#!/usr/bin/env python3
"""Threaded echo server: a thread per client, tokens both ways."""
import socket
import sys
import threading

from cryptography.fernet import Fernet, InvalidToken


def serve_client(conn: socket.socket, addr, fernet: Fernet) -> None:
    print(f'client {addr} connected', file=sys.stderr)
    with conn, conn.makefile('rb') as incoming:
        for line in incoming:
            try:
                plaintext = fernet.decrypt(line.strip())
            except InvalidToken:
                print(f'client {addr} sent something that is not our token', file=sys.stderr)
                break
            conn.sendall(fernet.encrypt(plaintext) + b'\n')
    print(f'client {addr} left', file=sys.stderr)


def main() -> None:
    with open(sys.argv[1], 'rb') as f:
        fernet = Fernet(f.read().strip())
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 23456
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(('0.0.0.0', port))
    listener.listen()
    print(f'listening on port {port}', file=sys.stderr)
    while True:
        conn, addr = listener.accept()
        threading.Thread(target=serve_client, args=(conn, addr, fernet), daemon=True).start()


if __name__ == '__main__':
    main()
