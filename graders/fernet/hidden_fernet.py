"""Hidden checks for `fernet`: run when the instructor grades; never in a student bundle."""

from __future__ import annotations

from support import (
    TRACEBACK,
    EchoServer,
    Keys,
    program,
)

from harness import Blocked, GradingContext, Launcher, StudentProcess, check, fail

# --- hidden checks ------------------------------------------------------------------------


def client_says_hello(student: Launcher, grading: GradingContext, key_path: str, port: int) -> StudentProcess:
    return student.run(
        program(grading, "client"), key_path, "127.0.0.1", str(port), stdin=b"hello\n", timeout=20
    )


@check(
    title="A client with the wrong key reports an error, not garbage",
    points=2,
    visibility="hidden",
    expected="Given the wrong key, the client exits with a non-zero code, prints no 'message' on stdout "
    "and says why in one line on stderr, without a traceback (judged once the client, given the right "
    "key, prints the answer).",
    hint="Catch InvalidToken when decrypting the answer: say so on stderr and exit 1.",
    needs="echo-client",
)
def test_client_wrong_key(grading: GradingContext, student: Launcher, keys: Keys) -> None:
    server = EchoServer(keys.fernet, answer_anyway=True)
    try:
        right = client_says_hello(student, grading, keys.path, server.port)
        wrong = client_says_hello(student, grading, keys.wrong_path, server.port)
    finally:
        server.close()
    if right.returncode != 0 or b"hello" not in right.stdout.data():
        raise Blocked(
            f"With the right key, your client did not print the answer to 'hello' (exit {right.returncode}, "
            f"printed {right.stdout.data()[:80]!r}), so refusing with the wrong key proves nothing "
            "(see 'Echo client sends only tokens and prints the answers').\n" + right.output_tail(5)
        )
    if wrong.returncode == 0:
        raise fail(
            f"With the wrong key the client exited with code 0 and printed {wrong.stdout.data()[:80]!r}."
        )
    if wrong.stdout.data().strip():
        raise fail(
            f"With the wrong key the client printed {wrong.stdout.data()[:80]!r} as if it were the answer."
        )
    err = wrong.stderr.text().strip()
    if TRACEBACK in err:
        raise fail(f"With the wrong key the client crashed with a traceback:\n{wrong.output_tail(8)}")
    if not err:
        raise fail(
            f"With the wrong key the client exited with code {wrong.returncode} but said nothing on stderr."
        )
