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

from harness import GradingContext, Launcher, Shared, StudentProcess, fail

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


GOOD = b"a good token from the grader"
ACCEPTS = "Decrypts tokens made by the grader"  # tells the story of a decrypt that accepts nothing


def accepts(p: StudentProcess, plaintext: bytes) -> bool:
    """decrypt accepted a token: exit code 0, and the plaintext is in what it printed.

    Not byte for byte: the exact output has checks of its own (round trip, interop), and one
    mistake costs one penalty. This is only what makes a refusal mean something."""
    return p.returncode == 0 and plaintext in p.stdout.data()


def did(p: StudentProcess, plaintext: bytes) -> str:
    """What a decrypt that did not accept a good token did instead, in words."""
    if p.returncode != 0:
        return f"exited with code {p.returncode}"
    return f"exited with code 0 but printed {p.stdout.data()[:80]!r}, not the plaintext {plaintext!r}"


@pytest.fixture(scope="session")
def good_token(grading: GradingContext, keys: Keys) -> Shared[None]:
    """No vacuous refusals: decrypt must accept the grader's good token before any refusal counts."""

    def run() -> None:
        with grading.launcher() as launcher:
            p = decrypt(launcher, grading, keys.path, keys.fernet.encrypt(GOOD))
        if not accepts(p, GOOD):
            raise fail(
                f"Your decrypt does not accept a good token made by the grader with your key file: it "
                f"{did(p, GOOD)}.\n{p.output_tail(5)}",
                expected=f"exit code 0, and the plaintext {GOOD!r} on stdout",
                hint="Fix decrypt first: until it accepts a good token, refusing a bad one proves nothing.",
            )

    return Shared(run, owner=ACCEPTS)


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
    still answers, with a token of that line under the right key: a client with the wrong key
    gets an answer it cannot read, and a client that sent its line in clear gets it back.
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
                            plain = line.rstrip(b"\r\n")  # answered under the right key all the same
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
