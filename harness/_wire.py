"""Seeing the wire: a real dumpcap capture, or a recording relay where capture is not allowed.

Both backends keep one ordered log of Ethernet frames for the whole session (one capture
start, no per-check stop delay) and hand a check the frames of the connection it made,
once that connection is over. The grader owns the client end of every connection, so it
knows the client port and when it closed its side.

dumpcap writes pcap to a pipe, not a file: on a file it flushes only every ~0.5 s, on a pipe
after every packet, leaving only libpcap's 250 ms read timeout between a packet and us.
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

from ._errors import HarnessError
from ._packets import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    Connection,
    Frame,
    PcapStreamParser,
    Segment,
    make_frame,
    parse_segment,
    pcap_header,
    pcap_record,
)
from ._process import die_with_parent, register_harness_pid, unregister_harness_pid
from ._timing import timed

LOOPBACK = "127.0.0.1"


class FrameLog:
    """An append-only log of frames with a way to wait for a connection to end."""

    def __init__(self, pcap_path: Path | None) -> None:
        self._frames: list[tuple[Frame, Segment | None]] = []
        self._cond = threading.Condition()
        self._pcap = open(pcap_path, "wb") if pcap_path else None  # noqa: SIM115
        if self._pcap:
            self._pcap.write(pcap_header())

    def add(self, frame: Frame) -> None:
        seg = parse_segment(frame)
        with self._cond:
            self._frames.append((frame, seg))
            if self._pcap:
                self._pcap.write(pcap_record(frame))
                self._pcap.flush()
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._frames)

    def close(self) -> None:
        with self._cond:
            if self._pcap:
                self._pcap.close()
                self._pcap = None

    def _find(self, client_port: int, server_port: int) -> tuple[list[Frame], bool]:
        """Frames of the latest connection client_port -> server_port, and whether it ended."""
        start = None
        for i, (_, seg) in enumerate(self._frames):
            if (
                seg
                and seg.sport == client_port
                and seg.dport == server_port
                and seg.flags & SYN
                and not seg.flags & ACK
            ):
                start = i
        if start is None:
            return [], False
        frames, ended = [], False
        for frame, seg in self._frames[start:]:
            if seg is None or {seg.sport, seg.dport} != {client_port, server_port}:
                continue
            frames.append(frame)
            from_client = seg.sport == client_port
            if seg.flags & RST or (from_client and seg.flags & FIN):
                ended = True
        return frames, ended

    def client_ports(self, server_port: int, since: float) -> list[int]:
        """Client ports of the connections opened to ``server_port`` at or after time ``since``."""
        with self._cond:
            return [
                seg.sport
                for frame, seg in self._frames
                if seg
                and frame.ts >= since
                and seg.dport == server_port
                and seg.flags & SYN
                and not seg.flags & ACK
            ]

    def wait_for_syn(self, client_port: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if any(seg and seg.sport == client_port and seg.flags & SYN for _, seg in self._frames):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))

    def connection(
        self, client_port: int, server_port: int, backend: str, timeout: float = 5.0
    ) -> Connection:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                frames, ended = self._find(client_port, server_port)
                if ended:
                    return Connection(
                        (LOOPBACK, client_port), (LOOPBACK, server_port), tuple(frames), backend
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HarnessError(
                        f"the {backend} backend did not see the end of the connection "
                        f"{client_port} -> {server_port} within {timeout:g} s "
                        f"({len(frames)} frames of it seen)"
                    )
                self._cond.wait(min(left, 0.05))


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
                self.log.add(frame)

    def address_for(self, port: int) -> tuple[str, int]:
        return (LOOPBACK, port)

    def sync(self) -> None:
        """A barrier: a refused connection to a closed port, then wait for its SYN to arrive.

        Frames come in order, so once this SYN is in the log every earlier frame is too.
        """
        with socket.socket() as probe:
            probe.bind((LOOPBACK, 0))
            port = probe.getsockname()[1]
            probe.settimeout(1)
            with contextlib.suppress(OSError):
                probe.connect((LOOPBACK, 9))  # discard: nothing listens there in our namespace
        with timed("waiting for dumpcap to catch up"):
            if not self.log.wait_for_syn(port, 5):
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
