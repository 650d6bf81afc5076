"""Relays one connection from 127.0.0.1:7000 to the echo server, in clear, then exits."""

import socket
import threading

srv = socket.create_server(("127.0.0.1", 7000))
client, _ = srv.accept()
backend = socket.create_connection(("127.0.0.1", 9000))


def pump(src: socket.socket, dst: socket.socket) -> None:
    while data := src.recv(4096):
        dst.sendall(data)
    dst.shutdown(socket.SHUT_WR)


back = threading.Thread(target=pump, args=(backend, client))
back.start()
pump(client, backend)
back.join()
