"""Fernet tool: genkey / encrypt / decrypt, arguments read from sys.argv by hand."""
import os
import sys

from cryptography.fernet import Fernet, InvalidToken

USAGE = 'usage: fernet_tool.py genkey KEYFILE | encrypt KEYFILE [-i IN] [-o OUT] | decrypt KEYFILE [--ttl S] [-i IN] [-o OUT]'


def die(message):
    print('error: ' + message, file=sys.stderr)
    sys.exit(1)


def parse_options(args):
    options = {'-i': None, '-o': None, '--ttl': None}
    while args:
        name = args.pop(0)
        if name not in options or not args:
            die(USAGE)
        options[name] = args.pop(0)
    return options


def load_key(path):
    try:
        with open(path, 'rb') as f:
            return Fernet(f.read().strip())
    except (OSError, ValueError) as e:
        die(f'cannot use key file {path}: {e}')


def read_input(path):
    if path is None:
        return sys.stdin.buffer.read()
    with open(path, 'rb') as f:
        return f.read()


def genkey(path):
    key = Fernet.generate_key()
    with open(path, 'wb') as f:
        f.write(key)
    os.chmod(path, 0o600)


def encrypt(key_path, options):
    token = load_key(key_path).encrypt(read_input(options['-i']))
    if options['-o']:
        with open(options['-o'], 'wb') as f:
            f.write(token + b'\n')
    else:
        print(token.decode())


def decrypt(key_path, options):
    ttl = int(options['--ttl']) if options['--ttl'] else None
    try:
        plaintext = load_key(key_path).decrypt(read_input(options['-i']).strip(), ttl=ttl)
    except InvalidToken:
        die('invalid token (tampered with, wrong key, or expired)')
    if options['-o']:
        with open(options['-o'], 'wb') as f:
            f.write(plaintext)
    else:
        sys.stdout.buffer.write(plaintext)


def main(argv):
    if len(argv) < 3:
        die(USAGE)
    command, key_path, rest = argv[1], argv[2], argv[3:]
    if command == 'genkey':
        genkey(key_path)
    elif command == 'encrypt':
        encrypt(key_path, parse_options(rest))
    elif command == 'decrypt':
        decrypt(key_path, parse_options(rest))
    else:
        die(USAGE)


main(sys.argv)
