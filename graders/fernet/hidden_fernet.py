"""Hidden checks for `fernet`: run when the instructor grades; never in a student bundle."""

from __future__ import annotations

from support import (
    EchoServer,
    Keys,
    program,
)

from harness import GradingContext, Launcher, check, fail

# --- hidden checks ------------------------------------------------------------------------


@check(
    title="A client with the wrong key reports an error, not garbage",
    points=2,
    visibility="hidden",
    expected="Given the wrong key, the client exits with a non-zero code and prints no 'message'.",
    hint="Catch InvalidToken when decrypting the answer: say so on stderr and exit 1.",
)
def test_client_wrong_key(grading: GradingContext, student: Launcher, keys: Keys) -> None:
    server = EchoServer(keys.fernet, answer_anyway=True)
    try:
        p = student.run(
            program(grading, "client"),
            keys.wrong_path,
            "127.0.0.1",
            str(server.port),
            stdin=b"hello\n",
            timeout=20,
        )
    finally:
        server.close()
    if p.returncode == 0:
        raise fail(f"With the wrong key the client exited with code 0 and printed {p.stdout.data()[:80]!r}.")
    if p.stdout.data().strip():
        raise fail(
            f"With the wrong key the client printed {p.stdout.data()[:80]!r} as if it were the answer."
        )
