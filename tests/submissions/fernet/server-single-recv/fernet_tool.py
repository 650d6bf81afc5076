#!/usr/bin/env python3
"""Keys, encryption and decryption with cryptography's Fernet (reference solution).

    fernet_tool.py genkey KEYFILE
    fernet_tool.py encrypt KEYFILE [-i IN] [-o OUT]
    fernet_tool.py decrypt KEYFILE [--ttl SECONDS] [-i IN] [-o OUT]

Input and output are stdin/stdout unless files are given; bytes in, bytes out.
A bad token (tampered, wrong key, expired) is an error: exit 1, one line on stderr, nothing on stdout.
"""

import argparse
import os
import sys

from cryptography.fernet import Fernet, InvalidToken


def read_key(path: str) -> Fernet:
    with open(path, 'rb') as f:
        return Fernet(f.read().strip())


def genkey(path: str) -> None:
    # Create it private (0600) from the start: no moment when others could read it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'wb') as f:
        f.write(Fernet.generate_key() + b'\n')
    os.chmod(path, 0o600)


def main() -> int:
    parser = argparse.ArgumentParser(prog='fernet_tool.py')
    sub = parser.add_subparsers(dest='command', required=True)
    sub.add_parser('genkey').add_argument('keyfile')
    for name in ('encrypt', 'decrypt'):
        p = sub.add_parser(name)
        p.add_argument('keyfile')
        p.add_argument('-i', '--input')
        p.add_argument('-o', '--output')
        if name == 'decrypt':
            p.add_argument('--ttl', type=int, help='refuse tokens older than this many seconds')
    args = parser.parse_args()
    try:
        if args.command == 'genkey':
            genkey(args.keyfile)
            return 0
        fernet = read_key(args.keyfile)
        if args.input:
            with open(args.input, 'rb') as f:
                data = f.read()
        else:
            data = sys.stdin.buffer.read()
        if args.command == 'encrypt':
            out = fernet.encrypt(data) + b'\n'
        else:
            out = fernet.decrypt(data.strip(), ttl=args.ttl)
        if args.output:
            with open(args.output, 'wb') as f:
                f.write(out)
        else:
            sys.stdout.buffer.write(out)
        return 0
    except InvalidToken:
        print('fernet_tool: invalid token (wrong key, tampered with, or older than --ttl)', file=sys.stderr)
    except (OSError, ValueError) as exc:
        print(f'fernet_tool: {exc}', file=sys.stderr)
    return 1


if __name__ == '__main__':
    sys.exit(main())
