"""Student code is hostile: what it can see, write and leave behind, tried as an attacker would.

Each test is one attack of issue 12 (a submission graded for marks, as root where the machine
allows it): links planted at run time for the grader to follow, reading the checkout, other
students and the grader's processes, memory spread over many children, files left in /tmp.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness._assignment import load_assignment
from harness._results import SubmissionResult
from harness._runner import SessionOptions, grade_batch, run_session
from harness._sandbox import Sandbox, find, system_folders
from harness._user import choose_student_user
from tests.conftest import ROOT, Exercises, needs_tshark
from tests.test_plugin import make_project

needs_root_sandbox = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("bwrap") is None, reason="needs root and bubblewrap"
)

ATTACK_GRADER = """
from harness import check

@check(title="Plants links", points=1)
def test_a_plant(student, evidence):
    proc = student.run("attack.py", "plant", timeout=20)
    evidence.text("plant", proc.stdout.text() + proc.stderr.text())

@check(title="Peeks", points=1)
def test_b_peek(student, evidence, pki):
    proc = student.run("attack.py", "peek", timeout=20)
    evidence.text("peek", proc.stdout.text() + proc.stderr.text())

@check(title="Is handed a file", points=1)
def test_c_give(grading, student, evidence):
    grading.give("given.txt", b"from the grader")
    proc = student.run("attack.py", "cat", timeout=20)
    evidence.text("cat", proc.stdout.text() + proc.stderr.text())

@check(title="Has its output read", points=1)
def test_d_read(grading, evidence):
    evidence.text("read", repr(grading.read_made("out.txt")))
"""

ATTACK = """
import os, sys
victim, secret, *peeks = open("targets.txt").read().split()
if sys.argv[1] == "plant":
    for name, target in (("ca.crt", victim), ("given.txt", victim), ("out.txt", secret)):
        os.symlink(target, name)
    for folder in ("/tmp", "/var/tmp", "/dev/shm"):
        try:
            open(os.path.join(folder, "left-" + os.path.basename(os.path.dirname(victim))), "w").write("x")
        except OSError as exc:
            print("NOWRITE", folder, exc)
elif sys.argv[1] == "peek":
    for target in peeks:
        try:
            print("LEAK", target, open(target, "rb").read(40))
        except OSError as exc:
            print("BLOCKED", target, type(exc).__name__)
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    print("PIDS", len(pids))
    for p in pids:
        try:
            print("CMDLINE", open(f"/proc/{p}/cmdline", "rb").read().replace(bytes(1), b" ")[:80])
        except OSError:
            pass
    print("UID", os.getuid())
    print("PATH", os.environ.get("PATH"))
    port, out = open("probe.txt").read().split()
    import ctypes, socket
    try:
        socket.create_connection(("127.0.0.1", int(port)), timeout=2).close()
        print("REACHED host port")
    except OSError as exc:
        print("NOCONNECT", type(exc).__name__)
    try:
        open(os.path.join(out, "planted.txt"), "w").write("x")
        print("WROTE into OUT")
    except OSError as exc:
        print("NOWRITE", type(exc).__name__)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000 | 0x00020000) == 0:  # a user + mount namespace: root of its own
        print("UNSHARED a user namespace")
    else:
        print("NOUNSHARE", ctypes.get_errno())
elif sys.argv[1] == "cat":
    print("GIVEN", open("given.txt").read())
"""


def grade_alice(
    work: Path,
    monkeypatch: pytest.MonkeyPatch,
    grader: str,
    files: dict[str, str],
    options: SessionOptions | None = None,
) -> SubmissionResult:
    """One session of a one-check exercise ``grader`` over alice's ``files`` (name -> text)."""
    make_project(work / "project", grader, total=1)
    monkeypatch.setenv("WIREGRADE_HOME", str(work / "project"))
    (work / "alice").mkdir()
    for name, text in files.items():
        (work / "alice" / name).write_text(text)
    return run_session(
        load_assignment("boom"), work / "alice", work / "out", "alice", options or SessionOptions()
    )


@pytest.fixture
def lair() -> Iterator[Path]:
    """A folder outside every submission holding a root-only secret and a file to overwrite."""
    folder = Path(tempfile.mkdtemp(prefix="wiregrade-lair-"))
    (folder / "secret").write_text("TOPSECRET-" + os.urandom(8).hex())
    (folder / "secret").chmod(0o600)
    (folder / "victim").write_text("the victim's own content")
    (folder / "victim").chmod(0o600)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@needs_root_sandbox
def test_an_attacking_submission_reaches_nothing(
    lair: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    make_project(project, ATTACK_GRADER, total=4)
    monkeypatch.setenv("WIREGRADE_HOME", str(project))
    subs = tmp_path / "subs"
    for name in ("alice", "bob"):
        (subs / name).mkdir(parents=True)
        (subs / name / "attack.py").write_text(ATTACK)
        (subs / name / "diary.txt").write_text(f"{name}'s private answers")
    peeks = [
        ROOT / ".git" / "HEAD",
        ROOT / "reference" / "fernet" / "fernet_tool.py",
        subs / "bob" / "diary.txt",
    ]
    (subs / "alice" / "targets.txt").write_text(
        " ".join(map(str, [lair / "victim", lair / "secret", *peeks]))
    )
    (subs / "bob" / "targets.txt").write_text(f"{lair / 'victim'} {lair / 'secret'}")
    import socket

    host = socket.socket()  # a port on the host's loopback: never reachable from a session
    host.bind(("127.0.0.1", 0))
    host.listen()
    for name in ("alice", "bob"):
        (subs / name / "probe.txt").write_text(f"{host.getsockname()[1]} {tmp_path / 'out'}")
    with host:
        results = {r.student: r for r in grade_batch(load_assignment("boom"), subs, tmp_path / "out", 2)}
    alice = results["alice"]
    assert not alice.harness_error, alice.harness_error
    assert "bubblewrap" in alice.environment.sandbox, alice.environment
    seen = {e.title: str(e.data) for c in alice.checks for e in c.evidence}
    # 1. root never wrote through the links, nor read through them
    assert (lair / "victim").read_text() == "the victim's own content"
    for out in (tmp_path / "out").rglob("*"):
        if out.is_file() and out.suffix in (".json", ".html", ".xml", ".csv"):
            assert "TOPSECRET" not in out.read_text(errors="replace"), out
    reading = next(c for c in alice.checks if c.id == "d-read")
    assert reading.outcome.value == "failed" and "symbolic link" in reading.seen, reading
    assert "GIVEN from the grader" in seen["cat"], seen["cat"]  # the handed file, not the link
    # 2 and 3. nothing of the checkout, the other students or the other processes
    assert "LEAK" not in seen["peek"], seen["peek"]
    assert seen["peek"].count("BLOCKED") == 3
    pids = int(seen["peek"].split("PIDS ")[1].split()[0])
    assert pids <= 4, seen["peek"]  # its own (bwrap's init, python): not the grader's
    cmdlines = [ln for ln in seen["peek"].splitlines() if ln.startswith("CMDLINE")]
    assert cmdlines and not [ln for ln in cmdlines if "harness" in ln or "subs" in ln], cmdlines
    assert "UID 0" not in seen["peek"]
    path = seen["peek"].split("PATH ")[1].split()[0]
    assert str(ROOT) not in path and ".venv" not in path, path  # no folder of the grader's own
    # what held before and must keep holding: host ports, OUT, no namespace of its own to
    # unmount anything from
    assert "NOCONNECT" in seen["peek"] and "NOWRITE" in seen["peek"], seen["peek"]
    assert "NOUNSHARE" in seen["peek"], seen["peek"]
    assert not (tmp_path / "out" / "planted.txt").exists()
    # 7. what it wrote to /tmp, /var/tmp and /dev/shm is gone with it
    for folder in ("/tmp", "/var/tmp", "/dev/shm"):
        assert not Path(folder, f"left-{lair.name}").exists()


def test_a_root_only_file_bound_in_by_mistake_stays_unreadable(tmp_path: Path) -> None:
    """The uid bwrap runs as is unprivileged outside every namespace, not root mapped inside."""
    if os.geteuid() != 0 or shutil.which("bwrap") is None:
        pytest.skip("needs root and bubblewrap")
    user = choose_student_user()
    if user is None or user.uid < 0:
        pytest.skip("no unprivileged interpreter here")
    secret = tmp_path / "root-only"
    secret.write_text("TOPSECRET")
    secret.chmod(0o600)
    tmp_path.chmod(0o755)
    box, why = find(system_folders(), user.preexec_drop)
    assert box is not None, why
    argv = box.argv(["cat", "/mnt/secret"], Path("/"), given={Path("/mnt/secret"): secret})
    run = subprocess.run(argv, preexec_fn=user.preexec_drop, capture_output=True, timeout=30, check=False)
    assert run.returncode != 0 and b"TOPSECRET" not in run.stdout
    assert b"Permission denied" in run.stderr, run.stderr
    argv = box.argv(["cat", "/etc/shadow"], Path("/"))
    run = subprocess.run(argv, preexec_fn=user.preexec_drop, capture_output=True, timeout=30, check=False)
    assert run.returncode != 0, "uid 0 inside the sandbox must not be root's uid outside"


MEMORY_GRADER = """
from harness import check

@check(title="Spreads memory over children", points=1)
def test_spread(student, evidence):
    proc = student.run("spread.py", timeout=60)
    evidence.text("spread", proc.stdout.text())
"""

SPREAD = """
import os
kids = []
for i in range(6):
    pid = os.fork()
    if pid == 0:
        block = bytearray(300 << 20)
        for j in range(0, len(block), 4096):
            block[j] = 1
        r, w = 0, 0
        import time
        time.sleep(3)
        os._exit(0)
    kids.append(pid)
done = sum(os.waitpid(k, 0)[1] == 0 for k in kids)
print("FINISHED", done)
"""


@needs_root_sandbox
def test_memory_is_bounded_for_all_processes_together(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Six children of 300 MB each (1.8 GB) under a 1 GiB session bound: not all of them live."""
    r = grade_alice(tmp_path, monkeypatch, MEMORY_GRADER, {"spread.py": SPREAD})
    if "cgroup" not in r.environment.sandbox or "limited to" not in r.environment.sandbox:
        pytest.skip(f"no cgroup here: {r.environment.sandbox}")
    spread = next(e.data for c in r.checks for e in c.evidence if e.title == "spread")
    assert "FINISHED" in spread, spread
    assert int(spread.split("FINISHED ")[1].split()[0]) < 6, spread


RUNTIME_LINKS = """
import os, runpy, sys
victim, secret = open("lair.txt").read().split()
if sys.argv[1:2] == ["genkey"]:
    os.symlink(secret, sys.argv[2])                   # the grader reads the key file back
    for name in ("big.bin", "grader.key", "wrong.key"):  # ... and hands these over later
        os.symlink(victim, name)
    sys.exit(0)
sys.argv[0] = "real_tool.py"
runpy.run_path("real_tool.py", run_name="__main__")
"""


@needs_tshark
@pytest.mark.slow
@needs_root_sandbox
def test_fernet_links_made_at_run_time_are_never_followed(
    exercises: Exercises, lair: Path, tmp_path: Path
) -> None:
    sub = tmp_path / "subs" / "linker"
    shutil.copytree(exercises.submissions("fernet") / "reference", sub)
    (sub / "fernet_tool.py").rename(sub / "real_tool.py")
    (sub / "fernet_tool.py").write_text(RUNTIME_LINKS)
    (sub / "lair.txt").write_text(f"{lair / 'victim'} {lair / 'secret'}")
    [r] = grade_batch(load_assignment("fernet"), tmp_path / "subs", tmp_path / "out", 1)
    assert (lair / "victim").read_text() == "the victim's own content"
    text = json.dumps([c.__dict__ for c in r.checks], default=str)
    assert "TOPSECRET" not in text
    genkey = next(c for c in r.checks if "genkey" in c.title)
    assert genkey.outcome.value == "failed" and "symbolic link" in genkey.seen, genkey.seen
    assert not r.errors, [c.seen for c in r.errors]


def test_find_says_why_when_bubblewrap_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name, *a, **k: None)
    box, why = find(system_folders(), None)
    assert box is None and "bubblewrap is not installed" in why


def test_the_sandbox_command_line_is_an_allow_list() -> None:
    box = Sandbox("/usr/bin/bwrap", "bubblewrap 0.8.0", ("/usr", "/etc"))
    argv = box.argv([sys.executable, "x.py"], Path("/w/sub"), writable=[Path("/w/sub")])
    binds = [argv[i + 1] for i, a in enumerate(argv) if a in ("--bind", "--ro-bind")]
    assert "/" not in binds and str(ROOT) not in binds
    assert binds[-1] == "/w/sub" and argv[argv.index("--bind") + 1] == "/w/sub"
    for flag in ("--unshare-pid", "--die-with-parent", "--new-session", "--disable-userns"):
        assert flag in argv


HANG_GRADER = """
from harness import check

@check(title="Hangs", points=1)
def test_hang(student):
    proc = student.start("hang.py")
    proc.wait_line("READY", 20)
    proc.wait_exit(60)
"""

HANG = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open("/tmp/daemon-was-here", "w").write("x")
        time.sleep(600)
    os._exit(0)
print("READY", flush=True)
time.sleep(600)
"""


def _student_processes(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


@needs_root_sandbox
def test_kill_9_of_the_grader_leaves_no_student_process_and_no_session_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import time

    project = tmp_path / "project"
    make_project(project, HANG_GRADER, total=1)
    marker = f"hang-{os.urandom(4).hex()}.py"
    (tmp_path / "subs" / "alice").mkdir(parents=True)
    (tmp_path / "subs" / "alice" / "hang.py").write_text(HANG)
    (project / "graders/boom/check_boom.py").write_text(HANG_GRADER.replace("hang.py", marker))
    (tmp_path / "subs" / "alice" / "hang.py").rename(tmp_path / "subs" / "alice" / marker)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WIREGRADE_HOME": str(project)}
    before = set(Path(tempfile.gettempdir()).glob("wiregrade-session-*"))
    grader = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "grade",
            "boom",
            str(tmp_path / "subs"),
            "--out",
            str(tmp_path / "out"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while len(_student_processes(marker)) < 2 and time.monotonic() < deadline and grader.poll() is None:
        time.sleep(0.05)  # polling /proc for the program and its daemon, bounded by the deadline
    assert len(_student_processes(marker)) >= 2, "the student's program and its daemon never ran"
    grader.kill()
    grader.wait()
    deadline = time.monotonic() + 15
    while _student_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.05)  # they die with the grader (die-with-parent), bounded
    assert _student_processes(marker) == []
    assert set(Path(tempfile.gettempdir()).glob("wiregrade-session-*")) <= before
    base = Path(tempfile.gettempdir()) / f".wiregrade-sessions-{os.getuid()}"
    assert not base.exists() or not any(base.iterdir()), list(base.iterdir())


HELLO_GRADER = """
from harness import check

@check(title="Says hello", points=1)
def test_hello(student):
    proc = student.run("hello.py", timeout=20)
    assert proc.stdout.text().strip() == "hello", proc.output_tail()
"""

BROKEN_BWRAP = "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"


@pytest.mark.parametrize(
    ("visibility", "sandbox", "outcome", "said"),
    [
        ("all", "auto", "error", "NOT in a sandbox: bubblewrap cannot make a sandbox here"),
        ("all", "off", "passed", "NOT in a sandbox (--sandbox off)"),
        ("public", "auto", "passed", "NOT in a sandbox: bubblewrap cannot make a sandbox here"),
    ],
)
def test_without_a_sandbox_grading_for_marks_refuses_and_a_self_check_goes_on(
    monkeypatch: pytest.MonkeyPatch, visibility: str, sandbox: str, outcome: str, said: str
) -> None:
    work = Path(tempfile.mkdtemp(prefix="wiregrade-nobwrap-"))
    try:
        work.chmod(0o755)  # the student uid runs the broken bwrap
        (work / "bin").mkdir()
        (work / "bin" / "bwrap").write_text(BROKEN_BWRAP)
        (work / "bin" / "bwrap").chmod(0o755)
        monkeypatch.setenv("PATH", f"{work / 'bin'}:{os.environ['PATH']}")
        options = SessionOptions(visibility=visibility, sandbox=sandbox)
        r = grade_alice(work, monkeypatch, HELLO_GRADER, {"hello.py": "print('hello')\n"}, options)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert said in r.environment.sandbox, r.environment
    [c] = r.checks
    assert c.outcome.value == outcome, c.seen
    if outcome == "error":
        assert "--sandbox off" in c.seen and "not your fault" in c.seen, c.seen


DAEMONISER = """
import os, socket, sys, time
if os.fork() == 0:
    os.setsid()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1])))
    s.listen()
    time.sleep(600)
sys.exit(3)
"""


def test_in_the_sandbox_a_daemon_outlives_its_parent_until_the_grader_kills_it(tmp_path: Path) -> None:
    """bwrap ends its pid namespace when the first process exits: the keeper (pid 1) keeps a
    daemonising server alive, as outside, and reports the program's own exit code."""
    import socket

    from harness._proc import process_tree
    from harness._process import StudentProcess, clean_environment
    from harness._sandbox import interpreter_folders

    folders = interpreter_folders(sys.executable, "", sys.prefix) + interpreter_folders(
        sys.executable, "", sys.base_prefix
    )
    box, why = find(system_folders() + folders, None, python=sys.executable)
    if box is None:
        pytest.skip(why)
    (tmp_path / "daemon.py").write_text(DAEMONISER)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pipe = os.pipe()
    argv = box.argv([sys.executable, "daemon.py", str(port)], tmp_path, [tmp_path], status_fd=pipe[1])
    proc = StudentProcess(argv, tmp_path, clean_environment(tmp_path), status_pipe=pipe).start()
    try:
        assert proc.wait_exit(20) == 3  # the program's code, while its daemon lives on
        proc.wait_listening(port, 20)
        assert len(proc.pids()) >= 3  # bwrap, the keeper, the daemon
    finally:
        proc.kill()
    assert process_tree(proc.pid, proc.pid) == set()
    assert proc.describe_exit() == "it exited with code 3"


def test_graders_touch_a_submission_only_through_the_safe_api() -> None:
    """Every grader file reads what a student made with read_made/stat_made/copy_made/
    regular_files and hands files over with give(): a direct read, write, chmod or walk of a
    path in the submission would follow a link the student's program planted there."""
    risky = re.compile(
        r"submission\b.*\.(read_bytes|read_text|write_bytes|write_text|chmod|is_file|is_dir|"
        r"exists|rglob|glob|iterdir|open|stat|write_to_path)\(|"
        r"(copyfile|copy|copytree|open)\([^)]*submission"
    )
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sorted((ROOT / "graders").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if risky.search(line)
    ]
    assert found == []


STDIO_GRADER = """
from harness import check

@check(title="Logs through the devices", points=1)
def test_devices(student, evidence):
    proc = student.run("logs.py", timeout=20)
    evidence.text("out", proc.stdout.text())
    evidence.text("err", proc.stderr.text())
    assert proc.returncode == 0, proc.output_tail()
"""

LOGS = """
import logging
open("/dev/stdout", "w").write("to /dev/stdout\\n")
open("/dev/stderr", "w").write("to /dev/stderr\\n")
open("/proc/self/fd/2", "w").write("to fd 2\\n")
logging.basicConfig(filename="/dev/stderr", level=logging.INFO)
logging.info("logged")
"""


def test_a_student_program_reopens_its_stdout_and_stderr_as_at_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Its output pipes are the student's, not root's: `output = /dev/stderr` in stunnel,
    `error_log /dev/stderr` in nginx, logging to /dev/stderr in Python all work under the grader
    (they failed with EACCES when the program ran as the student uid)."""
    r = grade_alice(tmp_path, monkeypatch, STDIO_GRADER, {"logs.py": LOGS})
    [c] = r.checks
    assert c.outcome.value == "passed", c.seen
    seen = {e.title: str(e.data) for e in c.evidence}
    assert "to /dev/stdout" in seen["out"]
    assert "to /dev/stderr" in seen["err"] and "to fd 2" in seen["err"] and "logged" in seen["err"]
