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
grader, is a subreaper (what a dead session leaves is killed), and talks JSON lines on its
stdin/stdout: ``{"id", "argv", "env", "cwd", "log"}`` in, ``{"id", "pid"}`` and
``{"exited", "status"}`` out.
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
from pathlib import Path
from typing import Any

from ._assignment import Assignment
from ._errors import HarnessError
from ._results import SubmissionResult
from ._runner import Batch, SessionOptions, session_command, session_env, session_result, student_dir

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


# --- the grader's side -------------------------------------------------------------------------


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
        self._lock = threading.Lock()
        self._next = 0
        self._replies: dict[str, queue.Queue[dict[str, Any]]] = {}
        self._dead = False
        threading.Thread(target=self._read, daemon=True).start()

    def _box(self, key: str) -> queue.Queue[dict[str, Any]]:
        with self._lock:
            return self._replies.setdefault(key, queue.Queue())

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
                key = f"id {msg['id']}" if "id" in msg else f"pid {msg['exited']}"
            except (ValueError, KeyError, TypeError):
                continue  # not ours (the zygote sends only its own lines: belt and braces)
            self._box(key).put(msg)
        self._dead = True
        with self._lock:
            boxes = list(self._replies.values())
        for box in boxes:  # whoever waits learns that the zygote is gone
            box.put({"gone": True})

    def spawn(self, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> int:
        with self._lock:
            self._next += 1
            n = self._next
        box = self._box(f"id {n}")
        request = {"id": n, "argv": argv, "env": env, "cwd": str(cwd), "log": str(log)}
        try:
            assert self.proc.stdin is not None
            with self._lock:
                self.proc.stdin.write(json.dumps(request) + "\n")
                self.proc.stdin.flush()
        except (OSError, ValueError) as exc:
            raise HarnessError(f"the warm session process is gone ({exc})") from exc
        try:
            reply = box.get(timeout=60) if not self._dead else {"gone": True}
        except queue.Empty:
            reply = {"gone": "no answer within 60 s"}
        if "pid" not in reply:
            raise HarnessError(f"the warm session process could not start a session ({reply})")
        return int(reply["pid"])

    def wait(self, pid: int, timeout: float) -> int | None:
        box = self._box(f"pid {pid}")
        try:
            msg = box.get(timeout=timeout)
        except queue.Empty:
            return None
        if msg.get("gone"):
            raise HarnessError("the warm session process died during the session")
        with self._lock:
            self._replies.pop(f"pid {pid}", None)
        return int(msg["status"])

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
    pid = zygote.spawn(argv, env, root, out / "session.log")
    status = zygote.wait(pid, assignment.session_seconds)
    timed_out = status is None
    if timed_out:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        status = zygote.wait(pid, 60)
    return session_result(assignment, student, out, timed_out, status, time.monotonic() - started)


class WarmSessions:
    """A local pool of ``jobs`` sessions at once, each forked from one warm process."""

    def __init__(self, jobs: int = 1) -> None:
        self.jobs = max(1, jobs)

    def run(self, batch: Batch, todo: dict[str, Path]) -> Iterator[tuple[str, SubmissionResult]]:
        from concurrent.futures import ThreadPoolExecutor, as_completed

        if not todo:
            return
        env, root = session_env()
        zygote = Zygote(env, root)
        try:
            with ThreadPoolExecutor(max_workers=self.jobs) as pool:
                futures = {
                    pool.submit(
                        run_warm_session,
                        zygote,
                        batch.assignment,
                        path,
                        student_dir(batch.out, name),
                        name,
                        batch.options,
                        capture_secret=batch.capture_secret,
                    ): name
                    for name, path in todo.items()
                }
                for fut in as_completed(futures):
                    name = futures[fut]
                    try:
                        r = fut.result()
                    except HarnessError as exc:
                        r = SubmissionResult(
                            assignment=batch.assignment.id, student=name, checks=(), harness_error=str(exc)
                        )
                    yield name, r
        finally:
            zygote.close()


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


def _kill_orphans(sessions: set[int]) -> None:
    """Kill and reap our children that are not sessions: what a dead session left behind."""
    from ._proc import _children_of_ours

    for pid in _children_of_ours():
        if pid not in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
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
    sessions: set[int] = set()
    pending = b""

    def say(msg: dict[str, Any]) -> None:
        out.write(json.dumps(msg) + "\n")
        out.flush()

    def reap() -> None:
        ended = False
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                break
            if pid in sessions:
                sessions.discard(pid)
                say({"exited": pid, "status": os.waitstatus_to_exitcode(status)})
                ended = True
        if ended:
            _kill_orphans(sessions)

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
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                _kill_orphans(set())
                return 0
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                req = json.loads(line)
                sys.stdout.flush()
                pid = os.fork()
                if pid == 0:
                    _session_child(req)
                sessions.add(pid)
                say({"id": req["id"], "pid": pid})
        reap()


if __name__ == "__main__":
    sys.exit(main())
