"""Checks for `fernet`: a Fernet command-line tool and an echo service that sends only tokens.

Every check runs the student's programs with a key the grader made (not the student's
genkey), so a broken genkey costs the genkey check only. Checks that credit a refusal
(tampered, wrong key, expired) or an error message first make sure decrypt accepts the
grader's good token (exit 0, the plaintext printed): refusing everything is not checking.
Accepting is not judged byte for byte; the exact output has its own checks."""

from __future__ import annotations

import os
import socket
import time

from cryptography.fernet import Fernet, InvalidToken
from support import (
    LONG,
    SMALL,
    TRACEBACK,
    EchoServer,
    Keys,
    accepts,
    decrypt,
    did,
    encrypt,
    iv_of,
    program,
    read_lines,
    refused,
    tamper,
    tool,
)

import harness
from harness import GradingContext, Launcher, Shared, check, fail

REFUSAL = (
    "A refusal counts only once decrypt accepts the grader's good token (exit 0, the plaintext "
    "printed): refusing everything is not checking."
)

# --- public checks ------------------------------------------------------------------------


@check(
    title="genkey writes a valid key that only you can read",
    points=2,
    expected="`fernet_tool.py genkey KEYFILE` writes a Fernet key; the file has mode 600.",
    hint="Write Fernet.generate_key() to the file, then os.chmod(path, 0o600) (better: create it "
    "with os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)).",
)
def test_genkey(grading: GradingContext, student: Launcher) -> None:
    p = student.run(program(grading, "tool"), "genkey", "student.key", timeout=15)
    data = grading.read_made("student.key", limit=4096)
    status = grading.stat_made("student.key")
    if p.returncode != 0 or data is None or status is None:
        raise fail(f"`{p.label}` exited with code {p.returncode} and made no file.\n{p.output_tail()}")
    try:
        Fernet(data.strip())
    except ValueError as exc:
        raise fail(f"student.key does not hold a Fernet key ({exc}): {data[:80]!r}") from None
    mode = status.st_mode & 0o777
    if mode & 0o077:
        raise fail(f"The key file has mode {mode:03o}: others on the machine can read your secret key.")


@check(
    title="Encrypt then decrypt gives back the input, byte for byte",
    points=3,
    expected="For text, empty input, all 256 byte values, and 3 MB through files (-i/-o).",
    hint="Read and write bytes (sys.stdin.buffer / sys.stdout.buffer), not text; and do not add "
    "or strip anything from the plaintext.",
)
def test_round_trip(grading: GradingContext, student: Launcher, keys: Keys) -> None:
    cases = [
        ("'Hello World'", b"Hello World"),
        ("empty input", b""),
        ("all 256 byte values", bytes(range(256)) * 4),
    ]
    for name, data in cases:
        token = encrypt(student, grading, keys, data)
        back = decrypt(student, grading, keys.path, token)
        if back.returncode != 0 or back.stdout.data() != data:
            raise fail(
                f"For {name}: decrypt gave {back.stdout.data()[:60]!r} (exit {back.returncode}), "
                f"not {data[:60]!r}.\n{back.output_tail(5)}"
            )
    big = os.urandom(3 << 20)
    grading.give("big.bin", big, 0o444)
    steps = [("encrypt", "big.bin", "big.token"), ("decrypt", "big.token", "big.out")]
    for command, src, dst in steps:
        p = tool(student, grading, command, keys.path, "-i", src, "-o", dst, stdin=None, big=True)
        if p.returncode != 0:
            raise fail(f"With files, `{p.label}` exited with code {p.returncode}.\n{p.output_tail(5)}")
    back = grading.read_made("big.out", limit=2 * len(big))
    if back != big:
        size = len(back or b"")
        raise fail(f"3 MB through -i/-o came back as {size:,} bytes that differ from the input.")


@check(
    title="Its tokens decrypt with the grader's Fernet",
    points=2,
    expected="A token from your encrypt is a standard Fernet token for the key.",
    hint="Use cryptography.fernet.Fernet(key).encrypt(data); print the token as it is (it is "
    "already base64), followed by a newline.",
)
def test_interop_ours(grading: GradingContext, student: Launcher, keys: Keys) -> None:
    token = encrypt(student, grading, keys, b"interop check")
    try:
        got = keys.fernet.decrypt(token.strip())
    except InvalidToken:
        raise fail(f"The grader's Fernet cannot decrypt your token: {token[:100]!r}") from None
    if got != b"interop check":
        raise fail(f"Your token decrypts to {got!r}, not b'interop check'.")


@check(
    title="Decrypts tokens made by the grader",
    points=2,
    expected="decrypt prints exactly the plaintext of a standard Fernet token.",
)
def test_interop_theirs(
    grading: GradingContext, student: Launcher, keys: Keys, good_token: Shared[None]
) -> None:
    good_token.get(owner=True)  # accepts a good token at all (what the refusals rely on), then exactly
    data = b"made by the grader \x00\xff"
    p = decrypt(student, grading, keys.path, keys.fernet.encrypt(data) + b"\n")
    if p.returncode != 0 or p.stdout.data() != data:
        raise fail(f"Your decrypt gave {p.stdout.data()[:80]!r} (exit {p.returncode}).\n{p.output_tail(5)}")


@check(
    title="The same plaintext encrypts differently each time",
    points=2,
    expected="Two encryptions of one plaintext give two different tokens, with different IVs.",
    hint="Fernet picks a random IV (and stamps the time) for every token: use Fernet.encrypt, "
    "never a fixed IV. The slide's claim that 'Yes' always gives the same token is wrong for "
    "Fernet, and would be a weakness: an eavesdropper could tell repeated messages apart.",
)
def test_fresh_iv(
    grading: GradingContext, student: Launcher, keys: Keys, evidence: harness.EvidenceRecorder
) -> None:
    one = encrypt(student, grading, keys, b"Yes").strip()
    two = encrypt(student, grading, keys, b"Yes").strip()
    evidence.text("Two encryptions of 'Yes'", f"{one[:120]!r}\n{two[:120]!r}")
    if one == two:
        raise fail(
            "Encrypting 'Yes' twice gave the same output twice: an eavesdropper sees when a message repeats."
        )
    try:  # standard tokens: the IVs themselves must differ (a fixed IV with a fresh timestamp would not do)
        keys.fernet.decrypt(one)
        keys.fernet.decrypt(two)
    except InvalidToken:
        return  # not standard tokens (another check's business); they differ, which is what this one asks
    if iv_of(one) == iv_of(two):
        raise fail(f"Both tokens use the IV {iv_of(one).hex()}: a fixed IV leaks which messages are equal.")


@check(
    title="Refuses a tampered token",
    points=1,
    expected="A token with one bit changed: exit code not 0, nothing on stdout. " + REFUSAL,
    hint="Fernet.decrypt raises InvalidToken when the HMAC does not match: catch it and exit 1.",
    needs="interop-theirs",
)
def test_rejects_tampered(
    grading: GradingContext, student: Launcher, keys: Keys, good_token: Shared[None]
) -> None:
    good_token.get()
    refused(decrypt(student, grading, keys.path, tamper(keys.fernet.encrypt(b"secret"))), "a tampered token")


@check(
    title="Refuses a token made with another key",
    points=1,
    expected="A token made with the grader's other key: exit code not 0, nothing on stdout. " + REFUSAL,
    needs="interop-theirs",
)
def test_rejects_wrong_key(
    grading: GradingContext, student: Launcher, keys: Keys, good_token: Shared[None]
) -> None:
    good_token.get()
    refused(
        decrypt(student, grading, keys.path, keys.wrong.encrypt(b"secret")), "a token made with another key"
    )


@check(
    title="Refuses a token older than --ttl",
    points=2,
    expected="decrypt --ttl 60 of a token made an hour ago: exit code not 0, nothing on stdout; "
    "without --ttl the same token is accepted (exit 0, the plaintext printed). " + REFUSAL,
    hint="Pass the --ttl value to Fernet.decrypt(token, ttl=...), and ttl=None when it is not given.",
    needs="interop-theirs",
)
def test_rejects_expired(
    grading: GradingContext, student: Launcher, keys: Keys, good_token: Shared[None]
) -> None:
    good_token.get()
    old = keys.fernet.encrypt_at_time(b"old news", int(time.time()) - 3600)
    p = decrypt(student, grading, keys.path, old)
    if not accepts(p, b"old news"):
        raise fail(
            f"Without --ttl, your decrypt does not accept the grader's good token made an hour ago: it "
            f"{did(p, b'old news')}. Refusing it with --ttl 60 then proves nothing.\n{p.output_tail(5)}"
        )
    refused(decrypt(student, grading, keys.path, old, "--ttl", "60"), "an hour-old token with --ttl 60")


@check(
    title="Errors are one clear line, never a traceback",
    points=2,
    expected="When decrypt refuses a token, stderr says why in words, without a Python traceback "
    "(judged once decrypt accepts the grader's good token: an error for everything is not an error message).",
    hint="Catch cryptography.fernet.InvalidToken and print e.g. 'invalid token: wrong key, "
    "tampered with, or expired' to sys.stderr, then exit 1.",
    needs="interop-theirs",
)
def test_clean_errors(
    grading: GradingContext, student: Launcher, keys: Keys, good_token: Shared[None]
) -> None:
    good_token.get()
    runs = [
        ("a tampered token", decrypt(student, grading, keys.path, tamper(keys.fernet.encrypt(b"x")))),
        ("a token for another key", decrypt(student, grading, keys.path, keys.wrong.encrypt(b"x"))),
    ]
    judged = [(what, p) for what, p in runs if p.returncode != 0]
    if not judged:
        raise fail(
            "Your decrypt refused none of the bad tokens, so there is no error message to judge "
            "(see the 'Refuses ...' checks)."
        )
    for what, p in judged:
        err = p.stderr.text().strip()
        if TRACEBACK in err:
            raise fail(f"For {what}, your program crashed with a traceback:\n{p.output_tail(8)}")
        if not err:
            raise fail(
                f"For {what}, your program exited with code {p.returncode} but said nothing on stderr."
            )


def only_tokens(data: bytes, keys: Keys, side: str, messages: list[bytes]) -> None:
    """Everything one side sent: no message in clear, and every line a token for the key."""
    for msg in messages:
        if msg in data:
            raise fail(f"{side} sent {msg[:60]!r} in clear: anyone on the network can read it.")
    for line in data.split(b"\n"):
        if line.strip():
            try:
                keys.fernet.decrypt(line.strip())
            except InvalidToken:
                raise fail(f"{side} sent a line that is not a token for the key: {line[:80]!r}") from None


def eavesdropped(conn: harness.Connection) -> str:
    return "\n".join(
        f"{who} sent {len(data):,} bytes: {harness.printable(data[:240])}"
        for who, data in (("client", conn.client_stream), ("server", conn.server_stream))
    )


@check(
    title="Echo server answers with fresh tokens only, long messages too",
    points=3,
    expected="For each token line, a new token (not the same one) of the same plaintext, and nothing "
    "else on the wire; a 270 kB token works like a short one.",
    hint="Read whole lines (sock.makefile('rb')), not one recv(): a long token arrives in many "
    "pieces. Decrypt, then encrypt the answer yourself.",
)
def test_echo_server(
    grading: GradingContext, student: Launcher, keys: Keys, evidence: harness.EvidenceRecorder
) -> None:
    port = grading.port
    student.server(program(grading, "server"), keys.path, str(port))
    messages = [*SMALL[:2], LONG, SMALL[2]]
    with socket.create_connection(grading.wire.address_for(port), timeout=10) as sock:
        client_port = sock.getsockname()[1]
        for i, msg in enumerate(messages):
            token = keys.fernet.encrypt(msg)
            sock.sendall(token + b"\n")
            answer = read_lines(sock, 1, 10)
            what = f"message {i + 1} ({len(msg):,} bytes)"
            if not answer:
                raise fail(f"No answer to {what}: the server closed the connection or stayed silent.")
            if answer[0].strip() == token:
                raise fail(
                    f"The answer to {what} is our token sent back unchanged: the server did not decrypt it."
                )
            try:
                back = keys.fernet.decrypt(answer[0].strip())
            except InvalidToken:
                raise fail(f"The answer to {what} is not a token for the key: {answer[0][:80]!r}") from None
            if back != msg:
                raise fail(
                    f"The answer to {what} decrypts to {len(back):,} bytes that differ from the message."
                )
    conn = grading.wire.connection(client_port, port)
    evidence.text("What an eavesdropper saw", eavesdropped(conn))
    only_tokens(conn.server_stream, keys, "Your server", messages)


@check(
    title="Echo client sends only tokens and prints the answers",
    points=3,
    expected="Against the grader's echo server, the client sends only tokens and prints each message "
    "of its stdin, in order, a 200 kB line included.",
    hint="Send fernet.encrypt(line) + b'\\n' for each line; read each answer as a whole line.",
)
def test_echo_client(
    grading: GradingContext,
    student: Launcher,
    keys: Keys,
    echo_server: EchoServer,
    evidence: harness.EvidenceRecorder,
) -> None:
    messages = [*SMALL[:2], LONG, SMALL[2]]
    since = grading.wire.mark()
    host, port = grading.wire.address_for(echo_server.port)
    p = student.run(
        program(grading, "client"),
        keys.path,
        host,
        str(port),
        stdin=b"\n".join(messages) + b"\n",
        timeout=20,
        output_bytes=1 << 20,
    )
    conns = grading.wire.connections(echo_server.port, since)
    if conns:
        evidence.text("What an eavesdropper saw", eavesdropped(conns[0]))
    for conn in conns:
        only_tokens(conn.client_stream, keys, "Your client", messages)
    lines = p.stdout.data().split(b"\n")
    if p.returncode != 0 or lines[: len(messages)] != messages or not conns:
        shown = [f"{len(x):,} bytes" if len(x) > 60 else repr(x) for x in lines[: len(messages)]]
        raise fail(f"The client printed {shown} and exited with code {p.returncode}.\n{p.output_tail(5)}")
