"""What a grading session has: the submission, the network, the wire, the student programs."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

from . import _cgroup, _sandbox
from ._assignment import Assignment
from ._errors import Blocked, CheckFailed, HarnessError
from ._isolation import Isolation, in_private_mounts, mount_tmpfs, unmount
from ._process import Limits, StudentProcess, clean_environment
from ._results import Evidence
from ._safefile import NOT_GRADED, folder_fd, read_made, stat_made, walk
from ._user import StudentUser, chown_tree, outside_ids
from ._wire import Wire, open_wire

T = TypeVar("T")

# Set by the session runner before pytest starts (it entered the namespace itself).
_ISOLATION = Isolation("none", "not started by wiregrade's session runner")
_STUDENT_USER: StudentUser | None = None
_SANDBOX_MODE = "auto"  # "auto": bubblewrap where it runs; "off": the instructor said no sandbox


def set_sandbox_mode(mode: str) -> None:
    global _SANDBOX_MODE
    _SANDBOX_MODE = mode


def set_student_user(user: StudentUser | None) -> None:
    global _STUDENT_USER
    _STUDENT_USER = user


def current_student_user() -> StudentUser | None:
    return _STUDENT_USER


def set_isolation(iso: Isolation) -> None:
    global _ISOLATION
    _ISOLATION = iso


def current_isolation() -> Isolation:
    return _ISOLATION


def _port_free(port: int) -> bool:
    """Whether a server could bind ``port`` now. SO_REUSEADDR as servers set it: a previous
    run's connections in TIME_WAIT on the port do not make it busy (they would not stop the
    lecture's server, which sets it too)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def holder_of(port: int) -> str:
    """Who listens on ``port`` (a process of ours we may see), as a student reads it, or ""."""
    from ._proc import listening_inodes, socket_inodes

    inodes = listening_inodes(port)
    if not inodes:
        return ""
    for pid in sorted(int(x) for x in os.listdir("/proc") if x.isdigit()):
        if pid == os.getpid() or not inodes & socket_inodes({pid}):
            continue
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()[:200]
        except OSError:
            continue
        command = " ".join(a.decode(errors="replace") for a in raw.split(b"\0") if a)
        return f"process {pid}, {command}" if command else f"process {pid}"
    return "a program of another user"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _can_capture(iso: Isolation) -> tuple[bool, str]:
    if shutil.which("dumpcap") is None:
        return False, "dumpcap is not installed"
    if iso.private_network or os.geteuid() == 0:
        return True, ""
    return False, "capturing needs root or a user namespace, and neither is available"


SUBMISSION_BYTES = 256 << 20  # the student's own space during grading (a tmpfs of its own)


def copy_regular(src: Path, dest: Path) -> list[str]:
    """Copy the folders and regular files below ``src`` into ``dest`` (which exists), never
    following or copying a link, FIFO or device. Returns what was left out, and why."""
    left_out: list[str] = []
    for name, e, _depth in walk(src, prune=lambda e: e.name in NOT_GRADED or e.name.endswith(".pyc")):
        if e.is_symlink():
            left_out.append(f"{name} (a symbolic link)")
        elif e.is_dir(follow_symlinks=False):
            (dest / name).mkdir()  # before walk goes below it
        elif e.is_file(follow_symlinks=False):
            shutil.copyfile(e.path, dest / name, follow_symlinks=False)
            shutil.copymode(e.path, dest / name, follow_symlinks=False)
        else:
            left_out.append(f"{name} (not a regular file)")
    return sorted(left_out)


def sweep_stale_sessions(tmp: str | None = None, stale_after: float = 86400) -> list[str]:
    """Remove session folders left in the temporary folder by sessions that are gone.

    ``wiregrade-session-PID-*`` whose PID no longer runs, and ``wiregrade-ns-*`` older than
    ``stale_after`` seconds: ours only (owned by us, real folders, never a link)."""
    import time

    tmp = tmp or tempfile.gettempdir()
    removed = []
    for name in os.listdir(tmp):
        path = os.path.join(tmp, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            continue
        if name.startswith("wiregrade-session-"):
            pid = name.split("-")[2]
            if not pid.isdigit() or os.path.exists(f"/proc/{pid}"):
                continue
        elif not (name.startswith("wiregrade-ns-") and time.time() - st.st_mtime > stale_after):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


@dataclass
class GradingContext:
    """One session's grading state. Fixtures hand its parts to the checks."""

    assignment: Assignment
    original: Path
    student: str
    wire_choice: str = "auto"
    isolation: Isolation = field(default_factory=current_isolation)
    require_sandbox: bool = False  # instructor grading: no sandbox is a grader error

    def __post_init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix=f"wiregrade-session-{os.getpid()}-")
        self.workdir = Path(self._tmp.name)
        self.home = self.workdir / "home"  # HOME for tools we run (tshark in a user namespace)
        self.home.mkdir()
        self.keylog = self.workdir / "keys.log"
        self.keylog.touch()
        self.pcap = self.workdir / "capture.pcap"
        self.given_dir = self.workdir / "given"  # files handed to the student: ours, bound read-only
        self.given_dir.mkdir()
        self.given: dict[str, Path] = {}
        self.submission = self.workdir / "submission"
        self.submission.mkdir()
        if in_private_mounts():  # the student's own bounded space, gone with the session
            mount_tmpfs(str(self.submission), SUBMISSION_BYTES, 0o700)
        try:
            self.left_out = copy_regular(self.original, self.submission)
        except OSError as exc:
            raise HarnessError(f"could not copy the submission {self.original}: {exc}") from exc
        self._wire: Wire | None = None
        self.port_busy_note = ""
        self.port = self._choose_port(self.assignment.port)
        self.student_user = current_student_user()
        if self.student_user is not None and self.student_user.uid >= 0:
            self.workdir.chmod(0o711)  # the student may pass through to its copy, and see nothing else
            self.given_dir.chmod(0o711)
            chown_tree(self.submission, self.student_user)
            self.submission.chmod(0o700)  # ... and no other session's student may look in
        self.sandbox, self.sandbox_note = self._make_sandbox()
        self.require_sandbox = self.require_sandbox and _SANDBOX_MODE != "off"  # the instructor's word
        limits = self.assignment.limits
        self.cgroup, why = _cgroup.create(limits.memory_bytes, limits.processes)
        self.cgroup_note = self.cgroup.note if self.cgroup else why

    @property
    def left_out_note(self) -> str:
        if not self.left_out:
            return ""
        return "left out of the copy graded: " + ", ".join(self.left_out[:10])

    def _make_sandbox(self) -> tuple[_sandbox.Sandbox | None, str]:
        if _SANDBOX_MODE == "off":
            return None, "student programs NOT in a sandbox (--sandbox off): they see this machine's files"
        user = self.student_user
        drop = user.preexec_drop if user is not None and user.uid >= 0 else None
        python = user.python if user is not None else sys.executable
        if user is not None and user.python != sys.executable:
            folders = _sandbox.interpreter_folders(python, user.pythonpath, os.path.dirname(python))
        else:
            folders = _sandbox.interpreter_folders(python, "", sys.prefix)
            folders += _sandbox.interpreter_folders(python, "", sys.base_prefix)
        ids = outside_ids()
        box, why = _sandbox.find(
            _sandbox.system_folders() + folders,
            drop,
            inside_uid=ids[0] if ids else None,
            inside_gid=ids[1] if ids else None,
            python=python,
            env=self.student_env(),
        )
        if box is None:
            return None, f"student programs NOT in a sandbox: {why}"
        return box, (
            f"a {box.version} sandbox: only the system, the student's folder and the files "
            "handed over are visible, in its own process space"
        )

    def require_unprivileged(self) -> StudentUser | None:
        """The user student programs run as; a grader running as root never runs them as root."""
        user = self.student_user
        if user is not None and user.uid < 0:
            raise HarnessError(
                f"student programs would run as root: {user.note}. Put the virtual environment where "
                "other users can read it, or pass --student-user off to accept running them as root"
            )
        return user

    def student_env(self) -> dict[str, str]:
        env = clean_environment(self.submission)
        user = self.student_user
        python = user.python if user is not None and user.uid >= 0 else sys.executable
        if user is not None and user.pythonpath:
            env["PYTHONPATH"] = user.pythonpath
        # the student's interpreter first, then the system: no folder of the grader's own
        env["PATH"] = os.pathsep.join(
            dict.fromkeys([str(Path(python).parent), "/usr/local/bin", "/usr/bin", "/bin"])
        )
        return env

    def give(self, name: str, data: bytes, mode: int = 0o400) -> Path:
        """Hand the student a file: written in the grader's own folder, and shown to student
        programs read-only as ``name`` in their folder. Returns the grader's copy.

        Where there is no sandbox to bind it in, a copy is put in the submission without
        following any link the student may have planted there."""
        if "/" in name or name in ("", ".", ".."):
            raise HarnessError(f"a handed-over file needs a plain name, not {name!r}")
        path = self.given_dir / name
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        self._to_student(path)
        self.given[name] = path
        if self.sandbox is None:
            self._place_in_submission(name, data, mode)
        return path

    def clear_given_names(self) -> None:
        """Remove links (never followed) and special files the student's programs put where a
        handed-over file is bound, so the bind lands on a plain file of the submission."""
        with folder_fd(self.submission) as dfd:
            for name in self.given:
                try:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                    os.unlink(name, dir_fd=dfd)

    def _to_student(self, path: Path) -> None:
        user = self.student_user
        if user is not None and user.uid >= 0:
            os.chown(path, user.uid, user.gid, follow_symlinks=False)

    def _place_in_submission(self, name: str, data: bytes, mode: int) -> None:
        with folder_fd(self.submission) as dfd:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                os.unlink(name, dir_fd=dfd)  # a link is removed, never followed
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=dfd)
            except OSError as exc:
                raise CheckFailed(
                    f"The grader could not put {name} in your folder ({exc.strerror}): "
                    "something of that name is in the way.",
                    hint=f"Do not make a file or folder named {name}; the grader hands it to you.",
                ) from None
        with os.fdopen(fd, "wb") as f:
            user = self.student_user
            if user is not None and user.uid >= 0:
                os.fchown(f.fileno(), user.uid, user.gid)
            f.write(data)

    def scratch(self, name: str) -> Path:
        """A folder of the session's own that the student's programs may write in (for tools
        such as nginx when there is no sandbox with a private /tmp)."""
        path = self.workdir / name
        path.mkdir(exist_ok=True)
        self._to_student(path)
        return path

    def read_made(self, name: str, limit: int = 1 << 20) -> bytes | None:
        """A file the student's programs made in their folder (None if absent), read without
        following links, regular files only, at most ``limit`` bytes (else the student fails)."""
        return read_made(self.submission, name, limit)

    def stat_made(self, name: str) -> os.stat_result | None:
        return stat_made(self.submission, name)

    def copy_made(self, name: str, limit: int = 1 << 20) -> Path | None:
        """A grader-owned copy of a file the student made (for APIs that take a path)."""
        data = self.read_made(name, limit)
        if data is None:
            return None
        copy = self.workdir / "made" / name.replace("/", "_")
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes(data)
        return copy

    def _choose_port(self, handout_port: int) -> int:
        """The handout's port inside a private namespace; outside, that port if free."""
        if not handout_port or self.isolation.private_network or _port_free(handout_port):
            return handout_port
        port = _free_port()
        holder = holder_of(handout_port)
        self.port_busy_note = (
            f"port {handout_port} was busy on this machine (held by {holder or 'a program we cannot see'}); "
            f"your server is given port {port} instead, on its command line"
        )
        return port

    @property
    def port_note(self) -> str:
        if self.port == self.assignment.port:
            return f"port {self.port}"
        return f"port {self.port} (the handout's {self.assignment.port} was busy on this machine)"

    def not_told_error(self, exc: CheckFailed) -> HarnessError:
        """A server that did not listen on the port it was given instead of the busy handout
        port may be right (the lecture's has 12345 written in): not graded, and why."""
        return HarnessError(
            f"{self.port_busy_note}, and it did not listen there. A server with port "
            f"{self.assignment.port} written in cannot be graded like this, so this check was not "
            f"graded. What your server did: {exc.seen.splitlines()[0] if exc.seen else exc}. "
            f"Stop whatever holds port {self.assignment.port} (your own server still running?) and re-run"
        )

    @property
    def wire(self) -> Wire:
        if self._wire is None:
            ok, why = _can_capture(self.isolation)
            self._wire = open_wire(self.wire_choice, self.pcap, ok, why, self.home)
        return self._wire

    def launcher(self) -> Launcher:
        return Launcher(self)

    def close(self) -> None:
        if self._wire is not None:
            self._wire.close()
        if self.cgroup is not None:
            self.cgroup.kill_all()

    def cleanup(self) -> None:
        if self.cgroup is not None:
            self.cgroup.remove()
        if in_private_mounts():
            with contextlib.suppress(OSError):
                unmount(str(self.submission))
        self._tmp.cleanup()


class Launcher:
    """Starts student programs from the submission and kills all of them when closed."""

    def __init__(self, ctx: GradingContext) -> None:
        self.ctx = ctx
        self.processes: list[StudentProcess] = []

    def start(
        self, program: str, *args: str, limits: Limits | None = None, stdin: bytes | None = None
    ) -> StudentProcess:
        """Start ``program`` from the submission (``.py`` with this Python, ``.sh`` with bash).

        ``stdin`` is given as a file, never a pipe: the program cannot block us by not reading.
        """
        path = self.ctx.submission / program
        if not path.is_file():
            found = ", ".join(sorted(p.name for p in self.ctx.submission.iterdir())) or "nothing"
            raise CheckFailed(
                f"{program} is not in your submission (it holds: {found}).",
                expected=f"a file named {program} at the top of the submission",
                hint="Check the file name and that it is not inside a sub-folder.",
            )
        user = self.ctx.require_unprivileged()
        python = user.python if user else sys.executable
        interpreter = ["bash"] if program.endswith(".sh") else [python]
        stdin_file = None
        if stdin is not None:
            stdin_file = self.ctx.workdir / f"stdin-{len(self.processes)}-{id(self)}"
            stdin_file.write_bytes(stdin)
        return self._start(
            [*interpreter, program, *args],
            f"{program} {' '.join(args)}".strip(),
            limits or self.ctx.assignment.limits,
            stdin_file,
        )

    def start_system(self, argv: Sequence[str], label: str) -> StudentProcess:
        """Start a system program (stunnel, nginx) on the student's files, like a student program."""
        return self._start(list(argv), label, self.ctx.assignment.limits, None)

    def _start(self, argv: list[str], label: str, limits: Limits, stdin: Path | None) -> StudentProcess:
        """Every student process starts here: as the student's uid, in the sandbox, in the
        session's cgroup, with the per-process limits."""
        ctx = self.ctx
        user = ctx.require_unprivileged()
        status_pipe = None
        if ctx.sandbox is not None:
            ctx.clear_given_names()
            given = {ctx.submission / name: path for name, path in ctx.given.items()}
            status_pipe = os.pipe()
            argv = ctx.sandbox.argv(
                argv, ctx.submission, writable=[ctx.submission], given=given, status_fd=status_pipe[1]
            )
        elif ctx.require_sandbox:
            raise HarnessError(
                f"{ctx.sandbox_note}. Grading for marks runs student code only in a sandbox: "
                "install bubblewrap (Debian: apt-get install bubblewrap) and allow user namespaces, "
                "or pass --sandbox off to accept running it without one"
            )
        proc = StudentProcess(
            argv,
            cwd=ctx.submission,
            env=ctx.student_env(),
            limits=limits,
            label=label,
            stdin=stdin,
            user=user,
            join=ctx.cgroup.procs_files() if ctx.cgroup is not None else (),
            status_pipe=status_pipe,
        )
        self.processes.append(proc)
        return proc.start()

    def server(self, program: str, *args: str, port: int | None = None) -> StudentProcess:
        """Start a server and wait (bounded) until it listens on its port."""
        port = port or self.ctx.port
        proc = self.start(program, *args)
        try:
            proc.wait_listening(port, self.ctx.assignment.ready_seconds)
        except CheckFailed as exc:  # StudentTimeout too
            if port == self.ctx.port and self.ctx.port_busy_note:
                raise self.ctx.not_told_error(exc) from None
            raise
        return proc

    def run(
        self,
        program: str,
        *args: str,
        stdin: bytes | None = None,
        timeout: float | None = None,
        output_bytes: int | None = None,
    ) -> StudentProcess:
        """Run a program to completion (bounded by ``timeout``) and return it, exited."""
        limits = self.ctx.assignment.limits
        if output_bytes is not None:
            limits = replace(limits, output_bytes=output_bytes)
        proc = self.start(program, *args, limits=limits, stdin=stdin)
        proc.wait_exit(timeout or self.ctx.assignment.ready_seconds * 2)
        return proc

    def close(self) -> None:
        for proc in self.processes:
            proc.kill()
        self.processes.clear()

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Shared(Generic[T]):
    """A result several checks share, computed once, inside the first check that asks.

    Computing in the check body (not in a fixture) keeps pytest's verdicts right: a student
    failure raised here is FAILED for every check that relies on it, a harness fault is ERROR.
    """

    def __init__(self, compute: Callable[[], T], owner: str = "") -> None:
        """``owner`` is the title of the check that tells a student failure's whole story;
        the others say only that they depend on it (one story, told once)."""
        self._compute = compute
        self._owner = owner
        self._value: T | None = None
        self._exc: BaseException | None = None
        self._done = False

    def get(self, *, owner: bool = False) -> T:
        if not self._done:
            try:
                self._value = self._compute()
            except Exception as exc:
                self._exc = exc
            self._done = True
        if self._exc is not None:
            if isinstance(self._exc, CheckFailed) and self._owner and not owner:
                raise Blocked(  # BLOCKED by the check's declared need (see harness.check)
                    f"This check could not run: it needs what '{self._owner}' checks, and that failed.",
                    hint=f"See '{self._owner}' first.",
                ) from None
            raise self._exc
        return self._value  # type: ignore[return-value]


class EvidenceRecorder:
    """Lets a check attach what it saw to its result (shown in the report)."""

    def __init__(self) -> None:
        self.items: list[Evidence] = []

    def text(self, title: str, text: str) -> None:
        self.items.append(Evidence("text", title, text))

    def frames(self, title: str, frames: list[dict[str, Any]]) -> None:
        self.items.append(Evidence("frames", title, frames))

    def side_by_side(self, title: str, left: tuple[str, str], right: tuple[str, str]) -> None:
        """Two views of the same moment, shown next to each other: (heading, text) each."""
        self.items.append(Evidence("pair", title, {"left": list(left), "right": list(right)}))

    def output(self, title: str, proc: StudentProcess) -> None:
        self.items.append(Evidence("output", title, proc.output_tail(40)))
