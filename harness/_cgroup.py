"""One bound for all of a session's student processes together: a cgroup, where the kernel
offers one to us.

rlimits bind one process at a time (six children of 900 MB each all fit under a 1 GB
RLIMIT_AS). A control group bounds their sum: memory (resident, tmpfs pages included) and
the number of tasks. As root the session makes ``wiregrade-<pid>`` under its own cgroup, in
the unified hierarchy (v2) when it has the memory and pids controllers, else in the v1
``memory`` and ``pids`` hierarchies; each student process joins it between fork and exec.
Elsewhere (an ordinary user, a read-only /sys/fs/cgroup) there is none, and the report says
so: the per-process rlimits still hold.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PREFIX = "wiregrade-"


def _own_paths() -> dict[str, str]:
    """controller (or "" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    out: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            out[c] = path
    return out


@dataclass
class SessionCgroup:
    """The session's cgroup folders (one for v2; memory and pids for v1)."""

    folders: list[Path]
    version: str
    memory_bytes: int
    tasks: int

    @property
    def note(self) -> str:
        return (
            f"all student processes together limited to {self.memory_bytes >> 20} MiB and "
            f"{self.tasks} tasks (cgroup {self.version})"
        )

    def procs_files(self) -> list[str]:
        """What a child writes its pid into to join (between fork and exec)."""
        return [str(f / "cgroup.procs") for f in self.folders]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for f in self.folders:
            with contextlib.suppress(OSError, ValueError):
                found |= {int(x) for x in (f / "cgroup.procs").read_text().split()}
        return found

    def kill_all(self) -> None:
        for _ in range(20):
            left = self.pids()
            if not left:
                return
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)  # let the kernel deliver before looking again (bounded: 20 rounds)

    def remove(self) -> None:
        self.kill_all()
        for f in self.folders:
            for _ in range(50):
                try:
                    f.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # killed tasks leave the group a moment after the signal
                    time.sleep(0.01)


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _parent_v2(own: dict[str, str]) -> Path | None:
    if "" not in own or not (ROOT / "cgroup.controllers").is_file():
        return None
    base = ROOT / own[""].lstrip("/")
    try:
        enabled = (base / "cgroup.subtree_control").read_text().split()
    except OSError:
        return None
    return base if {"memory", "pids"} <= set(enabled) else None


def sweep(own: dict[str, str] | None = None) -> int:
    """Remove stale session cgroups whose session is gone (a grader killed with -9)."""
    own = own if own is not None else _own_paths()
    parents = [ROOT / own[""].lstrip("/")] if "" in own else []
    parents += [ROOT / c / own[c].lstrip("/") for c in ("memory", "pids") if c in own]
    removed = 0
    for parent in parents:
        with contextlib.suppress(OSError):
            for child in parent.iterdir():
                if not child.name.startswith(PREFIX) or not child.is_dir():
                    continue
                pid = child.name[len(PREFIX) :]
                if pid.isdigit() and Path(f"/proc/{pid}").exists():
                    continue
                stale = SessionCgroup([child], "", 0, 0)
                stale.remove()
                removed += not child.exists()
    return removed


def create(memory_bytes: int, tasks: int) -> tuple[SessionCgroup | None, str]:
    """This session's cgroup, or (None, why not)."""
    if os.geteuid() != 0:
        return None, "no cgroup for student processes (needs root); per-process limits only"
    own = _own_paths()
    sweep(own)
    name = f"{PREFIX}{os.getpid()}"
    try:
        parent = _parent_v2(own)
        if parent is not None:
            folder = parent / name
            folder.mkdir(exist_ok=True)
            _write(folder / "memory.max", str(memory_bytes))
            with contextlib.suppress(OSError):
                _write(folder / "memory.swap.max", "0")
            _write(folder / "pids.max", str(tasks))
            return SessionCgroup([folder], "v2", memory_bytes, tasks), ""
        if "memory" in own and "pids" in own and (ROOT / "memory").is_dir() and (ROOT / "pids").is_dir():
            mem = ROOT / "memory" / own["memory"].lstrip("/") / name
            pids = ROOT / "pids" / own["pids"].lstrip("/") / name
            made = SessionCgroup([], "v1", memory_bytes, tasks)
            for f in (mem, pids):
                f.mkdir(exist_ok=True)
                made.folders.append(f)
            _write(mem / "memory.limit_in_bytes", str(memory_bytes))
            with contextlib.suppress(OSError):
                _write(mem / "memory.memsw.limit_in_bytes", str(memory_bytes))
            _write(pids / "pids.max", str(tasks))
            return made, ""
    except OSError as exc:
        return None, (
            f"no cgroup for student processes ({exc.strerror or exc}: making one needs root); "
            "per-process limits only"
        )
    return None, "no cgroup with memory and pids controllers here; per-process limits only"
