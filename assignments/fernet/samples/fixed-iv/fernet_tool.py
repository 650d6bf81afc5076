#!/usr/bin/env python3
"""A hand-rolled Fernet with a fixed IV and a fixed timestamp.

It makes tokens any Fernet can read (right format, AES-128-CBC, HMAC-SHA256), but the same
plaintext always gives the same token, as the lecture's slide claims: an eavesdropper can
tell when a message repeats. Do not do this.
"""
import argparse
import base64
import sys

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, hmac, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

FIXED_IV = b'\x00' * 16
FIXED_TIME = (1_700_000_000).to_bytes(8, 'big')


def my_encrypt(key: bytes, data: bytes) -> bytes:
    raw = base64.urlsafe_b64decode(key)
    signing, encryption = raw[:16], raw[16:]
    padder = padding.PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    enc = Cipher(algorithms.AES(encryption), modes.CBC(FIXED_IV)).encryptor()
    body = b'\x80' + FIXED_TIME + FIXED_IV + enc.update(padded) + enc.finalize()
    h = hmac.HMAC(signing, hashes.SHA256())
    h.update(body)
    return base64.urlsafe_b64encode(body + h.finalize())


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest='command', required=True)
    sub.add_parser('genkey').add_argument('keyfile')
    for name in ('encrypt', 'decrypt'):
        s = sub.add_parser(name)
        s.add_argument('keyfile')
        s.add_argument('-i', '--input')
        s.add_argument('-o', '--output')
        if name == 'decrypt':
            s.add_argument('--ttl', type=int)
    a = p.parse_args()
    try:
        if a.command == 'genkey':
            with open(a.keyfile, 'wb') as f:
                f.write(Fernet.generate_key() + b'\n')
            import os
            os.chmod(a.keyfile, 0o600)
            return 0
        key = open(a.keyfile, 'rb').read().strip()
        data = open(a.input, 'rb').read() if a.input else sys.stdin.buffer.read()
        if a.command == 'encrypt':
            out = my_encrypt(key, data) + b'\n'
        else:
            out = Fernet(key).decrypt(data.strip(), ttl=a.ttl)
        if a.output:
            open(a.output, 'wb').write(out)
        else:
            sys.stdout.buffer.write(out)
        return 0
    except InvalidToken:
        print('invalid token', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
