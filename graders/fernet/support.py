"""Shared by the public and hidden checks of `fernet`: helpers and fixtures (no check lives here)."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from cryptography.fernet import Fernet, InvalidToken

from harness import GradingContext, Launcher, StudentProcess, fail

TRACEBACK = "Traceback (most recent call last)"
SMALL = [b"Hello World", b"caf\xc3\xa9 \xf0\x9f\x94\x92 with spaces", b"last one"]
LONG = b"0123456789abcdef" * 12500  # 200 kB: a token of ~270 kB, far more than one recv()


@dataclass
class Keys:
    path: str  # file name in the submission folder
    fernet: Fernet
    wrong_path: str
    wrong: Fernet


@pytest.fixture(scope="session")
def keys(grading: GradingContext) -> Keys:
    """The grader's key (and a wrong one), handed to the student's programs read-only."""
    made = []
    for name in ("grader.key", "wrong.key"):
        key = Fernet.generate_key()
        grading.give(name, key + b"\n", 0o400)
        made.append((name, Fernet(key)))
    return Keys(made[0][0], made[0][1], made[1][0], made[1][1])


def program(ctx: GradingContext, name: str) -> str:
    return ctx.assignment.settings["program"][name]


def tool(
    student: Launcher, ctx: GradingContext, *args: str, stdin: bytes | None = b"", big: bool = False
) -> StudentProcess:
    return student.run(
        program(ctx, "tool"), *args, stdin=stdin, timeout=15, output_bytes=(8 << 20) if big else None
    )


def encrypt(student: Launcher, ctx: GradingContext, keys: Keys, data: bytes) -> bytes:
    p = tool(student, ctx, "encrypt", keys.path, stdin=data)
    if p.returncode != 0:
        raise fail(
            f"`{p.label}` exited with code {p.returncode}.\n{p.output_tail()}",
            expected="a token on stdout and exit code 0",
        )
    return p.stdout.data()


def decrypt(
    student: Launcher, ctx: GradingContext, key_path: str, token: bytes, *extra: str
) -> StudentProcess:
    return tool(student, ctx, "decrypt", key_path, *extra, stdin=token)


def iv_of(token: bytes) -> bytes:
    """Bytes 9..25 of a Fernet token: version (1), timestamp (8), IV (16), ciphertext, HMAC."""
    raw = base64.urlsafe_b64decode(token.strip())
    return raw[9:25]


def tamper(token: bytes) -> bytes:
    raw = bytearray(base64.urlsafe_b64decode(token.strip()))
    raw[-40] ^= 0x01  # one bit of the ciphertext: the HMAC must catch it
    return base64.urlsafe_b64encode(bytes(raw))


def accepts_good_token(student: Launcher, ctx: GradingContext, keys: Keys) -> None:
    """No vacuous refusals: the tool must first decrypt a good token."""
    good = keys.fernet.encrypt(b"a good token")
    p = decrypt(student, ctx, keys.path, good)
    if p.returncode != 0 or p.stdout.data() != b"a good token":
        raise fail(
            "Your decrypt does not accept a good token, so refusing a bad one proves nothing "
            "(see 'Decrypts tokens made by the grader').",
            hint="Fix decrypt first; this check runs again then.",
        )


def refused(p: StudentProcess, what: str) -> None:
    if p.returncode == 0:
        raise fail(
            f"Your decrypt accepted {what} (exit code 0) and printed {p.stdout.data()[:80]!r}.",
            expected="exit code not 0, and nothing on stdout",
        )
    if p.stdout.data():
        raise fail(
            f"Your decrypt exited with code {p.returncode} but printed {p.stdout.data()[:80]!r} on "
            "stdout: a program reading your output could take it for plaintext.",
            expected="nothing on stdout when the token is refused",
        )


# --- the grader's own echo server -------------------------------------------------------


@dataclass
class EchoServer:
    """The grader's echo server: answers each token with a fresh token of its plaintext.

    A line that is not a token for the key is recorded; with ``answer_anyway`` the server
    still answers (with a token under the right key), to see what a client with the wrong
    key does with an answer it cannot read.
    """

    fernet: Fernet
    answer_anyway: bool = False
    received: list[bytes] = field(default_factory=list)
    bad: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(10)
            with conn, conn.makefile("rb") as lines:
                try:
                    for line in lines:
                        try:
                            plain = self.fernet.decrypt(line.strip())
                            self.received.append(plain)
                        except InvalidToken:
                            self.bad.append(line[:200])
                            if not self.answer_anyway:
                                break
                            plain = b"an answer you cannot read"
                        conn.sendall(self.fernet.encrypt(plain) + b"\n")
                except OSError:
                    continue

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo_server(keys: Keys) -> Iterator[EchoServer]:
    server = EchoServer(keys.fernet)
    yield server
    server.close()


def read_lines(sock: socket.socket, n: int, timeout: float) -> list[bytes]:
    """Up to ``n`` lines, bounded by ``timeout`` in all."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    lines: list[bytes] = []
    while len(lines) < n and (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 16)
        except (TimeoutError, OSError):
            break
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf and len(lines) < n:
            line, _, rest = bytes(buf).partition(b"\n")
            lines.append(line)
            buf = bytearray(rest)
    return lines
