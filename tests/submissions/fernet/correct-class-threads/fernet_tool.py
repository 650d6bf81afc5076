#!/usr/bin/env python3
"""A Fernet tool built around one class."""
import argparse
import os
import sys

from cryptography.fernet import Fernet, InvalidToken


class FernetTool:
    def __init__(self, key_file: str) -> None:
        self.key_file = key_file

    def genkey(self) -> None:
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, 'wb') as f:
            f.write(Fernet.generate_key() + b'\n')
        self.note(f'new key written to {self.key_file}')

    def fernet(self) -> Fernet:
        with open(self.key_file, 'rb') as f:
            return Fernet(f.read().strip())

    def encrypt(self, data: bytes) -> bytes:
        token = self.fernet().encrypt(data)
        self.note(f'encrypted {len(data)} bytes into a {len(token)}-byte token')
        return token + b'\n'

    def decrypt(self, data: bytes, ttl: int | None) -> bytes:
        plaintext = self.fernet().decrypt(data.strip(), ttl=ttl)
        self.note(f'decrypted {len(plaintext)} bytes')
        return plaintext

    @staticmethod
    def note(text: str) -> None:
        print(f'[fernet_tool] {text}', file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description='Fernet keys, encryption and decryption')
    parser.add_argument('command', choices=['genkey', 'encrypt', 'decrypt'])
    parser.add_argument('keyfile')
    parser.add_argument('-i', dest='infile', help='input file (default: stdin)')
    parser.add_argument('-o', dest='outfile', help='output file (default: stdout)')
    parser.add_argument('--ttl', type=int, default=None, help='maximum token age in seconds')
    args = parser.parse_args()

    tool = FernetTool(args.keyfile)
    if args.command == 'genkey':
        tool.genkey()
        return
    if args.infile:
        with open(args.infile, 'rb') as f:
            data = f.read()
    else:
        data = sys.stdin.buffer.read()
    try:
        if args.command == 'encrypt':
            result = tool.encrypt(data)
        else:
            result = tool.decrypt(data, args.ttl)
    except InvalidToken:
        print('decrypt failed: the token is invalid, was made with another key, or has expired', file=sys.stderr)
        sys.exit(1)
    if args.outfile:
        with open(args.outfile, 'wb') as f:
            f.write(result)
    else:
        sys.stdout.buffer.write(result)
        sys.stdout.buffer.flush()


if __name__ == '__main__':
    main()
