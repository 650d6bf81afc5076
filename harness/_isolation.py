"""A private network for each grading session.

The session process moves itself into a new network namespace (loopback only) before it
starts any thread: as root with ``unshare(CLONE_NEWNET)``; as an ordinary user through an
unprivileged user namespace (``CLONE_NEWUSER | CLONE_NEWNET``, like ``unshare -rn``), where
it is root of its own namespaces and may capture on its own loopback. Inside, the handout's
fixed port works, parallel sessions never clash, a capture sees only this submission, and
nothing reaches the outside. Where neither works (macOS, Docker's default seccomp profile,
Ubuntu's AppArmor restriction) the session stays in the host's network and says so.

Ubuntu 24.04 lets an unprivileged user create a user namespace but then refuses it every
capability, so the ``uid_map`` write fails *after* the process has moved in: too late to fall
back. So an ordinary user's set-up is first tried in a throwaway child (:func:`probe_user_namespace`);
only if that child got all the way does the session itself move.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import socket
import struct
import sys
from dataclasses import dataclass

from ._errors import HarnessError

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_MNT_DETACH = 2

# Tests only: makes the uid_map write fail with EPERM, as Ubuntu 24.04's AppArmor restriction
# does (the namespace is created, its set-up refused). Emulated rather than reproduced: the
# restriction lives in an AppArmor policy that a test cannot switch on for one process, and
# seccomp cannot fail a write() by path. The hook sits at the very write the kernel refuses,
# so the probe, the fallback and the message are the code paths a restricted laptop takes.
RESTRICT_ENV = "WIREGRADE_TEST_USERNS_RESTRICTED"


@dataclass(frozen=True)
class Isolation:
    kind: str  # "netns" | "userns+netns" | "none"
    detail: str

    @property
    def private_network(self) -> bool:
        return self.kind != "none"


def _unshare(flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def bring_up_loopback() -> None:
    """``ip link set lo up`` without needing iproute2."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, _SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | _IFF_UP))


def _map_self(uid: int, gid: int) -> None:
    """In a fresh user namespace: become its root (our own uid and gid outside)."""
    _write("/proc/self/setgroups", "deny")
    if os.environ.get(RESTRICT_ENV):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM) + " (emulated)", "/proc/self/uid_map")
    _write("/proc/self/uid_map", f"0 {uid} 1")
    _write("/proc/self/gid_map", f"0 {gid} 1")


def probe_user_namespace() -> str:
    """Try an ordinary user's whole set-up (user + network namespace, id maps, loopback up)
    in a throwaway child. Returns "" if it worked, else why not, for the student to read."""
    uid, gid = os.geteuid(), os.getegid()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        code = 0
        try:
            os.close(r)
            step = "create a user namespace"
            _unshare(CLONE_NEWUSER | CLONE_NEWNET)
            step = "set up the user namespace it created"
            _map_self(uid, gid)
            step = "bring up loopback in it"
            bring_up_loopback()
        except BaseException as exc:  # noqa: BLE001 - anything: the child reports and exits
            code = 1
            what = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
            with contextlib.suppress(OSError):
                os.write(w, f"{step}|{what}{where}".encode()[:1000])
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        said = f.read(1000).decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) == 0:
        return ""
    step, _, what = said.partition("|")
    if not what:
        return f"the namespace probe ended abnormally (status {status})"
    if step == "set up the user namespace it created":
        return (
            f"user namespaces are restricted on this system: one was created but its set-up was "
            f"refused ({what}), as Ubuntu 24.04 does by default"
        )
    return f"could not {step} ({what})"


def enter_private_network(mode: str = "auto") -> Isolation:
    """Move this (single-threaded) process into a fresh network namespace.

    ``mode`` is "auto" (try, fall back with a reason) or "off".
    """
    if mode == "off":
        return Isolation("none", "network namespaces switched off (--isolation off)")
    if not sys.platform.startswith("linux"):
        return Isolation("none", f"network namespaces need Linux (this is {sys.platform})")
    uid, gid = os.geteuid(), os.getegid()
    if uid != 0 and (why := probe_user_namespace()):
        return Isolation("none", f"{why}; using the host's loopback with free ports instead")
    try:
        _unshare(CLONE_NEWNET if uid == 0 else CLONE_NEWUSER | CLONE_NEWNET)
    except OSError as exc:
        return Isolation(
            "none",
            f"could not create a network namespace ({exc.strerror or exc}); "
            "using the host's loopback with free ports",
        )
    # From here on we are inside: a failure leaves no usable network, so it is ours to report.
    try:
        if uid == 0:
            kind = "netns"
        else:
            _map_self(uid, gid)
            kind = "userns+netns"
        bring_up_loopback()
    except OSError as exc:
        raise HarnessError(f"entered a network namespace but could not set it up: {exc}") from exc
    detail = "a private network namespace with loopback only"
    if kind == "userns+netns":
        detail += ", in a user namespace (no root needed)"
    return Isolation(kind, detail)


def _mount(source: str | None, target: str, flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    src = source.encode() if source else None
    if libc.mount(src, target.encode(), None, ctypes.c_ulong(flags), None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def map_host_names(names: list[str], workdir: str) -> str:
    """Make ``names`` resolve to 127.0.0.1 for this process and its children.

    The lecture puts ``127.0.0.1 horiem.ca`` in /etc/hosts; students' clients connect to that
    name. Inside a private mount namespace we bind a hosts file of our own over /etc/hosts,
    touching nothing outside. Returns how the names resolve now (for the report), or raises
    OSError if they cannot be made to resolve.
    """
    wanted = [n for n in names if n and n not in ("localhost", "127.0.0.1")]
    if not wanted or all(_resolves_to_loopback(n) for n in wanted):
        return "the host names already resolve to 127.0.0.1"
    try:
        with open("/etc/hosts") as f:
            current = f.read()
    except OSError:
        current = "127.0.0.1 localhost\n"
    hosts = os.path.join(workdir, "hosts")
    with open(hosts, "w") as f:
        f.write(current.rstrip("\n") + "\n# wiregrade: the handout's host names\n")
        f.write("".join(f"127.0.0.1 {n}\n" for n in wanted))
    os.chmod(hosts, 0o644)
    _mount(hosts, os.path.realpath("/etc/hosts"), _MS_BIND)
    return f"{', '.join(wanted)} mapped to 127.0.0.1 in a private /etc/hosts"


def _resolves_to_loopback(name: str) -> bool:
    try:
        return all(info[4][0] == "127.0.0.1" for info in socket.getaddrinfo(name, None, socket.AF_INET))
    except OSError:
        return False


_HIDDEN: list[str] = []


_PRIVATE_MOUNTS: list[bool] = []


def private_mounts() -> None:
    """A mount namespace of our own: what we mount (a hosts file, hidings) stays ours."""
    _unshare(CLONE_NEWNS)
    _mount(None, "/", _MS_REC | _MS_PRIVATE)
    _PRIVATE_MOUNTS.append(True)


def in_private_mounts() -> bool:
    return bool(_PRIVATE_MOUNTS)


def mount_tmpfs(target: str, size: int, mode: int) -> None:
    """A fresh tmpfs of at most ``size`` bytes on ``target`` (in our mount namespace only)."""
    libc = ctypes.CDLL(None, use_errno=True)
    opts = f"size={size},mode={mode:o}".encode()
    if libc.mount(b"wiregrade", target.encode(), b"tmpfs", ctypes.c_ulong(0), opts) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs on {target}: {os.strerror(err)}")


def unmount(target: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(target.encode(), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


SESSION_BYTES = 2 << 30  # the session's own work space (keys, captures, certificates)


def private_session_tmp(owner_uid: int) -> str | None:
    """Put this session's temporary folders on a tmpfs of its own mount namespace.

    The mount point is one fixed folder per user (``$TMPDIR/.wiregrade-sessions-UID``); every
    session mounts its own tmpfs there, seen by it and its children only. When the session
    ends, however it ends (a kill -9 of the grader too), the namespace and the tmpfs go with
    it: no session folder, key log or capture is left on the machine. Returns the folder, or
    None (then the session uses the ordinary temporary folder).
    """
    import stat
    import tempfile

    base = os.path.join(tempfile.gettempdir(), f".wiregrade-sessions-{owner_uid}")
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(base, 0o711)
        st = os.lstat(base)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            return None  # not ours (someone else made it): never mount on it
        mount_tmpfs(base, SESSION_BYTES, 0o711)
    except OSError:
        return None
    tempfile.tempdir = base
    return base


def hide(paths: list[str], keep: list[str]) -> list[str]:
    """Cover each of ``paths`` with an empty read-only tmpfs, for us and every child.

    Used once the grader is loaded, so that student programs cannot read the graders, the
    solutions, the store or other students' work. A path that holds any of ``keep`` (the
    Python that runs students, the session's own folder) is left alone. Returns what was hidden.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    done = []
    for p in dict.fromkeys(os.path.realpath(x) for x in paths):
        if not os.path.isdir(p) or any(k == p or k.startswith(p + os.sep) for k in keep):
            continue
        if (
            libc.mount(b"wiregrade-hidden", p.encode(), b"tmpfs", ctypes.c_ulong(1), b"size=4k,mode=0555")
            == 0
        ):
            _HIDDEN.append(p)
            done.append(p)
    return done


def unhide() -> None:
    """Lift the covers (the session writes its results into one of the hidden folders)."""
    libc = ctypes.CDLL(None, use_errno=True)
    while _HIDDEN:
        libc.umount2(_HIDDEN.pop().encode(), _MNT_DETACH)
