"""The student process runner: limits, output caps, readiness, and killing every process."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import pytest

from harness import CheckFailed, HarnessError, StudentTimeout
from harness._proc import process_tree
from harness._process import Limits, StudentProcess, clean_environment
from tests.conftest import ROOT, interpreter_for_nobody


def start(tmp_path: Path, code: str, limits: Limits | None = None, *args: str) -> StudentProcess:
    (tmp_path / "prog.py").write_text(textwrap.dedent(code))
    return StudentProcess(
        [sys.executable, "prog.py", *args], tmp_path, clean_environment(tmp_path), limits or Limits()
    ).start()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def wait_for_file(path: Path, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


def test_grandchildren_and_escaped_daemons_are_killed(tmp_path: Path) -> None:
    proc = start(
        tmp_path,
        """
        import os, time
        if os.fork() == 0:              # a child in our group
            if os.fork() == 0:          # a grandchild that leaves the group and the session
                os.setsid()
                open("grandchild.pid", "w").write(str(os.getpid()))
            while True: time.sleep(1)
        open("parent.pid", "w").write(str(os.getpid()))
        while True: time.sleep(1)
    """,
    )
    with proc:
        grandchild = int(wait_for_file(tmp_path / "grandchild.pid"))
        wait_for_file(tmp_path / "parent.pid")
        assert grandchild in proc.pids()
        assert alive(grandchild)
    assert not alive(grandchild)
    assert not (process_tree(proc.pid, proc.pid) - {proc.pid})


def test_stdin_is_closed_and_the_environment_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSLKEYLOGFILE", "/tmp/leak.log")
    with start(
        tmp_path,
        """
        import os, sys
        print(repr(sys.stdin.read()), os.environ.get("SSLKEYLOGFILE"), os.environ["HOME"])
    """,
    ) as proc:
        assert proc.wait_exit(10) == 0
    assert proc.stdout.text().split() == ["''", "None", str(tmp_path)]


def test_output_is_capped_but_drained(tmp_path: Path) -> None:
    with start(
        tmp_path,
        """
        import sys
        for _ in range(64):
            sys.stdout.write("y" * 65536)
        print("done", file=sys.stderr)
    """,
        Limits(output_bytes=1000),
    ) as proc:
        assert proc.wait_exit(20) == 0  # it never blocked on a full pipe
    assert proc.stdout.total == 64 * 65536
    assert proc.stdout.truncated
    assert "output truncated: 4,194,304 bytes in all, first 1,000 kept" in proc.stdout.text()


def test_memory_limit_holds(tmp_path: Path) -> None:
    with start(
        tmp_path,
        """
        try:
            b = bytearray(800 * 1024 * 1024)
            print("allocated")
        except MemoryError:
            print("refused")
    """,
        Limits(memory_bytes=256 << 20),
    ) as proc:
        proc.wait_exit(20)
    assert proc.stdout.text().strip() == "refused"


def test_cpu_limit_kills_a_spinning_program(tmp_path: Path) -> None:
    with start(tmp_path, "while True: pass\n", Limits(cpu_seconds=1)) as proc:
        proc.wait_exit(20)
    assert "SIGXCPU" in proc.describe_exit() or "SIGKILL" in proc.describe_exit()


def test_readiness_is_observed_on_the_port(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with start(
        tmp_path,
        """
        import socket, sys, time
        time.sleep(0.3)  # a slow start: readiness must wait for it, not guess
        s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
        conn, _ = s.accept()          # serves exactly one client: a probe would use it up
        conn.sendall(b"first client")
    """,
        None,
        str(port),
    ) as proc:
        proc.wait_listening(port, 10)
        with socket.create_connection(("127.0.0.1", port)) as c:
            assert c.recv(100) == b"first client"  # readiness did not consume the one client


def test_readiness_timeout_is_the_students_timeout(tmp_path: Path) -> None:
    proc = start(tmp_path, "import time\nprint('booting', flush=True)\ntime.sleep(60)\n")
    with proc, pytest.raises(StudentTimeout) as err:
        proc.wait_listening(1, 0.5)
    assert "did not listen on TCP port 1 within 0.5 s" in err.value.seen
    assert "booting" in err.value.seen
    assert "listen()" in err.value.hint


def test_exit_before_listening_is_a_failure_with_its_traceback(tmp_path: Path) -> None:
    proc = start(tmp_path, "raise SystemExit(open('server.pem').read())\n")
    with proc, pytest.raises(CheckFailed) as err:
        proc.wait_listening(12345, 10)
    assert not isinstance(err.value, StudentTimeout)
    assert "stopped before it listened" in err.value.seen
    assert "FileNotFoundError" in err.value.seen and "server.pem" in err.value.seen


def test_a_program_that_cannot_start_is_a_harness_error(tmp_path: Path) -> None:
    with pytest.raises(HarnessError):
        StudentProcess([str(tmp_path / "no-such-interpreter")], tmp_path, {}).start()


def test_a_fork_bomb_is_contained() -> None:
    """As an unprivileged user (RLIMIT_NPROC does not bind root), a fork bomb stops and dies."""
    exe, why = interpreter_for_nobody()
    if exe is None:
        pytest.skip(why)
    nobody = pwd.getpwnam("nobody")
    site = sysconfig.get_paths()["purelib"]
    run = subprocess.run(
        [
            "setpriv",
            f"--reuid={nobody.pw_uid}",
            f"--regid={nobody.pw_gid}",
            "--clear-groups",
            exe,
            str(ROOT / "tests/helpers/forkbomb.py"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        check=False,
        env={"PATH": os.environ["PATH"], "HOME": "/tmp", "PYTHONPATH": f"{ROOT}:{site}"},
    )
    assert run.returncode == 0, run.stderr
    first, last = run.stdout.strip().splitlines()
    assert first.startswith("stopped at"), run.stdout
    forked = int(first.split()[2])
    assert forked <= 40 and "Resource temporarily unavailable" in first
    assert last == "left 0 zombies 0"
