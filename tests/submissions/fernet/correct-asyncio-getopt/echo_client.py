import asyncio
import sys

from cryptography.fernet import Fernet, InvalidToken


async def main(keyfile, host, port):
    fernet = Fernet(open(keyfile, 'rb').read().strip())
    reader, writer = await asyncio.open_connection(host, port, limit=16 * 1024 * 1024)
    for line in sys.stdin.buffer.read().split(b'\n')[:-1]:
        writer.write(fernet.encrypt(line) + b'\n')
        await writer.drain()
        answer = await reader.readline()
        if not answer:
            print('server closed the connection', file=sys.stderr)
            return 1
        try:
            plain = fernet.decrypt(answer.strip())
        except InvalidToken:
            print('cannot read the answer (wrong key?)', file=sys.stderr)
            return 1
        sys.stdout.buffer.write(plain + b'\n')
        sys.stdout.buffer.flush()
    writer.close()
    await writer.wait_closed()
    return 0


sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
