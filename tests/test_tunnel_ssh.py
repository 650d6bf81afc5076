"""Issue 15, `ssh-tunnel`: the pieces below the samples, and what must hold around a batch.

The samples in tests/submissions/ssh-tunnel/ grade every finding end to end (test_graders.py:
each loses exactly its check). Here: where a forward listens (read from /proc), asking a
program to end and seeing what it left, sshd's log read as the checks read it, the per-run host
certificate as OpenSSH reads it, no sshd or ssh outliving a batch, and a session that cannot
run sshd reporting a grader error, never a student failure, and an ordinary user's self-check
that can (sshd in the sandbox, as that user).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import Outcome, SSHKeyPair, SSHLog, host_certificate, socket_owner
from harness._assignment import load_assignment
from harness._listeners import _address, ask_to_end, is_loopback, listening_addresses
from harness._process import Limits, StudentProcess, clean_environment
from harness._runner import SessionOptions, run_session
from tests.conftest import (
    Exercises,
    check_as_nobody,
    needs_openssh,
    needs_tshark,
    own_session_processes,
)

# --- where a forward listens --------------------------------------------------------------


def test_proc_net_addresses_read_as_the_kernel_wrote_them() -> None:
    assert _address("0100007F") == "127.0.0.1"
    assert _address("00000000") == "0.0.0.0"
    assert _address("00000000000000000000000001000000") == "::1"
    assert _address("00000000000000000000000000000000") == "::"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::")


def test_listening_addresses_names_loopback_and_every_interface_apart() -> None:
    with socket.create_server(("127.0.0.1", 0)) as loop, socket.create_server(("0.0.0.0", 0)) as wide:
        assert listening_addresses(loop.getsockname()[1], {os.getpid()}) == ["127.0.0.1"]
        assert listening_addresses(wide.getsockname()[1], {os.getpid()}) == ["0.0.0.0"]
        assert listening_addresses(wide.getsockname()[1], {1}) == []  # not that process's socket


# --- asking a program to end -----------------------------------------------------------------


def _started(tmp_path: Path, script: str) -> StudentProcess:
    return StudentProcess(
        ["bash", "-c", script], cwd=tmp_path, env=clean_environment(tmp_path), limits=Limits()
    ).start()


def test_a_program_that_execs_ends_with_one_sigterm(tmp_path: Path) -> None:
    proc = _started(tmp_path, "exec sleep 60")
    try:
        ending = ask_to_end(proc, timeout=5)
        assert ending.asked and ending.left == ()
    finally:
        proc.kill()


def test_a_shell_that_dies_of_sigterm_leaves_its_child_and_that_is_seen(tmp_path: Path) -> None:
    """tunnel.sh without exec: bash dies, ssh (here: sleep) lives on, holding the port."""
    proc = _started(tmp_path, "sleep 60; echo never")
    try:
        deadline = time.monotonic() + 10
        while len(proc.pids()) < 2 and time.monotonic() < deadline:  # until bash has started sleep
            time.sleep(0.01)
        ending = ask_to_end(proc, timeout=1)
        assert ending.asked
        assert [c.split()[0] for c in ending.left] == ["sleep"]
    finally:
        proc.kill()


# --- sshd's log, as the checks read it -------------------------------------------------------

FP = "SHA256:rGVqTqn190E7gieBfkL3g3aumvZ5HuIX2NHsLfnySK4"
LOG = f"""\
Server listening on 127.0.0.1 port 2222.
Connection from 127.0.0.1 port 40000 on 127.0.0.1 port 2222 rdomain ""
Failed none for tunnel from 127.0.0.1 port 40000 ssh2
Failed password for tunnel from 127.0.0.1 port 40000 ssh2
Accepted publickey for tunnel from 127.0.0.1 port 40000 ssh2: ED25519 {FP}
debug1: server_request_direct_tcpip: originator 127.0.0.1 port 54640, target localhost port 9000
Received request from 127.0.0.1 port 40000 to connect to host localhost port 9001, but the request was denied.
Invalid user Accepted publickey for tunnel {FP} from 127.0.0.1 port 40002
"""


def test_sshd_log_tells_logins_password_attempts_and_refused_forwards() -> None:
    log = SSHLog(LOG)
    assert log.accepted == [f"Accepted publickey for tunnel from 127.0.0.1 port 40000 ssh2: ED25519 {FP}"]
    assert log.accepted_key(FP) and not log.accepted_key("SHA256:other")
    assert log.password_attempts == ["Failed password for tunnel from 127.0.0.1 port 40000 ssh2"]
    assert log.refused_forwards == ["localhost port 9001"]
    assert log.forwards == [("localhost", 9000)]


def test_a_user_name_cannot_forge_a_login_line() -> None:
    """The client chooses the user name sshd logs; only a line sshd starts itself counts."""
    log = SSHLog(LOG.splitlines()[-1])
    assert log.accepted == [] and not log.accepted_key(FP)


def test_key_pair_fingerprint_is_the_one_sshd_logs(tmp_path: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed")
    pair = SSHKeyPair.generate("student@wiregrade")
    (tmp_path / "k.pub").write_text(pair.public + "\n")
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(tmp_path / "k.pub")], capture_output=True, text=True)
    assert out.stdout.split()[1] == pair.fingerprint


def test_host_certificate_is_one_openssh_reads_for_the_name_and_the_ca(tmp_path: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed")
    ca, host = SSHKeyPair.generate("ca"), SSHKeyPair.generate("host")
    (tmp_path / "ca.pub").write_text(ca.public + "\n")
    (tmp_path / "host-cert.pub").write_text(host_certificate(ca.private, host, ["horiem.ca"]) + "\n")
    shown = subprocess.run(
        ["ssh-keygen", "-L", "-f", str(tmp_path / "host-cert.pub")], capture_output=True, text=True
    ).stdout
    assert "host certificate" in shown
    assert f"Signing CA: ED25519 {ca.fingerprint}" in shown
    assert "Principals: \n                horiem.ca\n" in shown


# --- around a batch ---------------------------------------------------------------------------


@needs_tshark
@needs_openssh
@pytest.mark.slow
def test_no_sshd_or_ssh_outlives_the_batch(exercises: Exercises) -> None:
    graded = exercises.graded("ssh-tunnel")
    # sshd and ssh really ran: the reference went through the tunnel; two samples leave an ssh
    # behind on purpose (no exec, ssh -f): the harness must end those too
    ref = {c.id: c.outcome for c in graded["reference"].checks}
    assert ref["ssh-round-trip"] is Outcome.PASSED
    assert {c.id for c in graded["no-exec"].checks if c.outcome is not Outcome.PASSED} == {"ssh-ends-cleanly"}
    assert own_session_processes(also=("sshd", "ssh")) == []


@needs_tshark
@needs_openssh
@pytest.mark.slow
@pytest.mark.parametrize(
    ("options", "code", "says"),
    [
        # an ordinary user's self-check: sshd runs in the sandbox, as that user
        ((), 0, "Score: 18/18 on 5 public checks."),
        # ... and where it cannot run sshd, every check is the grader's error, never a failure
        (("--sandbox", "off"), 3, "runs sshd in the bubblewrap sandbox, which is not available"),
    ],
    ids=["self-check", "no-sandbox-no-sshd"],
)
def test_a_student_without_root_gets_the_ssh_part_or_a_grader_error(
    exercises: Exercises, request: pytest.FixtureRequest, options: tuple[str, ...], code: int, says: str
) -> None:
    reference = exercises.submissions("ssh-tunnel") / "reference"
    run, work = check_as_nobody(request, reference, "ssh-tunnel", *options)
    assert run.returncode == code, run.stdout + run.stderr
    assert says in run.stdout, run.stdout
    if code == 3:
        assert "FAIL" not in run.stdout and "PASS" not in run.stdout, run.stdout
        session = json.loads((work / ".wiregrade-report" / "session.json").read_text())
        assert [c["outcome"] for c in session["checks"]] == ["error"] * 5, run.stdout


@needs_tshark
@needs_openssh
@pytest.mark.slow
def test_relay_backend_grades_the_reference_alike(exercises: Exercises, tmp_path: Path) -> None:
    """Without a capture, relays on 2222 and 9000 record both hops: the same full marks."""
    relay = run_session(
        load_assignment("ssh-tunnel"),
        exercises.submissions("ssh-tunnel") / "reference",
        tmp_path,
        "reference",
        SessionOptions(wire="relay"),
    )
    assert relay.environment.wire == "relay"
    assert [(c.id, c.seen) for c in relay.checks if c.outcome is not Outcome.PASSED] == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another uid")
def test_the_kernel_says_which_uid_opened_a_connection() -> None:
    """What 'through sshd' rests on: the echo server asks the kernel's socket table who opened
    each connection (sshd has a uid of its own), never a log line a client can write into."""
    nobody = pwd.getpwnam("nobody")
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    code = f"import socket, sys; s = socket.create_connection(('127.0.0.1', {port})); sys.stdin.read()"
    child = subprocess.Popen(
        ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
        + [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
    )
    try:
        server.settimeout(30)
        conn, peer = server.accept()
        assert socket_owner(peer[0], peer[1], port) == nobody.pw_uid
        assert socket_owner(peer[0], peer[1] + 1 if peer[1] < 65535 else 1, port) is None
        conn.close()
    finally:
        child.communicate(timeout=30)
        server.close()


def test_two_live_sessions_never_share_a_uid() -> None:
    """Sessions whose pids differ by 100,000 (possible where pid_max is 4,194,304) got one uid
    before: killing one session's sshd or student took the other's."""
    from harness._accounts import server_uid
    from harness._user import PID_LIMIT, student_uid

    pids = [1, 100_001, 200_001, PID_LIMIT - 1]
    uids = [f(p) for p in pids for f in (student_uid, server_uid)]
    assert len(set(uids)) == len(uids)
