"""Processes as the kernel lists them: who is ours, whose socket listens, and the killing.

The grading session finds every process a student program started through /proc (its process
group, its descendants, and orphans re-parented to the session, a child subreaper), sees which
of them holds a socket in LISTEN, and kills and reaps them. It also arms the death signals that
take a session's processes with it when the grader dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Processes the harness itself started and keeps (dumpcap, relays): never reaped as orphans.
_HARNESS_PIDS: set[int] = set()
# Root processes of student programs now running (their trees are found from them).
_LIVE_STUDENT_PIDS: set[int] = set()
_PR_SET_CHILD_SUBREAPER = 36


def register_harness_pid(pid: int) -> None:
    _HARNESS_PIDS.add(pid)


def unregister_harness_pid(pid: int) -> None:
    _HARNESS_PIDS.discard(pid)


def stop_harness_processes() -> None:
    """Kill what the harness started and keeps (sessions are group leaders: their groups go
    too). For an interrupted batch: its sessions then end at once, not at their deadlines."""
    for pid in list(_HARNESS_PIDS):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def student_started(pid: int) -> None:
    """A student program's first process: its tree is the student's, not an orphan to reap."""
    _LIVE_STUDENT_PIDS.add(pid)


def student_ended(pid: int) -> None:
    _LIVE_STUDENT_PIDS.discard(pid)


PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None = None) -> None:
    """SIGKILL this process when its parent dies (a kill -9 of the grader takes its sessions,
    and a session's death takes its student programs, instead of leaving them behind).

    A change of credentials (entering a user namespace, setuid) clears the signal: call it
    again after one, with ``parent`` the pid the parent had, to exit if it died meanwhile."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:  # it died before the signal was armed
        os._exit(137)


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process instead of init.

    A student server that double-forks and calls setsid() escapes its process group; as a
    subreaper we still find it (it becomes our child) and kill it.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def kill_user(uid: int) -> None:
    """SIGKILL every process of ``uid`` (a session's student user), in rounds until none is left."""
    for _ in range(20):
        found: list[int] = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/status") as f:
                        fields = dict(ln.split(":", 1) for ln in f if ":" in ln)
                except (OSError, ValueError):
                    continue
                # a zombie is dead already: waiting for its reaper, not for another signal
                if int(fields.get("Uid", "-1").split()[0]) == uid and not fields.get(
                    "State", ""
                ).strip().startswith("Z"):
                    found.append(int(name))
        for victim in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(victim, signal.SIGKILL)
        if not found:
            return
        time.sleep(0.01)  # let the kernel deliver before looking again (bounded: 20 rounds)


def processes_of(uid: int) -> int:
    """Tasks (processes and threads) owned by real user ``uid``, as RLIMIT_NPROC counts them."""
    n = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            n += len(os.listdir(f"/proc/{pid}/task"))
                        break
        except (OSError, ValueError):
            continue
    return n


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(ppid, pgid) of ``pid``, or None if it is gone or a zombie (dead, awaiting its reaper)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[2])


def _all_pids() -> list[int]:
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def process_tree(root: int, pgid: int) -> set[int]:
    """Every live process in group ``pgid`` or descended from ``root`` (or from those).

    Orphans re-parented to us (we are a subreaper) count too: a daemonising server's child
    has left its group and lost its parent, but it is still the student's.
    """
    stats = {pid: st for pid in _all_pids() if (st := _proc_stat(pid)) is not None}
    found = {pid for pid, (_, g) in stats.items() if g == pgid}
    if root in stats:
        found.add(root)
    me = os.getpid()
    found |= {
        pid
        for pid, (ppid, _) in stats.items()
        if ppid == me and pid not in _HARNESS_PIDS and pid not in _LIVE_STUDENT_PIDS
    }
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _) in stats.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return found


@dataclass(frozen=True)
class TCPSocket:
    """One row of the kernel's TCP table (/proc/net/tcp or tcp6) of this network namespace."""

    local: str  # the local address as the kernel prints it (hex, each 32-bit word in host order)
    port: int
    remote_port: int
    state: str  # "0A": LISTEN
    uid: int  # who opened it
    inode: str


def tcp_sockets() -> Iterator[TCPSocket]:
    """Every TCP socket of this network namespace, IPv4 and IPv6."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, _, port = parts[1].rpartition(":")
            remote_port = parts[2].rpartition(":")[2]
            yield TCPSocket(local, int(port, 16), int(remote_port, 16), parts[3], int(parts[7]), parts[9])


def listening_inodes(port: int) -> set[str]:
    """Inodes of TCP sockets in LISTEN on ``port`` in this network namespace."""
    return {s.inode for s in tcp_sockets() if s.state == "0A" and s.port == port}


def socket_inodes(pids: set[int]) -> set[str]:
    inodes: set[str] = set()
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue
        for name in names:
            try:
                target = os.readlink(f"{fd_dir}/{name}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def _children_of_ours() -> list[int]:
    """Our children, live or zombie (re-parented orphans included: we are a subreaper)."""
    me, out = os.getpid(), []
    for pid in _all_pids():
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if int(raw[raw.rfind(")") + 2 :].split()[1]) == me:
            out.append(pid)
    return out


def reap_orphans() -> list[int]:
    """Kill and reap children of ours that we did not start (orphans of student programs).

    Each is waited for by pid, never with waitpid(-1): that would steal the exit status of
    a child a Popen object is still waiting for.
    """
    orphans = [p for p in _children_of_ours() if p not in _HARNESS_PIDS and p not in _LIVE_STUDENT_PIDS]
    for pid in orphans:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in orphans:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return orphans
