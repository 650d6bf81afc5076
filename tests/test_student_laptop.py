"""A student's first run on their own Linux laptop: no root, a fresh venv, what the README says.

The parts of it that need no other user: a port a previous run left in TIME_WAIT or that is
really taken (each in a network namespace this test makes, so port 12345 is its own), Ubuntu
24.04's restriction on user namespaces (emulated: see harness._isolation.RESTRICT_ENV), Ctrl-C.
Then the whole path as an ordinary user: the bundle, a fresh venv, the README's commands
read from the README and run literally, with and without user namespaces and without tshark.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness._isolation import RESTRICT_ENV, probe_user_namespace
from harness.cli import main
from tests.conftest import ROOT, Exercises, interpreter_for_nobody, needs_tshark, own_session_processes

PORT = 12345  # the handout's, hard-coded in the lecture's server

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a network namespace")


def test_the_probe_sees_ubuntus_restriction_before_the_session_depends_on_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(RESTRICT_ENV, "1")
    why = probe_user_namespace()
    assert "user namespaces are restricted on this system" in why and "uid_map" in why
    monkeypatch.delenv(RESTRICT_ENV)
    if os.geteuid() == 0 or Path("/proc/sys/kernel/unprivileged_userns_clone").read_text().strip() != "0":
        assert probe_user_namespace() == ""  # this machine allows them (root always may)


# A child in a network namespace of its own (loopback only): port 12345 there is this test's.
# It sets the port up as the test asks, then runs `wiregrade check` with --isolation off, so
# the session grades in that namespace as it would in a laptop's own network.
_IN_OWN_NETWORK = textwrap.dedent(
    """
    import socket, sys, time
    from pathlib import Path
    from harness._isolation import CLONE_NEWNET, _unshare, bring_up_loopback

    _unshare(CLONE_NEWNET)
    bring_up_loopback()
    how, folder, out, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    def states(port):
        rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
        return [r.split()[3] for r in rows if int(r.split()[1].rsplit(":", 1)[1], 16) == port]

    if how == "time-wait":  # a previous run: its server closed first, as the lecture's does
        listener = socket.create_server(("127.0.0.1", port))
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = listener.accept()
        conn.close()
        client.recv(1)
        client.close()
        listener.close()
        deadline = time.monotonic() + 10
        while "06" not in states(port) and time.monotonic() < deadline:
            time.sleep(0.01)  # polling /proc, bounded
        plain = socket.socket()
        try:
            plain.bind(("127.0.0.1", port))  # without SO_REUSEADDR, as the old probe did
            sys.exit("the port is not in TIME_WAIT: the test set nothing up")
        except OSError:
            pass
        plain.close()
    elif how == "listening":  # the student's own server, still running
        holder = socket.create_server(("127.0.0.1", port))
    from harness.cli import main
    sys.exit(main(["check", "tls-server", folder, "--out", out, "--isolation", "off"]))
    """
)


def _check_in_own_network(how: str, folder: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _IN_OWN_NETWORK, how, str(folder), str(out), str(PORT)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        check=False,
    )


@needs_root
@needs_tshark
@pytest.mark.slow
def test_a_previous_runs_time_wait_does_not_move_the_server(
    tls_server_submissions: Path, tmp_path: Path
) -> None:
    run = _check_in_own_network("time-wait", tls_server_submissions / "lecture", tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "16/20 on 8 public checks" in run.stdout  # before: 0/20, graded on a port it never used
    assert "was busy" not in run.stdout


@needs_root
@needs_tshark
@pytest.mark.slow
def test_a_busy_handout_port_is_said_and_never_grades_a_server_on_a_port_it_ignores(
    tls_server_submissions: Path, tmp_path: Path
) -> None:
    run = _check_in_own_network("listening", tls_server_submissions / "lecture", tmp_path / "lecture")
    assert run.returncode == 3, run.stdout + run.stderr  # a grader error: not the student's 0/20
    said = " ".join(run.stdout.split())
    assert f"port {PORT} was busy on this machine (held by process " in said
    assert "Stop whatever holds port 12345 (your own server still running?) and re-run" in said
    assert not re.search(r"^\s+FAIL ", run.stdout, re.M), run.stdout
    # a server that takes the port it is given is graded on it, and says where
    run = _check_in_own_network("listening", tls_server_submissions / "reference", tmp_path / "reference")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "20/20 on 8 public checks" in run.stdout
    assert f"Note: port {PORT} was busy on this machine" in run.stdout


@needs_tshark
@pytest.mark.slow
def test_ctrl_c_is_one_line_and_stops_everything(tls_server_submissions: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "check", "tls-server", str(tls_server_submissions / "lecture")]
        + ["--out", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stderr is not None
    header = proc.stdout.readline()
    assert header.startswith("wiregrade check tls-server")  # at once, before any check ran
    for line in proc.stdout:  # each check as it finishes: interrupt after the first
        if " PASS " in line or " FAIL " in line:
            assert proc.poll() is None  # printed while the session still runs
            proc.send_signal(signal.SIGINT)
            break
    assert proc.wait(60) == 130
    err = proc.stderr.read()
    assert "Traceback" not in err and [x for x in err.splitlines() if x.strip()] == [
        "wiregrade: interrupted (Ctrl-C); everything it started was stopped."
    ]
    deadline = time.monotonic() + 10
    while own_session_processes() and time.monotonic() < deadline:
        time.sleep(0.05)  # polling /proc for what the session left, bounded
    assert own_session_processes() == []


# --- the whole path, as an ordinary user ----------------------------------------------------


def readme_self_check(readme: str) -> list[str]:
    """The commands of the README's self-check, as a student copies them: every shell block
    under the heading that names the self-check (up to the next heading), comments and blank
    lines dropped, ending with the `wiregrade check` itself."""
    commands: list[str] = []
    inside = fence = False
    for line in readme.splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and re.match(r"#+\s", line):  # a heading (a shell comment is in a fence)
            inside = bool(re.match(r"#+\s*self-check\b", line, re.I))
        elif fence and inside:
            command = re.sub(r"\s+#.*$", "", line).strip().removeprefix("$ ")
            if command and not command.startswith("#"):
                commands.append(command)
    assert commands and "wiregrade check" in commands[-1], f"no self-check command in the README: {commands}"
    return commands


def test_readme_commands_are_read_as_a_student_copies_them() -> None:
    readme = (
        "# T\n\n## What the self-check needs\n\n```sh\nsudo apt install tshark\n```\n\n## Self-check\n\n"
        "```sh\npython3 -m venv ~/v   # once\n\n# then\n```\n\nThen:\n\n```\n$ wiregrade check x .\n```\n"
        "\n## Later\n\n```sh\nwireshark\n```\n"
    )
    assert readme_self_check(readme) == ["python3 -m venv ~/v", "wiregrade check x ."]


@pytest.fixture
def laptop(exercises: Exercises, request: pytest.FixtureRequest) -> Iterator[tuple[Path, list[str], str]]:
    """A bundle for tls-server holding the lecture's server, owned by an ordinary user
    (nobody), with the README's self-check commands; and that user's system Python."""
    exe, why = interpreter_for_nobody()
    if exe is None:
        pytest.skip(why)
    nobody = pwd.getpwnam("nobody")
    home = Path(tempfile.mkdtemp(prefix="wiregrade-laptop-"))  # pytest's tmp is root-only
    request.addfinalizer(lambda: shutil.rmtree(home, ignore_errors=True))
    repo = home / "tls-server"
    assert main(["bundle", "tls-server", "--out", str(repo)]) == 0
    for f in (exercises.submissions("tls-server") / "lecture").iterdir():
        if f.is_file():
            shutil.copyfile(f, repo / f.name)
    for p in [home, *home.rglob("*")]:
        os.chown(p, nobody.pw_uid, nobody.pw_gid, follow_symlinks=False)
    commands = readme_self_check((repo / "README.md").read_text())
    assert not any("/path/to/" in c for c in commands), f"the README is not runnable as written: {commands}"
    yield repo, commands, exe


def _as_student(
    repo: Path, commands: list[str], path: str, extra: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    nobody = pwd.getpwnam("nobody")
    env = {
        "PATH": path,
        "HOME": str(repo.parent),
        "LANG": "C.UTF-8",
        **{k: v for k, v in os.environ.items() if k.startswith("PIP_")},  # this machine's package mirror
        **extra,
    }
    return subprocess.run(
        ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
        + ["bash", "-e", "-c", "\n".join(commands)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=repo,
        env=env,
        check=False,
    )


def _path_without_tshark(folder: Path) -> str:
    """The system's commands, tshark left out (as on a laptop with only Wireshark's window)."""
    folder.mkdir()
    for d in ("/usr/local/bin", "/usr/bin", "/bin"):
        for entry in sorted(Path(d).iterdir()) if Path(d).is_dir() else ():
            if entry.name != "tshark" and not os.path.lexists(folder / entry.name):
                (folder / entry.name).symlink_to(entry)
    return str(folder)


@needs_tshark
@pytest.mark.slow
def test_a_student_following_the_readme_gets_the_right_verdict(laptop: tuple[Path, list[str], str]) -> None:
    repo, commands, _exe = laptop
    system = "/usr/local/bin:/usr/bin:/bin"

    run = _as_student(repo, commands, system, {})
    shown = run.stdout + run.stderr
    assert run.returncode == 1, shown
    assert "16/20 on 8 public checks" in run.stdout, shown
    assert "FAIL  Ends the session with close_notify" in run.stdout
    assert "FAIL  Serves a second client after the first" in run.stdout

    # Ubuntu 24.04: user namespaces restricted. The same verdict, and why on screen.
    run = _as_student(repo, commands, system, {RESTRICT_ENV: "1"})
    shown = run.stdout + run.stderr
    assert run.returncode == 1, shown
    assert "16/20 on 8 public checks" in run.stdout, shown
    assert "Note: no private network: user namespaces are restricted on this system" in run.stdout

    # Without tshark: what needs no dissection is graded; what to install said once, at the top.
    no_tshark = _path_without_tshark(repo.parent / "bin")
    run = _as_student(repo, commands, no_tshark, {})
    shown = run.stdout + run.stderr
    assert run.returncode == 3, shown  # incomplete: some checks could not run
    assert run.stdout.count("Note: tshark is not installed") == 1, shown
    assert "sudo apt install tshark" in run.stdout
    assert "PASS  Completes a TLS handshake" in run.stdout
    assert "FAIL  Serves a second client after the first" in run.stdout
    assert "ERR   Ends the session with close_notify" in run.stdout
    assert "FAIL  Ends the session with close_notify" not in run.stdout


@needs_tshark
@pytest.mark.slow
def test_without_namespaces_a_capture_exercise_points_at_the_practice_capture(
    exercises: Exercises, request: pytest.FixtureRequest
) -> None:
    exe, why = interpreter_for_nobody()
    if exe is None:
        pytest.skip(why)
    nobody = pwd.getpwnam("nobody")
    home = Path(tempfile.mkdtemp(prefix="wiregrade-laptop-"))
    request.addfinalizer(lambda: shutil.rmtree(home, ignore_errors=True))
    work = home / "student"
    shutil.copytree(exercises.submissions("plaintext-http") / "reference", work)
    for p in [home, work, *work.rglob("*")]:
        os.chown(p, nobody.pw_uid, nobody.pw_gid)
    site = sysconfig.get_paths()["purelib"]
    run = subprocess.run(
        ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
        + [exe, "-m", "harness", "check", "plaintext-http", str(work)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        check=False,
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "PYTHONPATH": f"{ROOT}:{site}",
            RESTRICT_ENV: "1",
        },
    )
    shown = run.stdout + run.stderr
    assert run.returncode == 3, shown  # its checks could not run here: ERR, never a 0
    assert "Note: no private network: user namespaces are restricted on this system" in run.stdout
    assert "test your program on the practice capture in your folder" in run.stdout
    assert not re.search(r"^\s+FAIL ", run.stdout, re.M), shown
