"""Seeing the wire: a real dumpcap capture, or a recording relay where capture is not allowed.

Both backends keep one ordered log of Ethernet frames for the whole session (one capture
start, no per-check stop delay) and hand a check the frames of the connection it made,
once that connection is over. The grader owns the client end of every connection, so it
knows the client port and when it closed its side. A connection the grader does not own may
never end while a check runs (a proxy keeps its connections to a backend in a pool): for
those, :meth:`Wire.carried` gives what they carried so far, once the log has caught up.

dumpcap writes pcap to a pipe, not a file: on a file it flushes only every ~0.5 s, on a pipe
after every packet, leaving only libpcap's 250 ms read timeout between a packet and us.

What a session records is capped (MAX_BYTES, MAX_FRAMES: the log in memory and the capture
file alike). A student program that floods loopback fills it in a second; from then on, and
whenever the flood made the capture fall behind or drop frames of a grader's connection, a
check fails as the student's failure (:class:`WireFlooded`) with the figures, never as ours.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ._errors import CheckFailed, HarnessError
from ._packets import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    Connection,
    Frame,
    PcapStreamParser,
    make_frame,
    pcap_header,
    pcap_record,
    tcp_ports_flags,
)
from ._proc import die_with_parent, register_harness_pid, unregister_harness_pid
from ._timing import timed

LOOPBACK = "127.0.0.1"


# What one session's wire records, at most. An honest session of any exercise stays under
# 1 MiB and a few thousand frames; a program that floods loopback reaches these in a second or
# two. Bytes count pcap records (16-byte header + frame), so the capture file is at most
# MAX_BYTES plus its 24-byte header; frames bound what Python holds per frame (~150 bytes).
MAX_BYTES = 64 << 20
MAX_FRAMES = 100_000
# A wait that times out while the log took in this much other traffic timed out because of
# that traffic (the reader fell behind, or the kernel dropped frames), not because of us.
BUSY_BYTES = 8 << 20
BUSY_FRAMES = 20_000


class WireFlooded(CheckFailed):
    """The student's programs sent more than the wire records: their failure, with the figures."""


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


class FrameLog:
    """An append-only, size-capped log of frames with a way to wait for a connection to end.

    Frames are kept per port pair, with each pair's latest SYN, FIN and RST positions, so
    waiting for a connection costs the same however much other traffic there is. Once the
    caps are reached the log keeps nothing more (:attr:`full`): a connection it saw end is
    still whole, any other wait fails as the student's, with the figures of the flood.
    """

    def __init__(self, pcap_path: Path | None) -> None:
        self._pairs: dict[tuple[int, int], _Pair] = {}
        self._syns: list[tuple[float, int, int]] = []  # (ts, client port, server port)
        self._syn_ports: set[int] = set()
        self._talkers: dict[tuple[int, int], list[float]] = {}  # (sport, dport) -> [bytes, first, last]
        self._cond = threading.Condition()
        self.frames = 0  # recorded
        self.bytes = 0  # recorded, as pcap records
        self.first_ts = self.last_ts = 0.0
        self.full = False  # the caps were reached: nothing more is recorded
        self._closed = False
        self._pcap = open(pcap_path, "wb") if pcap_path else None  # noqa: SIM115
        if self._pcap:
            self._pcap.write(pcap_header())

    def add(self, frame: Frame) -> bool:
        """Record ``frame``; False once the log is full (it was not recorded)."""
        tcp = tcp_ports_flags(frame.data)
        size = 16 + len(frame.data)
        with self._cond:
            if self.full or self.frames + 1 > MAX_FRAMES or self.bytes + size > MAX_BYTES:
                self.full = True
                self._cond.notify_all()
                return False
            self.frames += 1
            self.bytes += size
            self.first_ts = self.first_ts or frame.ts
            self.last_ts = frame.ts
            if tcp is not None:
                sport, dport, flags = tcp
                key = (min(sport, dport), max(sport, dport))
                pair = self._pairs.get(key)
                if pair is None:
                    pair = self._pairs[key] = _Pair()
                pair.add(frame, sport, flags)
                if flags & SYN:
                    self._syn_ports.add(sport)
                    if not flags & ACK:
                        self._syns.append((frame.ts, sport, dport))
                talker = self._talkers.get((sport, dport))
                if talker is None:
                    self._talkers[(sport, dport)] = [size, frame.ts, frame.ts]
                else:
                    talker[0] += size
                    talker[2] = frame.ts
            if self._pcap:
                self._pcap.write(pcap_record(frame))
                self._pcap.flush()
            self._cond.notify_all()
            return True

    def __len__(self) -> int:
        return self.frames

    def close(self) -> None:
        with self._cond:
            if self._pcap:
                self._pcap.close()
                self._pcap = None
            self._closed = True  # nothing more comes: wake whoever waits
            self._cond.notify_all()

    def _pair(self, client_port: int, server_port: int) -> _Pair:
        key = (min(client_port, server_port), max(client_port, server_port))
        return self._pairs.get(key) or _Pair()

    def client_ports(self, server_port: int, since: float) -> list[int]:
        """Client ports of the connections opened to ``server_port`` at or after time ``since``."""
        with self._cond:
            return [sport for ts, sport, dport in self._syns if ts >= since and dport == server_port]

    def wait_for_syn(self, client_port: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if client_port in self._syn_ports:
                    return True
                left = deadline - time.monotonic()
                if left <= 0 or self.full or self._closed:
                    return False
                self._cond.wait(min(left, 0.05))

    def taken(self) -> tuple[int, int]:
        """(frames, bytes) recorded so far: compare two readings to see how busy the wire was."""
        with self._cond:
            return self.frames, self.bytes

    def busy(self) -> bool:
        """Whether this session's traffic reached flood sizes (an honest one never does)."""
        return self.busy_since((0, 0))

    def busy_since(self, mark: tuple[int, int]) -> bool:
        """Whether the log filled up, or took in flood-sized traffic, since ``mark``."""
        frames, size = self.taken()
        return self.full or frames - mark[0] >= BUSY_FRAMES or size - mark[1] >= BUSY_BYTES

    def flood(self, what: str) -> WireFlooded:
        """The student's failure: ``what`` the grader could not see, and the figures of why."""
        with self._cond:
            frames, size = self.frames, self.bytes
            span = max(self.last_ts - self.first_ts, 0.0)
            top = max(self._talkers.items(), key=lambda kv: kv[1][0], default=None)
        seen = f"Your programs flooded the network: in {span:.1f} s the grader's capture took in {_mib(size)}"
        seen += f" ({frames:,} frames)"
        if top is not None:
            (sport, dport), (tsize, first, last) = top
            seen += (
                f", {_mib(int(tsize))} of it sent from port {sport} to port {dport} "
                f"in {max(last - first, 0.0):.1f} s"
            )
        if self.full:
            seen += f". The grader records at most {_mib(MAX_BYTES)} or {MAX_FRAMES:,} frames per session"
        else:
            seen += ", faster than the grader can record it"
        seen += f", so it could not see {what}."
        return WireFlooded(
            seen,
            expected="only the traffic the exercise needs (an honest session is well under 1 MiB)",
            hint="A loop that sends without waiting for anything (while True: sock.sendall(...)) "
            "floods the network; send what the protocol needs, then stop.",
        )

    def carried(self, server_port: int, since: float, backend: str) -> list[Connection]:
        """Every connection to ``server_port`` that carried a frame at or after ``since``, with
        its frames so far (from its latest SYN), whether or not it has ended."""
        with self._cond:
            ports = dict.fromkeys(sport for _, sport, dport in self._syns if dport == server_port)
            found = []
            for client_port in ports:
                frames = self._pair(client_port, server_port).frames_of(client_port)
                if frames and frames[-1].ts >= since:
                    found.append(
                        Connection((LOOPBACK, client_port), (LOOPBACK, server_port), tuple(frames), backend)
                    )
        if self.busy() and any(c.lost_frames() for c in found):
            raise self.flood(f"all of the connections to port {server_port} (frames of them were lost)")
        return found

    def connection(
        self, client_port: int, server_port: int, backend: str, timeout: float = 5.0
    ) -> Connection:
        deadline = time.monotonic() + timeout
        mark = self.taken()
        with self._cond:
            while not (ended := self._pair(client_port, server_port).ended(client_port)):
                left = deadline - time.monotonic()
                if left <= 0 or self.full or self._closed:
                    break
                self._cond.wait(min(left, 0.05))
            frames = self._pair(client_port, server_port).frames_of(client_port)
        if ended:
            conn = Connection((LOOPBACK, client_port), (LOOPBACK, server_port), tuple(frames), backend)
            # Under a flood the kernel drops frames dumpcap cannot take: a connection with a
            # hole would read as a grader fault (no ServerHello, nothing to decrypt).
            if self.busy() and conn.lost_frames():
                raise self.flood(
                    f"all of its connection {client_port} -> {server_port} (frames of it were lost)"
                )
            return conn
        what = f"the end of its connection {client_port} -> {server_port}"
        if self.busy_since(mark):
            raise self.flood(what)
        raise HarnessError(
            f"the {backend} backend did not see the end of the connection "
            f"{client_port} -> {server_port} within {timeout:g} s "
            f"({len(frames)} frames of it seen)"
        )


class _Pair:
    """The frames between two ports, and where the latest SYN, FIN and RST of each side are."""

    __slots__ = ("frames", "syn", "fin", "rst")

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.syn: dict[int, int] = {}  # client port -> index of its latest SYN (no ACK)
        self.fin: dict[int, int] = {}  # port -> index of its latest FIN
        self.rst = -1  # index of the latest RST, either side

    def add(self, frame: Frame, sport: int, flags: int) -> None:
        i = len(self.frames)
        self.frames.append(frame)
        if flags & SYN and not flags & ACK:
            self.syn[sport] = i
        if flags & FIN:
            self.fin[sport] = i
        if flags & RST:
            self.rst = i

    def frames_of(self, client_port: int) -> list[Frame]:
        """The frames from ``client_port``'s latest SYN on (a later connection ends a wait first)."""
        start = self.syn.get(client_port)
        return [] if start is None else self.frames[start:]

    def ended(self, client_port: int) -> bool:
        start = self.syn.get(client_port)
        return start is not None and max(self.rst, self.fin.get(client_port, -1)) >= start


@dataclass(frozen=True)
class WireInfo:
    backend: str  # "dumpcap" | "relay"
    detail: str


class Wire:
    """Common interface of the backends."""

    info: WireInfo
    log: FrameLog

    def address_for(self, port: int) -> tuple[str, int]:
        """Where a grader client should connect to reach a student's server on ``port``."""
        raise NotImplementedError

    def _require_room(self) -> None:
        """A check about to make traffic fails if the log is full: none of it would be recorded."""
        if self.log.full:
            raise self.log.flood("anything of this check (nothing more is recorded in this session)")

    def serve_at(self, port: int, target: int) -> bool:
        """Make ``port`` reach ``target`` in a way this backend sees (for hops the grader does not
        make, like a proxy's to its backend). False if the backend sees ``port`` as it is."""
        return False

    def connection(self, client_port: int, server_port: int, timeout: float = 5.0) -> Connection:
        with timed(f"waiting for the {self.info.backend} to see a connection end"):
            return self.log.connection(client_port, server_port, self.info.backend, timeout)

    def mark(self) -> float:
        """Now, as frame timestamps count time; :meth:`connections` looks only after it."""
        return time.time()

    def sync(self) -> None:
        """Wait until every frame sent before this call is in the log (backends with a delay)."""

    def connections(self, server_port: int, since: float, timeout: float = 5.0) -> list[Connection]:
        """Every connection made to ``server_port`` since ``since``, once each has ended.

        For traffic the grader does not own: a student's client talking to a student's
        server. Call it after the client has exited (its end is closed, so each ends).
        """
        self.sync()
        ports = self.log.client_ports(server_port, since)
        return [self.connection(p, server_port, timeout) for p in ports]

    def carried(self, server_port: int, since: float) -> list[Connection]:
        """What every connection to ``server_port`` active since ``since`` carried up to now,
        ended or not.

        For hops the grader does not own and that may stay open: a proxy keeps its connections
        to a backend in a pool, so waiting for them to end would wait forever. Call it once the
        grader's own exchange through the hop is over (the request answered): everything the
        hop carried for it was sent before this call, and :meth:`sync` makes sure the log holds it.
        """
        self.sync()
        if self.log.full:  # what was sent after the log filled up is not in it
            raise self.log.flood(f"everything sent to port {server_port}")
        return self.log.carried(server_port, since, self.info.backend)

    def close(self) -> None:
        self.log.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DumpcapWire(Wire):
    def __init__(self, pcap_path: Path | None, bpf: str = "tcp", home: Path | None = None) -> None:
        exe = shutil.which("dumpcap")
        if exe is None:
            raise HarnessError("dumpcap is not installed (Debian: apt-get install tshark)")
        self.log = FrameLog(pcap_path)
        env = dict(os.environ)
        if home is not None:  # inside a user namespace tshark/dumpcap need a readable HOME
            env["HOME"] = str(home)
        self._proc = subprocess.Popen(
            [exe, "-i", "lo", "-P", "-w", "-", "-f", bpf],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=die_with_parent,  # never left capturing if the session is killed
        )
        register_harness_pid(self._proc.pid)
        self._stderr: list[str] = []
        ready = threading.Event()
        threading.Thread(target=self._read_stderr, args=(ready,), daemon=True).start()
        # "File: -" comes once the capture is open; "Capturing on" is too early (packets lost).
        if not ready.wait(10) or self._proc.poll() is not None:
            self.close()
            raise HarnessError("dumpcap did not start capturing: " + " ".join(self._stderr)[-500:])
        self._reader = threading.Thread(target=self._read_frames, daemon=True)
        self._reader.start()
        self.info = WireInfo("dumpcap", f"dumpcap on loopback, capture filter '{bpf}'")

    def _read_stderr(self, ready: threading.Event) -> None:
        assert self._proc.stderr is not None
        for raw in self._proc.stderr:
            line = raw.decode(errors="replace").strip()
            if line.startswith("File:"):
                ready.set()
            elif line:
                self._stderr.append(line)
        ready.set()

    def _read_frames(self) -> None:
        assert self._proc.stdout is not None
        parser = PcapStreamParser()
        fd = self._proc.stdout.fileno()
        while chunk := os.read(fd, 1 << 16):
            for frame in parser.feed(chunk):
                if not self.log.add(frame):
                    return self._stop_at_cap(fd)

    def _stop_at_cap(self, fd: int) -> None:
        """The log is full: stop dumpcap (it would only burn CPU now) and drain what it wrote."""
        with contextlib.suppress(OSError):
            self._proc.terminate()
        with contextlib.suppress(OSError):
            while os.read(fd, 1 << 16):
                pass

    def address_for(self, port: int) -> tuple[str, int]:
        self._require_room()
        return (LOOPBACK, port)

    def sync(self) -> None:
        """A barrier: a refused connection to a closed port, then wait for its SYN to arrive.

        Frames come in order, so once this SYN is in the log every earlier frame is too.
        """
        mark = self.log.taken()
        with socket.socket() as probe:
            probe.bind((LOOPBACK, 0))
            port = probe.getsockname()[1]
            probe.settimeout(1)
            with contextlib.suppress(OSError):
                probe.connect((LOOPBACK, 9))  # discard: nothing listens there in our namespace
        with timed("waiting for dumpcap to catch up"):
            if not self.log.wait_for_syn(port, 5):
                if self.log.busy_since(mark):
                    raise self.log.flood("the traffic of this check through to its end")
                raise HarnessError("dumpcap stopped delivering packets (its barrier never arrived)")

    def close(self) -> None:
        with timed("dumpcap stop"):
            self._stop()

    def _stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        unregister_harness_pid(self._proc.pid)
        if hasattr(self, "_reader"):
            self._reader.join(2)
        self.log.close()


class RelayWire(Wire):
    """A userspace relay between the grader's client and the student's server.

    It records each direction's bytes as it forwards them and writes them out as the TCP
    frames a capture would have shown (same ports as a direct connection), so every check
    and the report work the same on both backends. It cannot see what never reaches a
    socket (TCP options, retransmissions), which the checks do not rely on.
    """

    def __init__(self, pcap_path: Path | None, detail: str = "") -> None:
        self.log = FrameLog(pcap_path)
        self._relays: dict[int, socket.socket] = {}
        self._lock = threading.Lock()
        self._closing = False
        self.info = WireInfo("relay", detail or "a recording relay between grader and student")

    def address_for(self, port: int) -> tuple[str, int]:
        self._require_room()
        with self._lock:
            if port not in self._relays:
                lsock = socket.socket()
                lsock.bind((LOOPBACK, 0))
                lsock.listen(16)
                self._relays[port] = lsock
                threading.Thread(target=self._accept_loop, args=(lsock, port), daemon=True).start()
            return (LOOPBACK, self._relays[port].getsockname()[1])

    def serve_at(self, port: int, target: int) -> bool:
        """A relay on the fixed ``port`` forwarding to ``target``, recorded as if it were ``port``."""
        lsock = socket.create_server((LOOPBACK, port))
        with self._lock:
            self._relays[-port] = lsock
        threading.Thread(target=self._accept_loop, args=(lsock, target, port), daemon=True).start()
        return True

    def _accept_loop(self, lsock: socket.socket, target: int, shown: int | None = None) -> None:
        while not self._closing:
            try:
                csock, caddr = lsock.accept()
            except OSError:
                return
            # Connect upstream here, in accept order: a server that serves one client must see
            # the clients in the order they came, as it would without the relay.
            ssock: socket.socket | None = None
            try:
                ssock = socket.create_connection((LOOPBACK, target), timeout=5)
                ssock.settimeout(None)
            except OSError:
                ssock = None
            threading.Thread(
                target=self._serve, args=(csock, ssock, caddr[1], shown or target), daemon=True
            ).start()

    def _serve(self, csock: socket.socket, ssock: socket.socket | None, cport: int, shown: int) -> None:
        client, server = (LOOPBACK, cport), (LOOPBACK, shown)
        seq = {client: random.getrandbits(32), server: random.getrandbits(32)}

        def emit(src: tuple[str, int], flags: int, payload: bytes = b"") -> None:
            dst = server if src == client else client
            self.log.add(make_frame(time.time(), src, dst, seq[src], seq[dst], flags, payload))
            seq[src] += len(payload) + (1 if flags & (SYN | FIN) else 0)

        self.log.add(make_frame(time.time(), client, server, seq[client], 0, SYN))
        seq[client] += 1
        if ssock is None:  # refused upstream: the client sees the reset it would have seen
            emit(server, RST | ACK)
            _abort(csock)
            return
        emit(server, SYN | ACK)
        emit(client, ACK)
        done = threading.Event()
        aborted = threading.Event()
        lock = threading.Lock()

        def pump(src_sock: socket.socket, dst_sock: socket.socket, src: tuple[str, int]) -> None:
            try:
                while data := src_sock.recv(1 << 16):
                    with lock:
                        emit(src, PSH | ACK, data)
                    dst_sock.sendall(data)
                with lock:
                    if not aborted.is_set():  # woken by the other side's reset: not our FIN
                        emit(src, FIN | ACK)
                with contextlib.suppress(OSError):
                    dst_sock.shutdown(socket.SHUT_WR)
            except OSError:
                with lock:
                    first = not aborted.is_set()
                    aborted.set()
                    if first:  # the other side's reset is not this side's
                        emit(src, RST | ACK)
                # Pass the reset on: linger 0 makes the close below send RST. The other pump
                # may be blocked reading dst_sock; SHUT_RD wakes it (a close would not).
                with contextlib.suppress(OSError):
                    dst_sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                    dst_sock.shutdown(socket.SHUT_RD)
            finally:
                with lock:
                    last = done.is_set()
                    done.set()
                if last:
                    csock.close()
                    ssock.close()

        threading.Thread(target=pump, args=(ssock, csock, server), daemon=True).start()
        pump(csock, ssock, client)

    def close(self) -> None:
        self._closing = True
        with self._lock:
            for lsock in self._relays.values():
                lsock.close()
        super().close()


def _abort(sock: socket.socket) -> None:
    """Close with RST, as the peer's reset would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        sock.close()


def open_wire(
    choice: str, pcap_path: Path | None, can_capture: bool, why_not: str, home: Path | None
) -> Wire:
    """The backend to use: ``choice`` is "auto", "dumpcap" or "relay"."""
    if choice == "relay":
        return RelayWire(pcap_path, "a recording relay (chosen with --wire relay)")
    if choice == "dumpcap" or can_capture:
        try:
            with timed("dumpcap start"):
                return DumpcapWire(pcap_path, home=home)
        except HarnessError as exc:
            if choice == "dumpcap":
                raise
            why_not = str(exc)
    return RelayWire(pcap_path, f"a recording relay, because capture is not possible: {why_not}")
