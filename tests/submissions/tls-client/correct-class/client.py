#!/usr/bin/env python3
"""A verifying TLS client, as a class."""
import argparse
import socket
import ssl
import sys


class Client:
    def __init__(self, host: str, port: int, cafile: str) -> None:
        self.host, self.port = host, port
        self.context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)

    def run(self) -> None:
        with socket.create_connection((self.host, self.port), timeout=10) as raw:
            with self.context.wrap_socket(raw, server_hostname=self.host) as tls:
                while True:
                    data = tls.recv(1024)
                    if data == b"":
                        break
                    print(data.decode("utf-8"), end="", flush=True)
                tls.unwrap()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("cafile")
    args = parser.parse_args()
    try:
        Client(args.host, args.port, args.cafile).run()
    except ssl.SSLCertVerificationError as exc:
        print(f"refusing {args.host}: {exc.verify_message}", file=sys.stderr)
        return 2
    except (ssl.SSLError, OSError) as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
