"""The root a student program sees: bubblewrap, built from an allow-list.

Every student program (and stunnel or nginx started on a student's configuration) runs under
bubblewrap (``bwrap``, the sandbox Flatpak is built on) in a root made of explicit binds:

- the system read-only: ``/usr`` (with Debian's ``/bin``, ``/lib``... links), ``/etc``;
- the student's interpreter and the packages students may use, read-only;
- the submission copy, read-write, at the path it has outside (so paths the grader writes
  into configurations mean the same inside);
- each file the grader hands the student, read-only, over its name in the submission;
- a private, size-limited ``/tmp``, ``/var/tmp`` and ``/dev/shm``; a fresh ``/proc`` and ``/dev``.

Nothing of the project checkout, the submissions folder, OUT, other sessions or the grader's
own work folders exists inside. The program has its own pid, ipc, uts (and cgroup) namespaces,
keeps the session's network namespace, holds no capability, may not make user namespaces of
its own, and dies with its parent. bwrap itself is started as the unprivileged student uid
(the grader drops to it before exec), so the kernel sees that uid outside every namespace:
a root-only file bound in by mistake stays unreadable. In a student's self-check (no root),
bwrap runs as the student's own uid through a nested user namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TMP_BYTES = 64 << 20  # each of /tmp, /var/tmp, /dev/shm (RAM: bounded)

# The sandbox's pid 1. bwrap ends the pid namespace, killing everything in it, when its first
# process exits; a server that daemonises (stunnel without `foreground = yes`, a student's
# fork-and-setsid) must live on, as it would outside. So pid 1 is this keeper: it runs the
# program, writes how it ended to the grader's pipe, then reaps the orphans it inherits and
# exits when none is left (the grader kills them all at the end of the check).
KEEPER = """
import os, sys
fd, argv = int(sys.argv[1]), sys.argv[2:]
child = os.fork()
if child == 0:
    os.close(fd)
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        sys.stderr.write(f"cannot run {argv[0]}: {exc.strerror}\\n")
        os._exit(127)
null = os.open("/dev/null", os.O_RDWR)
for std in (0, 1, 2):  # the program's output ends when the program (and what it left) ends
    os.dup2(null, std)
code = 0
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    if pid == child:
        code = os.waitstatus_to_exitcode(status)
        os.write(fd, str(code).encode())
        os.close(fd)
sys.exit(code if code >= 0 else 128 - code)
"""


@dataclass(frozen=True)
class Sandbox:
    """How to put one program in a bubblewrap root. Made once per session (see :func:`find`)."""

    bwrap: str
    version: str
    readonly: tuple[str, ...]  # host folders bound read-only at the same path
    inside_uid: int | None = None  # --uid/--gid inside (a self-check shows the user's own)
    inside_gid: int | None = None
    tmp_bytes: int = TMP_BYTES
    python: str = ""  # runs the keeper (pid 1); without one the program itself is the first process

    def argv(
        self,
        command: Sequence[str],
        cwd: Path,
        writable: Sequence[Path] = (),
        given: Mapping[Path, Path] | None = None,
        status_fd: int | None = None,
    ) -> list[str]:
        """bwrap's command line that runs ``command`` in ``cwd`` inside the sandbox.

        ``writable`` folders are bound read-write; ``given`` maps a path inside (a name in the
        submission) to the grader's file outside, bound read-only there. With ``status_fd``
        (and a ``python``) the keeper is pid 1 and writes the program's exit code there.
        """
        a = [
            self.bwrap,
            "--die-with-parent",
            "--new-session",
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--disable-userns",
            "--cap-drop",
            "ALL",
            "--hostname",
            "wiregrade",
        ]
        if self.inside_uid is not None:
            a += ["--uid", str(self.inside_uid), "--gid", str(self.inside_gid)]
        for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            host = Path("/") / top
            if host.is_symlink():
                a += ["--symlink", os.readlink(host), str(host)]
            elif host.is_dir():
                a += ["--ro-bind", str(host), str(host)]
        a += ["--proc", "/proc", "--dev", "/dev"]
        for tmp in ("/tmp", "/var/tmp", "/dev/shm"):  # before the binds: a venv in /tmp stays seen
            a += ["--perms", "1777", "--size", str(self.tmp_bytes), "--tmpfs", tmp]
        for path in self.readonly:
            a += ["--ro-bind", path, path]
        for folder in writable:
            a += ["--bind", str(folder), str(folder)]
        for inside, outside in (given or {}).items():
            a += ["--ro-bind", str(outside), str(inside)]
        a += ["--chdir", str(cwd)]
        if status_fd is not None and self.python:
            return [*a, "--as-pid-1", "--", self.python, "-I", "-S", "-c", KEEPER, str(status_fd), *command]
        return [*a, "--", *command]


def system_folders() -> list[str]:
    """The read-only system part of every sandbox: what interpreters, OpenSSL, stunnel and
    nginx need (their libraries, /etc/ssl, /etc/nginx/mime.types, the private /etc/hosts)."""
    return [p for p in ("/usr", "/etc", "/opt") if os.path.isdir(p) and not os.path.islink(p)]


def interpreter_folders(python: str, pythonpath: str, prefix: str) -> list[str]:
    """Folders the student's Python needs beyond the system: a virtual environment, a copy of
    the packages students may use. Those already under a system folder add nothing."""
    wanted = [prefix, os.path.dirname(os.path.realpath(python)), *pythonpath.split(os.pathsep)]
    system = system_folders()
    out: list[str] = []
    for p in wanted:
        if not p or not os.path.isdir(p):
            continue
        for q in (os.path.abspath(p), os.path.realpath(p)):
            if not any(q == s or q.startswith(s + os.sep) for s in system) and q not in out:
                out.append(q)
    return out


def _version(bwrap: str) -> str:
    try:
        run = subprocess.run([bwrap, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "bubblewrap"
    return run.stdout.strip() or "bubblewrap"


def find(
    readonly: Sequence[str],
    preexec: Callable[[], None] | None,
    inside_uid: int | None = None,
    inside_gid: int | None = None,
    python: str = "",
    env: Mapping[str, str] | None = None,
) -> tuple[Sandbox | None, str]:
    """The session's sandbox, tried once for real as the student uid (through ``preexec``):
    ``python``, the student's interpreter (it also runs the keeper), must import ssl in it,
    or without one ``true`` must run. Else (None, why not): a sandbox that cannot run the
    student's interpreter is ours to report, never a student's failure."""
    # where Debian puts it too: a PATH emptied of tools (a test, a student's shell) keeps the sandbox
    bwrap = shutil.which("bwrap") or shutil.which("bwrap", path="/usr/bin:/bin:/usr/local/bin")
    if bwrap is None:
        return None, "bubblewrap is not installed (Debian: apt-get install bubblewrap)"
    probe = [python, "-c", "import ssl"] if python else ["true"]
    box = Sandbox(
        bwrap, _version(bwrap), tuple(dict.fromkeys(readonly)), inside_uid, inside_gid, python=python
    )
    try:
        run = subprocess.run(
            box.argv(probe, Path("/")),
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
            preexec_fn=preexec,
            env=dict(env) if env is not None else {"PATH": "/usr/bin:/bin"},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"bubblewrap could not be started ({exc})"
    if run.returncode != 0:
        said = (run.stderr.strip().splitlines() or [f"exit {run.returncode}"])[-1]
        return None, f"bubblewrap cannot make a sandbox here ({said})"
    return box, ""
