"""What a grading session has: the submission, the network, the wire, the student programs."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

from ._assignment import Assignment
from ._errors import CheckFailed, HarnessError
from ._isolation import Isolation
from ._process import Limits, StudentProcess, clean_environment
from ._results import Evidence
from ._user import StudentUser, chown_tree
from ._wire import Wire, open_wire

T = TypeVar("T")

# Set by the session runner before pytest starts (it entered the namespace itself).
_ISOLATION = Isolation("none", "not started by wiregrade's session runner")
_STUDENT_USER: StudentUser | None = None


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
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


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


_IGNORED = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".venv", "venv", "node_modules")


@dataclass
class GradingContext:
    """One session's grading state. Fixtures hand its parts to the checks."""

    assignment: Assignment
    original: Path
    student: str
    wire_choice: str = "auto"
    isolation: Isolation = field(default_factory=current_isolation)

    def __post_init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="wiregrade-session-")
        self.workdir = Path(self._tmp.name)
        self.home = self.workdir / "home"  # HOME for tools we run (tshark in a user namespace)
        self.home.mkdir()
        self.keylog = self.workdir / "keys.log"
        self.keylog.touch()
        self.pcap = self.workdir / "capture.pcap"
        self.submission = self.workdir / "submission"
        try:
            shutil.copytree(self.original, self.submission, ignore=_IGNORED, symlinks=True)
        except (OSError, shutil.Error) as exc:
            raise HarnessError(f"could not copy the submission {self.original}: {exc}") from exc
        self._wire: Wire | None = None
        self.port = self._choose_port(self.assignment.port)
        self.student_user = current_student_user()
        if self.student_user is not None and self.student_user.uid >= 0:
            self.workdir.chmod(0o711)  # the student may pass through to its copy, and see nothing else
            chown_tree(self.submission, self.student_user)
            self.submission.chmod(0o700)  # ... and no other session's student may look in

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
        if self.student_user is not None and self.student_user.pythonpath:
            env["PYTHONPATH"] = self.student_user.pythonpath
            env["PATH"] = os.pathsep.join([str(Path(self.student_user.python).parent), env["PATH"]])
        return env

    def hand_over(self, path: Path) -> Path:
        """A file the grader put in the submission becomes the student's (their programs read it)."""
        chown_tree(path, self.student_user)
        return path

    def _choose_port(self, handout_port: int) -> int:
        """The handout's port inside a private namespace; outside, that port if free."""
        if not handout_port or self.isolation.private_network or _port_free(handout_port):
            return handout_port
        return _free_port()

    @property
    def port_note(self) -> str:
        if self.port == self.assignment.port:
            return f"port {self.port}"
        return f"port {self.port} (the handout's {self.assignment.port} was busy on this machine)"

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

    def cleanup(self) -> None:
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
        argv: Sequence[str] = [*interpreter, program, *args]
        stdin_file = None
        if stdin is not None:
            stdin_file = self.ctx.workdir / f"stdin-{len(self.processes)}-{id(self)}"
            stdin_file.write_bytes(stdin)
        proc = StudentProcess(
            argv,
            cwd=self.ctx.submission,
            env=self.ctx.student_env(),
            limits=limits or self.ctx.assignment.limits,
            label=f"{program} {' '.join(args)}".strip(),
            stdin=stdin_file,
            user=user,
        )
        self.processes.append(proc)
        return proc.start()

    def start_system(self, argv: Sequence[str], label: str) -> StudentProcess:
        """Start a system program (stunnel, nginx) on the student's files, like a student program."""
        proc = StudentProcess(
            list(argv),
            cwd=self.ctx.submission,
            env=self.ctx.student_env(),
            limits=self.ctx.assignment.limits,
            label=label,
            user=self.ctx.require_unprivileged(),
        )
        self.processes.append(proc)
        return proc.start()

    def server(self, program: str, *args: str, port: int | None = None) -> StudentProcess:
        """Start a server and wait (bounded) until it listens on its port."""
        port = port or self.ctx.port
        proc = self.start(program, *args)
        proc.wait_listening(port, self.ctx.assignment.ready_seconds)
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
                raise type(self._exc)(
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
