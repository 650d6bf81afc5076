#!/usr/bin/env python3
"""A TLS server as a class, with argparse and logging."""
import argparse
import logging
import socket
import ssl

log = logging.getLogger("tls-server")


class TLSServer:
    def __init__(self, port: int, message: bytes) -> None:
        self.message = message
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain("server.crt", "server.key")
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("0.0.0.0", port))
        self.listener.listen()
        log.info("listening on %d", port)

    def serve_one(self) -> None:
        conn, address = self.listener.accept()
        conn.settimeout(10)
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                log.info("%s: %s, %s", address, tls.version(), tls.cipher()[0])
                tls.sendall(self.message)
                tls.unwrap().close()
        except (ssl.SSLError, OSError) as exc:
            log.warning("%s: %s", address, exc)
            conn.close()

    def serve_forever(self) -> None:
        while True:
            self.serve_one()


def main() -> None:
    parser = argparse.ArgumentParser(description="Send Hello World! over TLS to every client.")
    parser.add_argument("port", nargs="?", type=int, default=12345)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    TLSServer(args.port, b"Hello World!").serve_forever()


if __name__ == "__main__":
    main()
