import asyncio
import sys

from cryptography.fernet import Fernet, InvalidToken

fernet = Fernet(open(sys.argv[1], 'rb').read().strip())
port = int(sys.argv[2]) if len(sys.argv) > 2 else 23456
LIMIT = 16 * 1024 * 1024  # asyncio's default line limit is 64 kB; tokens can be longer


async def echo(reader, writer):
    try:
        while line := await reader.readline():
            writer.write(fernet.encrypt(fernet.decrypt(line.strip())) + b'\n')
            await writer.drain()
    except InvalidToken:
        print('not a token for our key', file=sys.stderr)
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(echo, port=port, limit=LIMIT)
    async with server:
        await server.serve_forever()


asyncio.run(main())
