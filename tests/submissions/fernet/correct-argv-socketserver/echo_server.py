"""Echo server with socketserver: one thread per client, one token per line both ways."""
import socketserver
import sys

from cryptography.fernet import Fernet, InvalidToken

with open(sys.argv[1], 'rb') as f:
    FERNET = Fernet(f.read().strip())
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 23456


class EchoHandler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            try:
                message = FERNET.decrypt(line.strip())
            except InvalidToken:
                print('bad token from', self.client_address, file=sys.stderr)
                return
            self.wfile.write(FERNET.encrypt(message) + b'\n')


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


with Server(('', PORT), EchoHandler) as server:
    server.serve_forever()
