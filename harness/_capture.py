"""Captures the grader makes itself, for exercises that hand a student a capture to analyse.

The grader runs its own clients and servers on loopback, the session's dumpcap sees the
traffic, and the frames of exactly those connections are written out as a pcap. The grader
knows the truth because its endpoints made the traffic: a check compares the student's
reading of the capture with what the endpoints sent, never with a re-dissection.

Content is randomised from a stable seed (the student's identity), so each student gets
different answers and a capture can be made again for a dispute. A scenario (the
exercise's ``graders/<id>/scenario.py``) gets a :class:`Scene` and a ``random.Random``; the
handout's practice capture is made by the same scenario with the seed "practice"
(``wiregrade capture``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import random
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from ._context import GradingContext
from ._dissect import tshark_path
from ._errors import HarnessError
from ._packets import Connection, Frame, write_pcap
from ._wire import Wire

SECRET_ENV = "WIREGRADE_CAPTURE_SECRET"
PRACTICE = "practice"  # the handout's capture is made with this seed
T = TypeVar("T")


def seed_for(assignment_id: str, student: str) -> str:
    """A student's stable seed. Set WIREGRADE_CAPTURE_SECRET when grading for marks, so nobody
    can work out a classmate's (or their own) answers from a name."""
    secret = os.environ.get(SECRET_ENV, "")
    return hashlib.sha256(f"{secret}\0{assignment_id}\0{student}".encode()).hexdigest()[:24]


def rng_for(seed: str, part: str) -> random.Random:
    """One generator per capture, so the public capture does not change when a hidden one does."""
    return random.Random(hashlib.sha256(f"{seed}\0{part}".encode()).digest())


def loopback(rng: random.Random, taken: set[str]) -> str:
    """A fresh 127.x.y.z address (never 127.0.0.1, the handout's host; never one in ``taken``),
    added to ``taken``. Every one of them is the loopback interface's on Linux."""
    while True:
        host = f"127.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(2, 255)}"
        if host not in taken and host != "127.0.0.1":
            taken.add(host)
            return host


def apart_from_practice(
    seed: str,
    part: str,
    rng: random.Random,
    draw: Callable[[random.Random], T],
    apart: Callable[[T, T], bool],
) -> T:
    """A capture's layout (addresses, ports, names, number and order of connections), drawn
    with ``draw`` from ``rng``; for any seed but the practice one, drawn again until ``apart``
    says it shares none of those details with the practice capture's layout, so a program
    fitted to the practice capture fails on every graded one. ``draw`` must use only the
    generator it is given (the practice layout is drawn again from its own seed to compare)."""
    mine = draw(rng)
    if seed == PRACTICE:
        return mine
    practice = draw(rng_for(PRACTICE, part))
    for _ in range(10000):  # each draw takes microseconds; a few in a hundred are apart
        if apart(mine, practice):
            return mine
        mine = draw(rng)
    raise HarnessError("could not draw a capture layout unlike the practice one")  # our bug


class Scene:
    """Connections between the grader's own endpoints, recorded for one capture file.

    Addresses are chosen by the scenario (several 127.x addresses, fixed client ports) so
    that a capture made again from the same seed reads the same. In a private network
    namespace every address and port is free; outside one, a busy port gives way to a free
    one (the truth records what was used).
    """

    def __init__(self, wire: Wire, rng: random.Random, exact: bool) -> None:
        """``exact``: the scenario's addresses must be used as they are (a private network
        namespace, where they are all free): a busy one is our bug, not a reason to move."""
        if wire.info.backend != "dumpcap":
            raise HarnessError(
                "making this exercise's capture needs a real capture (dumpcap): "
                f"this session has {wire.info.detail}"
            )
        self.wire = wire
        self.rng = rng
        self.exact = exact
        self._connections: list[tuple[str, int, int]] = []  # client host, client port, server port
        self.recorded: dict[str, Connection] = {}  # "client IP:port" -> that connection's frames
        self._listeners: list[socket.socket] = []
        self._used_ports: set[int] = set()
        self.last_client = ""

    def listen(self, host: str, port: int) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if self.exact:
                sock.close()
                raise HarnessError(f"the capture's server could not listen on {host}:{port}: {exc}") from exc
            sock.bind((host if _bindable(host) else "127.0.0.1", 0))
        sock.listen(16)
        self._listeners.append(sock)
        return sock

    def client_port(self) -> int:
        while True:
            port = self.rng.randrange(40000, 60000)
            if port not in self._used_ports:
                self._used_ports.add(port)
                return port

    def connect(self, server: tuple[str, int], client_host: str = "127.0.0.2") -> socket.socket:
        """A client socket connected to ``server``, from a seeded port; recorded for the capture."""
        port = self.client_port()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((client_host, port))
        except OSError as exc:
            if self.exact:
                sock.close()
                raise HarnessError(f"the capture's client could not use {client_host}:{port}: {exc}") from exc
            sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        sock.connect(server)
        host, port = sock.getsockname()[:2]
        self._connections.append((host, port, server[1]))
        self.last_client = f"{host}:{port}"
        return sock

    def close(self) -> None:
        for s in self._listeners:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept(); close() alone does not
            s.close()

    def frames(self) -> list[Frame]:
        """Every frame of the recorded connections, in time order (each must have ended)."""
        self.wire.sync()
        frames: list[Frame] = []
        for host, client_port, server_port in self._connections:
            conn = self.wire.connection(client_port, server_port, timeout=5)
            self.recorded[f"{host}:{client_port}"] = conn
            frames.extend(conn.frames)
        return sorted(frames, key=lambda f: f.ts)

    def write(self, path: Path) -> list[Frame]:
        frames = self.frames()
        write_pcap(path, frames)
        return frames


def _bindable(host: str) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, 0))
        except OSError:
            return False
    return True


def load_scenario(grader_dir: Path) -> ModuleType:
    """A grader's scenario.py, outside a grading session (where support.py imports it).

    A scenario's hidden_scenes.py (absent from a student's bundle) imports it by that
    top-level name and registers its hidden scenes in it: it is loaded here after the scenario
    (in a session, the hidden checks' module imports it); the scenario never imports it.
    Loading another grader's scenario replaces both, so one process can make several
    exercises' captures in turn.
    """
    path = grader_dir / "scenario.py"
    if not path.is_file():
        raise HarnessError(f"{grader_dir.name} makes no captures (no {path})")
    for name in ("scenario", "hidden_scenes"):
        sys.modules.pop(name, None)
    sys.path[:] = [str(grader_dir), *(p for p in sys.path if p != str(grader_dir))]
    spec = importlib.util.spec_from_file_location("scenario", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scenario"] = module
    spec.loader.exec_module(module)
    if (grader_dir / "hidden_scenes.py").is_file():
        importlib.import_module("hidden_scenes")
    return module


def make_for_student(
    grading: GradingContext, scenario: ModuleType, part: str, name: str, files: tuple[str, ...]
) -> dict[str, Any]:
    """In a grading session: the session's student's capture ``part``, made in their submission
    folder as NAME + each of ``files`` (suffixes), which are handed over to the student.
    Returns what the scenario's ``make`` returns (the answers stay with the grader)."""
    tshark_path()  # the handouts promise tshark where students are graded: its absence is ours
    seed = seed_for(grading.assignment.id, grading.student or grading.original.name)
    exact = grading.isolation.private_network
    folder = Path(tempfile.mkdtemp(prefix="capture-", dir=grading.workdir))
    made: dict[str, Any] = scenario.make(grading.wire, seed, part, folder, name, exact)
    for suffix in files:
        grading.give(f"{name}{suffix}", (folder / f"{name}{suffix}").read_bytes(), 0o444)
    return made


@contextlib.contextmanager
def capture_wire() -> Iterator[tuple[Wire, bool]]:
    """Outside a grading session: a private network and one dumpcap to make captures with.

    Call it before the process starts any thread (entering a namespace needs that). Yields
    the wire and whether scenario addresses are exact (in a private namespace)."""
    from ._isolation import enter_private_network
    from ._wire import DumpcapWire

    iso = enter_private_network("auto")
    if not iso.private_network and os.geteuid() != 0:
        raise HarnessError(
            f"capturing needs root or a user namespace, and neither is available here ({iso.detail})"
        )
    with (
        tempfile.TemporaryDirectory(prefix="wiregrade-capture-") as home,
        DumpcapWire(None, home=Path(home)) as wire,
    ):
        yield wire, iso.private_network


# --- `wiregrade capture`: a capture outside a grading session (the handout's practice one) ----


def main(argv: list[str] | None = None) -> int:
    """``python -m harness._capture``: make one scenario's captures into a folder.

    Runs in its own process because entering a private network namespace needs a
    single-threaded process; writes NAME.pcap (and any key log) plus NAME-answer*.json.
    A scenario's ``make(wire, seed, part, folder, name, exact)`` returns {"answers": {suffix:
    answer}, ...}: the answer files a correct program's output equals.
    """
    ap = argparse.ArgumentParser(prog="python -m harness._capture")
    ap.add_argument("--assignment", required=True)
    ap.add_argument("--seed", required=True)
    ap.add_argument("--part", default="public", choices=("public", "hidden"))
    ap.add_argument("--name", default="capture")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    from ._assignment import load_assignment
    from ._proc import die_with_parent

    die_with_parent()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        with capture_wire() as (wire, exact):
            scenario = load_scenario(load_assignment(args.assignment).grader_dir)
            made: dict[str, Any] = scenario.make(wire, args.seed, args.part, out, args.name, exact=exact)
    except HarnessError as exc:
        raise SystemExit(f"wiregrade capture: {exc}") from None
    for suffix, truth in made["answers"].items():
        (out / f"{args.name}-answer{suffix}.json").write_text(json.dumps(truth, indent=2) + "\n")
    with contextlib.suppress(OSError):
        for p in out.iterdir():
            p.chmod(0o644)
    print("\n".join(str(p) for p in sorted(out.iterdir()) if p.name.startswith(args.name)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
