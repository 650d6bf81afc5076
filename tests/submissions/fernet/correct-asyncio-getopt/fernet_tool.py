import getopt
import sys
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken


def key_from(path):
    return Fernet(Path(path).read_bytes().strip())


def cmd_genkey(keyfile, opts):
    path = Path(keyfile)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_bytes(Fernet.generate_key())
    return None


def cmd_encrypt(keyfile, opts):
    return key_from(keyfile).encrypt(read(opts)) + b'\n'


def cmd_decrypt(keyfile, opts):
    ttl = opts.get('--ttl')
    return key_from(keyfile).decrypt(read(opts).strip(), ttl=int(ttl) if ttl is not None else None)


def read(opts):
    return Path(opts['-i']).read_bytes() if '-i' in opts else sys.stdin.buffer.read()


COMMANDS = {'genkey': cmd_genkey, 'encrypt': cmd_encrypt, 'decrypt': cmd_decrypt}

try:
    command, keyfile, *rest = sys.argv[1:]
    pairs, extra = getopt.getopt(rest, 'i:o:', ['ttl='])
    if command not in COMMANDS or extra:
        raise getopt.GetoptError('unknown command or argument')
except (ValueError, getopt.GetoptError):
    sys.stderr.write('usage: fernet_tool.py genkey|encrypt|decrypt KEYFILE [-i IN] [-o OUT] [--ttl S]\n')
    sys.exit(2)

opts = dict(pairs)
try:
    out = COMMANDS[command](keyfile, opts)
except InvalidToken:
    sys.stderr.write('fernet_tool.py: token rejected (bad signature, wrong key or too old)\n')
    sys.exit(1)
except OSError as e:
    sys.stderr.write(f'fernet_tool.py: {e.strerror}: {e.filename}\n')
    sys.exit(1)

if out is not None:
    if '-o' in opts:
        Path(opts['-o']).write_bytes(out)
    elif command == 'encrypt':
        sys.stdout.write(out.decode())
    else:
        sys.stdout.buffer.write(out)
