#!/usr/bin/env python3
"""socketserver does the accept loop; the handler wraps each client in TLS."""
import socketserver
import ssl
import sys

CONTEXT = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
CONTEXT.minimum_version = ssl.TLSVersion.TLSv1_2
CONTEXT.load_cert_chain("server.pem")


class Greeter(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(10)
        try:
            tls = CONTEXT.wrap_socket(self.request, server_side=True)
            tls.sendall(b"Hello World!")
            tls.unwrap()
        except (ssl.SSLError, OSError) as exc:
            sys.stderr.write(f"{self.client_address}: {exc}\n")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 12345
    with Server(("", port), Greeter) as server:
        print(f"listening on {port}", flush=True)  # harmless output
        server.serve_forever()
