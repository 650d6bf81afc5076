"""A student program's long-lived side: the addresses it listens on, and asking it to end.

A tunnel (``ssh -L``) is judged by where its forwarded port listens (loopback only, or every
interface) and by whether it ends when asked, as a service manager or ``kill PID`` asks: one
SIGTERM to the program itself, then nothing of it may be left. Inside the sandbox the program
is the keeper's first child (the keeper is pid 1 of the sandbox's pid namespace and outlives
it while orphans run): that process gets the signal, never the keeper or bwrap.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from ._proc import socket_inodes, tcp_sockets
from ._process import StudentProcess


def _address(hex_addr: str) -> str:
    """/proc/net/tcp's ``0100007F`` (or tcp6's 32 digits), as the address it is."""
    raw = bytes.fromhex(hex_addr)
    # the kernel prints each 32-bit word in host order (little-endian here)
    swapped = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(swapped))


def listening_addresses(port: int, pids: set[int]) -> list[str]:
    """The local addresses of sockets in LISTEN on ``port`` held by ``pids`` (this namespace)."""
    mine = socket_inodes(pids)
    listening = (s for s in tcp_sockets() if s.state == "0A" and s.port == port)
    return sorted({_address(s.local) for s in listening if s.inode in mine})


def socket_owner(host: str, port: int, peer_port: int) -> int | None:
    """The uid owning the TCP socket at ``host:port`` connected to local ``peer_port`` (this
    namespace), from the kernel's own table: who opened a connection a grader's server accepted.
    A student's process cannot pass itself off as another uid's, as it could a log line."""
    want = _unmapped(host)
    return next(
        (
            s.uid
            for s in tcp_sockets()
            if s.port == port and s.remote_port == peer_port and _unmapped(_address(s.local)) == want
        ),
        None,
    )


def _unmapped(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``address``, an IPv4-mapped IPv6 one (``::ffff:127.0.0.1``) as the IPv4 it carries."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_loopback(address: str) -> bool:
    return _unmapped(address).is_loopback


def _status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {k: v.strip() for k, _, v in (ln.partition(":") for ln in text.splitlines())}


def _inner_pid(pid: int) -> int | None:
    ns = _status(pid).get("NSpid", "").split()
    return int(ns[-1]) if ns else None


def program_pid(proc: StudentProcess) -> int | None:
    """The student's program itself (not the sandbox around it), or None if it has exited."""
    if proc.status_pipe is None:  # no sandbox: the program is the process we started
        return proc.pid if proc.poll() is None else None
    pids = proc.pids()
    keeper = next((p for p in pids if _inner_pid(p) == 1), None)
    if keeper is None:
        return None
    # the keeper forks the program first: pid 2 of the namespace (an exec keeps the pid)
    return next((p for p in pids if _inner_pid(p) == 2 and _status(p).get("PPid") == str(keeper)), None)


def _helpers(proc: StudentProcess) -> set[int]:
    """bwrap and the keeper: the sandbox's own processes, not the student's."""
    if proc.status_pipe is None:
        return set()
    out = set()
    for p in proc.pids():
        inner = _inner_pid(p)
        if inner == 1 or _status(p).get("Name") == "bwrap":
            out.add(p)
    return out


def describe(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        cmd = "?"
    return cmd.strip()[:160] or _status(pid).get("Name", "?")


@dataclass(frozen=True)
class Ending:
    """What happened when the program was asked to end."""

    asked: bool  # the program was still running and got SIGTERM
    left: tuple[str, ...]  # what of it still ran when the wait was over (command lines)
    seconds: float  # how long it took to end (or the wait, if something was left)


def ask_to_end(proc: StudentProcess, timeout: float = 5.0, sig: int = signal.SIGTERM) -> Ending:
    """Send the program one ``sig`` and wait (bounded) until none of its processes is left."""
    start = time.monotonic()
    pid = program_pid(proc)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    delay = 0.005
    while True:
        left = proc.pids() - _helpers(proc)
        if not left:
            return Ending(pid is not None, (), time.monotonic() - start)
        if time.monotonic() - start >= timeout:
            return Ending(pid is not None, tuple(describe(p) for p in sorted(left)), timeout)
        time.sleep(delay)  # polling /proc, bounded by the timeout above
        delay = min(delay * 2, 0.05)
