"""Echo client: each line of stdin goes out as a token; each answer is printed."""
import socket
import sys

from cryptography.fernet import Fernet, InvalidToken


def main():
    key_file, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(key_file, 'rb') as f:
        fernet = Fernet(f.read().strip())
    sock = socket.create_connection((host, port))
    answers = sock.makefile('rb')
    for line in sys.stdin.buffer:
        sock.sendall(fernet.encrypt(line.rstrip(b'\n')) + b'\n')
        answer = answers.readline()
        if not answer:
            sys.exit('the server hung up')
        try:
            print(fernet.decrypt(answer.strip()).decode(), flush=True)
        except InvalidToken:
            sys.exit('cannot decrypt the answer: wrong key?')
    sock.close()


main()
