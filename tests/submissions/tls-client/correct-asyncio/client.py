#!/usr/bin/env python3
"""TLS client on asyncio: verify against CAFILE and HOST, print all, end cleanly."""
import asyncio
import ssl
import sys


async def main(host: str, port: int, cafile: str) -> int:
    context = ssl.create_default_context(cafile=cafile)
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
        while chunk := await reader.read(4096):
            sys.stdout.write(chunk.decode())
        writer.close()
        await writer.wait_closed()
    except (ssl.SSLError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3])))
