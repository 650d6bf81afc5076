#!/usr/bin/env python3
"""A TLS server on asyncio: every client gets the message, then a clean TLS ending."""
import asyncio
import ssl
import sys


def make_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile="server.crt", keyfile="server.key")
    return context


async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        writer.write("Hello World!".encode())
        await writer.drain()
        writer.close()  # the SSL transport sends close_notify
        await writer.wait_closed()
    except (ssl.SSLError, OSError) as exc:
        print("client:", exc, file=sys.stderr)


async def main(port: int) -> None:
    server = await asyncio.start_server(greet, port=port, ssl=make_context(), ssl_handshake_timeout=10)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 12345))
