"""Running untrusted student programs.

A student program runs in its own session and process group, with stdin closed, a clean
environment, resource limits and a capped record of its output. Its readiness is observed
(a socket in LISTEN owned by its process group, or a line of output), never slept for and
never probed by connecting: the lecture's server serves exactly one client, and a probe
would be that client. When the check ends, every process the program started is killed:
its process group, every descendant, and any orphan that was re-parented to us (the grading
session is a child subreaper, see :func:`become_subreaper`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import resource
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._errors import CheckFailed, HarnessError, StudentTimeout
from ._proc import (
    PR_SET_PDEATHSIG,
    kill_user,
    listening_inodes,
    process_tree,
    processes_of,
    reap_orphans,
    socket_inodes,
    student_ended,
    student_started,
)
from ._timing import timed
from ._user import StudentUser


@dataclass(frozen=True)
class Limits:
    """Resource limits for one student process (and, for NPROC, its user)."""

    cpu_seconds: int = 20
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    processes: int = 256
    output_bytes: int = 64 << 10

    def preexec(self, user: StudentUser | None = None, join: Sequence[str] = ()) -> Callable[[], None]:
        """The function that applies these limits in the child, between fork and exec.

        RLIMIT_NPROC counts every process (and thread) of the real user, not just this
        program's, and does not bind root. So the cap is what the user already runs plus
        ``processes``: a student at a busy desktop is not refused a thread, and a fork bomb
        still stops. (As root it holds nothing; students then need their own user.) ``join``
        names the session cgroup's ``cgroup.procs`` files (the bound for all processes
        together); the child joins them while it is still root. The death signal is set
        after dropping to the student's uid: the kernel clears it on a change of credentials.
        """
        drop = user.preexec_drop if user is not None and user.uid >= 0 else None
        nproc = self.processes + processes_of(user.uid if drop and user else os.getuid())
        cpu, mem, fsize = self.cpu_seconds, self.memory_bytes, self.file_bytes
        libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child only calls it
        parent = os.getpid()
        procs = [p.encode() for p in join]
        owner = (user.uid, user.gid) if drop is not None and user is not None else (-1, -1)

        def apply() -> None:
            os.umask(0o022)  # files the program makes get the same mode on every grader
            for path in procs:
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, b"0")
                finally:
                    os.close(fd)
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
            if drop is not None:
                # the output pipes become the student's: reopening /dev/stderr or /dev/stdout
                # works as at home (stunnel's output, nginx's error_log, logging)
                for fd in (1, 2):
                    with contextlib.suppress(OSError):
                        os.fchown(fd, owner[0], owner[1])
                drop()
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the grader died before the signal was armed
                os._exit(137)

        return apply


class CappedOutput:
    """Keeps the first ``cap`` bytes of a stream and counts the rest, draining it always.

    Draining matters: a program whose pipe fills up blocks, and would look hung.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._head = bytearray()
        self.total = 0
        self._cond = threading.Condition()
        self.closed = False

    def feed(self, chunk: bytes) -> None:
        with self._cond:
            room = self.cap - len(self._head)
            if room > 0:
                self._head += chunk[:room]
            self.total += len(chunk)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    @property
    def truncated(self) -> bool:
        return self.total > len(self._head)

    def data(self) -> bytes:
        """The bytes kept (the first ``cap``)."""
        with self._cond:
            return bytes(self._head)

    def text(self) -> str:
        with self._cond:
            s = bytes(self._head).decode("utf-8", "replace")
            if self.truncated:
                s += f"\n[... output truncated: {self.total:,} bytes in all, first {self.cap:,} kept]"
            return s

    def wait_for(self, pattern: re.Pattern[str], deadline: float) -> re.Match[str] | None:
        with self._cond:
            while True:
                m = pattern.search(bytes(self._head).decode("utf-8", "replace"))
                if m or self.closed:
                    return m
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.1))


def _drain(stream: object, sink: CappedOutput) -> None:
    fd = stream.fileno()  # type: ignore[attr-defined]
    try:
        while chunk := os.read(fd, 1 << 16):
            sink.feed(chunk)
    except OSError:
        pass
    finally:
        sink.close()


def clean_environment(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a student program gets: nothing of ours (no SSLKEYLOGFILE, no proxies)."""
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "TMPDIR": str(home),
    }
    env.update(extra or {})
    return env


# --- the student process ---------------------------------------------------------------


@dataclass
class StudentProcess:
    """One running student program. Use as a context manager, or call :meth:`kill`."""

    argv: Sequence[str]
    cwd: Path
    env: dict[str, str]
    limits: Limits = field(default_factory=Limits)
    label: str = ""
    _popen: subprocess.Popen[bytes] | None = None
    stdout: CappedOutput = field(init=False)
    stderr: CappedOutput = field(init=False)
    started_at: float = 0.0
    killed_by_grader: bool = False
    stdin: Path | None = None  # a file to read as standard input (else stdin is closed)
    user: StudentUser | None = None  # run as this unprivileged user (None: as we are)
    join: Sequence[str] = ()  # cgroup.procs files to join (the session's bound for all)
    # (read, write) ends of a pipe on which a sandbox's keeper writes how the program ended
    # (the sandbox itself lives on while daemons the program left run)
    status_pipe: tuple[int, int] | None = None
    _code: int | None = None
    _status_ended: bool = False  # the keeper's pipe said its word (or closed): read no more

    def __post_init__(self) -> None:
        self.stdout = CappedOutput(self.limits.output_bytes)
        self.stderr = CappedOutput(self.limits.output_bytes)
        self.label = self.label or " ".join(Path(a).name for a in self.argv[1:]) or self.argv[0]
        self._threads: list[threading.Thread] = []

    def start(self) -> StudentProcess:
        with timed("student process start"):
            return self._start()

    def _start(self) -> StudentProcess:
        stdin_file = open(self.stdin, "rb") if self.stdin else None  # noqa: SIM115
        try:
            self._popen = subprocess.Popen(
                list(self.argv),
                cwd=self.cwd,
                env=self.env,
                stdin=stdin_file or subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=self.limits.preexec(self.user, self.join),
                close_fds=True,
                pass_fds=(self.status_pipe[1],) if self.status_pipe else (),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise HarnessError(f"could not start {self.label}: {exc}") from exc
        finally:
            if stdin_file:
                stdin_file.close()
            if self.status_pipe:
                os.close(self.status_pipe[1])
        self.started_at = time.monotonic()
        student_started(self._popen.pid)
        for stream, sink in ((self._popen.stdout, self.stdout), (self._popen.stderr, self.stderr)):
            t = threading.Thread(target=_drain, args=(stream, sink), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    @property
    def pid(self) -> int:
        assert self._popen is not None, "process not started"
        return self._popen.pid

    def poll(self) -> int | None:
        """The program's exit code (negative: the signal), or None while it runs."""
        assert self._popen is not None
        if self._code is None and self.status_pipe is not None:
            self._read_status(0)
        if self._code is not None:
            return self._code
        return self._popen.poll()

    def _read_status(self, timeout: float) -> None:
        """Read the keeper's word, waiting at most ``timeout`` for it (or for its end)."""
        assert self.status_pipe is not None
        if self._status_ended:
            return
        r = self.status_pipe[0]
        try:
            ready, _, _ = select.select([r], [], [], timeout)
            if ready:
                data = os.read(r, 64)
                if data.strip().lstrip(b"-").isdigit():
                    self._code = int(data)
                # one write says it all; an empty read: the keeper died without a word
                self._status_ended = True
        except (OSError, ValueError):
            self._status_ended = True

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def wait(self, timeout: float) -> int | None:
        """Wait (bounded) for it to exit; once it has, its output has been read to the end too
        (a crash's traceback is in the pipe a moment after the exit)."""
        assert self._popen is not None
        deadline = time.monotonic() + timeout
        code = None
        if self.status_pipe is not None:  # the keeper says when the program ends
            while (code := self.poll()) is None and not self._status_ended:
                if (left := deadline - time.monotonic()) <= 0:
                    break
                self._read_status(min(left, 0.5))
        if code is None:
            try:
                code = self._popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return None
        until = time.monotonic() + 2  # a daemon holding the pipes open must not hang us
        for t in self._threads:
            t.join(timeout=max(0.0, until - time.monotonic()))
        return code

    def describe_exit(self) -> str:
        code = self.poll()
        if code is None:
            return "it is still running"
        if code < 0 and self.killed_by_grader:
            return "it was still running when the grader stopped it"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            extra = {
                "SIGXCPU": " (CPU time limit)",
                "SIGKILL": " (memory limit or a forced stop)",
                "SIGXFSZ": " (file size limit)",
            }.get(name, "")
            return f"it was killed by {name}{extra}"
        return f"it exited with code {code}"

    def output_tail(self, lines: int = 15) -> str:
        out = []
        for name, sink in (("stdout", self.stdout), ("stderr", self.stderr)):
            text = sink.text().rstrip()
            if text:
                tail = "\n".join(text.splitlines()[-lines:])
                out.append(f"--- {name} (last lines) ---\n{tail}")
        return "\n".join(out) or "(it printed nothing)"

    def pids(self) -> set[int]:
        if self._popen is None:
            return set()
        return process_tree(self._popen.pid, self._popen.pid)

    # --- readiness ---------------------------------------------------------------------
    def wait_listening(self, port: int, timeout: float) -> None:
        """Wait until a process of this program holds a socket in LISTEN on ``port``.

        Raises StudentTimeout if it does not within ``timeout`` and CheckFailed if it exits.
        """
        with timed("waiting for student to listen"):
            self._wait_listening(port, timeout)

    def _wait_listening(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            listeners = listening_inodes(port)
            if listeners and listeners & socket_inodes(self.pids()):
                return
            if self.poll() is not None and not (self.pids() - {self.pid}):
                raise CheckFailed(
                    f"{self.label} stopped before it listened on port {port}: "
                    f"{self.describe_exit()}.\n{self.output_tail()}",
                    expected=f"a server listening on TCP port {port}",
                    hint="Run it yourself in a terminal: does it start, and stay running?",
                )
            if time.monotonic() >= deadline:
                other = " (another program holds that port)" if listeners else ""
                raise StudentTimeout(
                    f"{self.label} did not listen on TCP port {port} within {timeout:g} s"
                    f"{other}; {self.describe_exit()}.\n{self.output_tail()}",
                    expected=f"a server listening on TCP port {port} within {timeout:g} s",
                    hint=f"Check that it binds port {port} and calls listen() before doing anything slow.",
                )
            time.sleep(delay)  # polling /proc, bounded by the deadline above
            delay = min(delay * 2, 0.05)

    def wait_line(self, pattern: str, timeout: float) -> re.Match[str]:
        m = self.stdout.wait_for(re.compile(pattern), time.monotonic() + timeout)
        if m is None:
            raise StudentTimeout(
                f"{self.label} did not print a line matching {pattern!r} within {timeout:g} s; "
                f"{self.describe_exit()}.\n{self.output_tail()}",
            )
        return m

    def wait_exit(self, timeout: float) -> int:
        """Wait for it to exit (bounded) and for its output to be read to the end."""
        code = self.wait(timeout)
        if code is None:
            raise StudentTimeout(
                f"{self.label} did not finish within {timeout:g} s.\n{self.output_tail()}",
                hint="Does it wait for input that never comes, or for a connection?",
            )
        return code

    # --- the end -----------------------------------------------------------------------
    def kill(self) -> None:
        """Kill the whole tree, always; safe to call twice."""
        if self._popen is None:
            return
        with timed("killing student processes"):
            self._kill()

    def _kill(self) -> None:
        assert self._popen is not None
        pid = self._popen.pid
        if self.poll() is None:
            self.killed_by_grader = True
        # Freeze-and-kill in rounds: a fork loop may create children while we look.
        for _ in range(20):
            tree = process_tree(pid, pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            for p in tree:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(p, signal.SIGKILL)
            if not tree or tree == {pid}:
                break
        if self.user is not None and self.user.uid >= 0:
            kill_user(self.user.uid)  # whatever escaped the tree: that uid is the student's alone
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(5)
        student_ended(pid)
        reap_orphans()
        for t in self._threads:
            t.join(timeout=2)
        if self.status_pipe is not None:
            if self._code is None:
                self._read_status(0)
            os.close(self.status_pipe[0])
            self.status_pipe = None

    def __enter__(self) -> StudentProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
