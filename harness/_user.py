"""Who student programs run as: never root.

When the grader is really root (an instructor's box, CI), each session picks an unprivileged
uid of its own (so RLIMIT_NPROC contains a fork bomb, parallel sessions cannot signal each
other, and nothing the student runs can read the grader's files). The student's Python must
be runnable by that uid: the grader's own interpreter, or a system one of the same version
with the grader's site-packages on PYTHONPATH (a pyenv under /root is not reachable). If no
interpreter works, the session says so and runs students as root rather than not at all.

In a user namespace (an ordinary user self-checking) students already run as that user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

FIRST_UID = 200_000  # far above any real account; no passwd entry is needed
PID_LIMIT = 1 << 22  # the kernel's largest pid_max: one uid per live pid, never shared


@dataclass(frozen=True)
class StudentUser:
    uid: int
    gid: int
    python: str
    pythonpath: str  # "" when the interpreter finds its packages itself
    note: str

    def preexec_drop(self) -> None:  # runs in the child, last thing before exec
        os.setgroups([])
        os.setgid(self.gid)
        os.setuid(self.uid)


def outside_ids() -> tuple[int, int] | None:
    """In a user namespace made by an ordinary user: that user's uid and gid outside it
    (None elsewhere: root's own namespace, or no /proc to tell)."""
    try:
        uid = Path("/proc/self/uid_map").read_text().split()
        gid = Path("/proc/self/gid_map").read_text().split()
    except OSError:
        return None
    if len(uid) < 2 or len(gid) < 2 or uid[:2] == ["0", "0"]:
        return None
    return int(uid[1]), int(gid[1])


def _really_root() -> bool:
    # in a user namespace made by an ordinary user, uid 0 maps to that user
    return os.geteuid() == 0 and outside_ids() is None


def _works_as(uid: int, python: str, pythonpath: str) -> bool:
    env = (
        {"PATH": "/usr/bin:/bin", "HOME": "/", "PYTHONPATH": pythonpath}
        if pythonpath
        else {"PATH": "/usr/bin:/bin", "HOME": "/"}
    )

    def drop() -> None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)

    try:
        run = subprocess.run(
            [python, "-c", "import ssl, cryptography.fernet, requests"],
            env=env,
            cwd="/",
            preexec_fn=drop,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return run.returncode == 0


def student_uid(pid: int) -> int:
    """The uid of the student programs of the session with this pid: its own while it runs."""
    return FIRST_UID + pid % PID_LIMIT


def choose_student_user(mode: str = "auto") -> StudentUser | None:
    """The unprivileged user for this session's student programs, or None to run them as we are."""
    if mode == "off" or not _really_root():
        return None
    uid = student_uid(os.getpid())
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    paths = os.pathsep.join(
        dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    )
    candidates = [(sys.executable, "")]
    system = shutil.which(version, path="/usr/local/bin:/usr/bin")
    if system:
        candidates.append((system, paths))
    for python, pythonpath in candidates:
        if _works_as(uid, python, pythonpath):
            note = f"student programs run as uid {uid}, not root, on {python}"
            return StudentUser(uid, uid, python, pythonpath, note)
    if system:  # our packages sit where others cannot go: a readable copy, made once per machine
        shared = shared_site_packages([p for p in paths.split(os.pathsep) if p])
        if shared and _works_as(uid, system, shared):
            note = f"student programs run as uid {uid}, not root, on {system} with {shared}"
            return StudentUser(uid, uid, system, shared, note)
    return StudentUser(
        -1,
        -1,
        sys.executable,
        "",
        "no Python of this version is reachable by an unprivileged user here",
    )


SHARED_ROOT = Path("/var/cache/wiregrade")
KEEP_DAYS = 7


def _prune(keep: Path) -> None:
    """Copies for environments unused for a week go (throwaway venvs make new ones)."""
    import time

    for old in SHARED_ROOT.glob("site-*"):
        try:
            if old != keep and time.time() - old.stat().st_atime > KEEP_DAYS * 86400:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            continue


def shared_site_packages(sources: list[str]) -> str:
    """A copy of our site-packages that any user can read, kept under /var/cache/wiregrade.

    Named by a digest of the sources' paths and modification times, so a change of packages
    makes a new copy; made in a temporary name and renamed, so parallel sessions never see
    half a copy. Returns "" if it cannot be made.
    """
    import hashlib
    import tempfile

    h = hashlib.sha256()
    for s in sources:
        h.update(s.encode() + str(os.stat(s).st_mtime_ns).encode())
    dest = SHARED_ROOT / f"site-{sys.version_info[0]}.{sys.version_info[1]}-{h.hexdigest()[:16]}"
    if dest.is_dir():
        return str(dest)
    try:
        SHARED_ROOT.mkdir(parents=True, exist_ok=True)
        os.chmod(SHARED_ROOT, 0o755)
        tmp = Path(tempfile.mkdtemp(prefix=".making-", dir=SHARED_ROOT))
        for s in sources:
            shutil.copytree(s, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        for d, _dirs, files in os.walk(tmp):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644 if not os.access(os.path.join(d, f), os.X_OK) else 0o755)
        try:
            tmp.rename(dest)
        except OSError:  # another session made it first
            shutil.rmtree(tmp, ignore_errors=True)
        _prune(dest)
    except OSError:
        return ""
    return str(dest) if dest.is_dir() else ""


def chown_tree(path: Path, user: StudentUser | None) -> None:
    """Give ``path`` (and all below it) to the student user, if there is one."""
    if user is None or user.uid < 0:
        return
    os.chown(path, user.uid, user.gid, follow_symlinks=False)
    if path.is_dir() and not path.is_symlink():
        for p in path.rglob("*"):
            os.chown(p, user.uid, user.gid, follow_symlinks=False)
