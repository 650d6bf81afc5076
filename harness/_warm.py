"""Warm sessions: one process with the engine imported forks a fresh session per submission.

A cold session pays Python's start and the import of pytest, the plugin and the engine (tens of
modules, cryptography and jinja2 among them) for every submission. ``python -m harness._warm``
(the *zygote*) imports them once, then forks one child per request; the child is exactly a
session: it takes its own process group and log, its environment as `run_session` builds it, and
runs :func:`harness._session.main`, which enters its own namespaces and sandbox and runs pytest.
The zygote itself never runs a session, so nothing one submission's session does (module state,
the environment, a crash) is seen by the next: each is a fresh copy of the same warm process.

The graders are not imported ahead: pytest imports them itself, through its assertion rewriting,
as in a cold session (imported otherwise, an ``assert``'s message would differ).

The zygote is single-threaded (a child must be, to enter a user namespace), dies with the
grader, is a subreaper, and talks JSON lines on its stdin/stdout: ``{"id", "argv", "env",
"cwd", "log"}`` and ``{"kill": id}`` in, ``{"id", "pid"}`` and ``{"ended": id, "exited": pid,
"status"}`` out. Everything is keyed by the request's id, never by the pid (a pid is reused).
When a session ends, the zygote kills its process group while the pid is still held (not yet
reaped), then what the session left behind, round after round, until nothing is left; only
then does it say the session ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._assignment import Assignment
from ._errors import HarnessError
from ._results import SubmissionResult
from ._runner import (
    Batch,
    LocalSessions,
    SessionOptions,
    session_command,
    session_env,
    session_result,
    student_dir,
)

WARM_MODULES = (
    "pytest",
    "pytest_timeout",
    "harness",
    "harness.plugin",
    "harness._session",
    "harness._isolation",
    "harness._context",
    "harness._user",
    "harness._wire",
    "harness._capture",
    "harness._outputs",
)


ORPHAN_ROUNDS = 64  # generations of a dead session's descendants killed before giving up

# --- the grader's side -------------------------------------------------------------------------


@dataclass(frozen=True)
class WarmSession:
    """A session forked by the zygote: its request's id (the key of everything) and its pid."""

    id: int
    pid: int


class Zygote:
    """A warm process of this grader's, shared by its threads: ``spawn`` forks a session,
    ``wait`` waits for it (None when the deadline passed first)."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        from ._proc import register_harness_pid

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness._warm"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=cwd,
            text=True,
        )
        register_harness_pid(self.proc.pid)  # a batch's reaping of orphans leaves it be
        self._lock = threading.Lock()  # the reply boxes
        self._send_lock = threading.Lock()  # one request at a time on the pipe
        self._next = 0
        self._replies: dict[str, queue.Queue[dict[str, Any]]] = {}
        self._dead = False
        threading.Thread(target=self._read, daemon=True).start()

    def _box(self, key: str) -> queue.Queue[dict[str, Any]]:
        with self._lock:
            box = self._replies.setdefault(key, queue.Queue())
            if self._dead and box.empty():  # nobody would ever answer it
                box.put({"gone": True})
            return box

    def _send(self, msg: dict[str, Any]) -> None:
        try:
            assert self.proc.stdin is not None
            with self._send_lock:
                self.proc.stdin.write(json.dumps(msg) + "\n")
                self.proc.stdin.flush()
        except (OSError, ValueError) as exc:
            raise HarnessError(f"the warm session process is gone ({exc})") from exc

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
                key = f"ended {msg['ended']}" if "ended" in msg else f"started {msg['id']}"
            except (ValueError, KeyError, TypeError):
                continue  # not ours (the zygote sends only its own lines: belt and braces)
            self._box(key).put(msg)
        with self._lock:
            self._dead = True
            boxes = list(self._replies.values())
        for box in boxes:  # whoever waits learns that the zygote is gone
            box.put({"gone": True})

    def spawn(self, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> WarmSession:
        with self._lock:
            self._next += 1
            n = self._next
        box = self._box(f"started {n}")
        self._box(f"ended {n}")  # there before its answer can come: told if the zygote dies
        try:
            self._send({"id": n, "argv": argv, "env": env, "cwd": str(cwd), "log": str(log)})
            try:
                reply = box.get(timeout=60)
            except queue.Empty:
                reply = {"gone": "no answer within 60 s"}
            if "pid" not in reply:
                raise HarnessError(f"the warm session process could not start a session ({reply})")
        except HarnessError:
            self._forget(f"ended {n}")
            raise
        finally:
            self._forget(f"started {n}")
        return WarmSession(n, int(reply["pid"]))

    def wait(self, session: WarmSession, timeout: float) -> int | None:
        """The session's exit status (its processes all killed by then), or None at the
        deadline. Only this session's end answers: another's, with the same pid, never does."""
        try:
            msg = self._box(f"ended {session.id}").get(timeout=timeout)
        except queue.Empty:
            return None
        self._forget(f"ended {session.id}")
        if msg.get("gone"):
            raise HarnessError("the warm session process died during the session")
        return int(msg["status"])

    def kill(self, session: WarmSession) -> None:
        """Kill the session's process group, if it has not ended (the zygote, which holds its
        pid until it reaps it, does it: never another process that got the pid since)."""
        self._send({"kill": session.id})

    def forget(self, session: WarmSession) -> None:
        """Drop what is kept for a session whose end will not be waited for."""
        self._forget(f"ended {session.id}")

    def _forget(self, key: str) -> None:
        with self._lock:
            self._replies.pop(key, None)

    def close(self) -> None:
        from ._proc import unregister_harness_pid

        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # its end: it kills what is left and exits
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        unregister_harness_pid(self.proc.pid)


def run_warm_session(
    zygote: Zygote,
    assignment: Assignment,
    submission: Path,
    out: Path,
    student: str,
    options: SessionOptions,
    *,
    capture_secret: str = "",
) -> SubmissionResult:
    """`run_session`, forked from a warm process: the same session, the same deadline."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "session.json").unlink(missing_ok=True)
    argv, env, root = session_command(assignment, submission, out, student, options, capture_secret)
    started = time.monotonic()
    session = zygote.spawn(argv, env, root, out / "session.log")
    status = zygote.wait(session, assignment.session_seconds)
    timed_out = status is None
    if timed_out:
        zygote.kill(session)
        status = zygote.wait(session, 60)
        if status is None:
            zygote.forget(session)
    return session_result(assignment, student, out, timed_out, status, time.monotonic() - started)


class WarmSessions(LocalSessions):
    """A local pool of ``jobs`` sessions at once, each forked from one warm process."""

    def run_one(self, batch: Batch, path: Path, student: str) -> SubmissionResult:
        try:
            return run_warm_session(
                self._zygote,
                batch.assignment,
                path,
                student_dir(batch.out, student),
                student,
                batch.options,
                capture_secret=batch.capture_secret,
            )
        except HarnessError as exc:
            return SubmissionResult(
                assignment=batch.assignment.id, student=student, checks=(), harness_error=str(exc)
            )

    def run(self, batch: Batch, todo: dict[str, Path]) -> Iterator[tuple[str, SubmissionResult]]:
        if not todo:
            return
        env, root = session_env()
        self._zygote = Zygote(env, root)
        try:
            yield from super().run(batch, todo)
        finally:
            self._zygote.close()


# --- the zygote ----------------------------------------------------------------------------------


def _session_child(req: dict[str, Any]) -> None:
    """In the forked child: become the session, never return."""
    rc = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, 4096)  # the zygote's pipes and selector are not the session's
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        sys.argv = ["harness._session", *req["argv"]]
        from . import _session

        rc = _session.main(req["argv"])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(rc)


def _kill_orphans(sessions: set[int] | dict[int, int]) -> None:
    """Kill and reap our children that are not sessions: what a dead session left behind.

    In rounds until none is left: a killed orphan's own children become ours (we are a
    subreaper) only as it dies, after the round that found it. Bounded by ORPHAN_ROUNDS."""
    from ._proc import _children_of_ours

    for _ in range(ORPHAN_ROUNDS):
        orphans = [pid for pid in _children_of_ours() if pid not in sessions]
        if not orphans:
            return
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for pid in orphans:  # reaped: its children are ours by now, for the next round
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def main() -> int:
    from ._proc import become_subreaper, die_with_parent

    die_with_parent()
    become_subreaper()
    out = os.fdopen(os.dup(1), "w")  # our replies; anything else printed goes to stderr
    os.dup2(2, 1)
    for name in WARM_MODULES:
        __import__(name)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel = selectors.DefaultSelector()
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "in")
    sel.register(wake_r, selectors.EVENT_READ, "child")
    sessions: dict[int, int] = {}  # pid -> request id, until the session is reaped
    pending = b""

    def say(msg: dict[str, Any]) -> None:
        out.write(json.dumps(msg) + "\n")
        out.flush()

    def reap() -> None:
        while True:
            try:  # who has exited, left unreaped: a session's pid stays its group's meanwhile
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None:
                return
            pid = info.si_pid
            rid = sessions.pop(pid, None)
            if rid is not None:  # what is left of its group, then of its descendants
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
            try:
                status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            except ChildProcessError:
                status = -signal.SIGKILL
            if rid is not None:
                _kill_orphans(sessions)
                say({"ended": rid, "exited": pid, "status": status})

    while True:
        for key, _ in sel.select():
            if key.data == "child":
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
                reap()
                continue
            chunk = os.read(sys.stdin.fileno(), 1 << 16)
            if not chunk:  # the grader closed us (or died): nothing may outlive it
                for pid in sessions:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)
                _kill_orphans(set())
                return 0
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                req = json.loads(line)
                if "kill" in req:  # a session past its deadline, if it has not ended
                    for pid, rid in sessions.items():
                        if rid == req["kill"]:
                            with contextlib.suppress(ProcessLookupError, PermissionError):
                                os.killpg(pid, signal.SIGKILL)
                    continue
                sys.stdout.flush()
                pid = os.fork()
                if pid == 0:
                    _session_child(req)
                sessions[pid] = req["id"]
                say({"id": req["id"], "pid": pid})
        reap()


if __name__ == "__main__":
    sys.exit(main())
