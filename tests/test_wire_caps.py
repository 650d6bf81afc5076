"""The wire's caps: a program that floods loopback fails as the student's failure, with the
figures, while the capture file and the grader's memory stay bounded (issue 12, point 5)."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from harness import HarnessError, Outcome
from harness import _wire as wire_module
from harness._assignment import load_assignment
from harness._packets import ACK, FIN, PSH, SYN, Connection, Frame, make_frame, read_pcap
from harness._runner import run_session
from harness._samples import materialize, samples_of
from harness._wire import FrameLog, WireFlooded
from tests.conftest import needs_tshark

GRADER, SERVER, FLOODER = ("127.0.0.1", 40000), ("127.0.0.1", 12345), ("127.0.0.1", 40001)
MEMORY_LIMIT_KB = 200 * 1024

# The reference server, plus a thread that connects to the server's own port and sends 1 MiB
# writes as fast as it can (its connection is drained by the server; the grader's is served).
FLOOD = """import threading


def _drain(sock):
    while sock.recv(1 << 20):
        pass


def _flood(sock):
    sock.connect(('127.0.0.1', PORT))
    chunk = b'x' * (1 << 20)
    while True:
        sock.sendall(chunk)


_flooder = socket(AF_INET, SOCK_STREAM)
_flooder.bind(('127.0.0.1', 0))
FLOOD_PORT = _flooder.getsockname()[1]
threading.Thread(target=_flood, args=(_flooder,), daemon=True).start()

while True:
    raw_sock, address = listener.accept()
    if address[1] == FLOOD_PORT:
        threading.Thread(target=_drain, args=(raw_sock,), daemon=True).start()
        continue
"""
ACCEPT = "while True:\n    raw_sock, address = listener.accept()\n"


class PeakMemory:
    """The peak resident memory (VmHWM) of the grading session whose command line names ``tag``."""

    def __init__(self, tag: str) -> None:
        self.tag = tag.encode()
        self.peak_kb = 0
        self.seen = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _watch(self) -> None:
        while not self._stop.wait(0.02):  # a sampling interval: VmHWM only grows
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if b"harness._session" not in cmd or self.tag not in cmd:
                        continue
                    m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
                except OSError:
                    continue
                if m:
                    self.seen = True
                    self.peak_kb = max(self.peak_kb, int(m.group(1)))


@needs_tshark
@pytest.mark.slow
def test_a_server_flooding_loopback_fails_with_the_figures_in_bounded_memory(tmp_path: Path) -> None:
    if shutil.which("dumpcap") is None:
        pytest.skip("dumpcap is not installed")
    assignment = load_assignment("tls-server")
    reference = samples_of(assignment)[0]
    flooder = replace(reference, replacements=({"file": "server.py", "old": ACCEPT, "new": FLOOD},))
    submission = materialize(flooder, tmp_path / "flooder")
    out = tmp_path / "out"
    with PeakMemory(str(out)) as memory:
        r = run_session(assignment, submission, out, "flooder")
    if r.environment.wire != "dumpcap":
        pytest.skip(f"this machine cannot capture: {r.environment.wire_detail}")

    assert not r.harness_error, r.harness_error
    assert [(c.id, c.seen) for c in r.checks if c.outcome is Outcome.ERROR] == []
    # A check whose traffic the capture saw whole may pass; every other one fails, as the
    # student's failure, naming the flood (or the check it depends on, which names it).
    flooded = [c for c in r.checks if "flooded the network" in c.seen]
    assert flooded, [(c.id, c.outcome, c.seen) for c in r.checks]
    for c in r.checks:
        assert c.outcome is Outcome.PASSED or c in flooded or "it needs what" in c.seen, (c.id, c.seen)
    assert all(c.outcome is Outcome.FAILED for c in flooded)
    figures = re.search(
        r"flooded the network: in ([\d.]+) s the grader's capture took in ([\d.]+) MiB .*"
        r"sent from port \d+ to port (\d+) .*(records at most 64.0 MiB|faster than the grader can record)",
        flooded[0].seen,
    )
    assert figures, flooded[0].seen
    # The flood filled the log, or made it lose frames of the grader's connection: either way
    # it took in flood-sized traffic (what an honest session never sends) on the server's port.
    assert float(figures[2]) >= wire_module.BUSY_BYTES >> 20 and int(figures[3]) == assignment.port

    capture = out / "capture.pcap"
    assert wire_module.BUSY_BYTES <= capture.stat().st_size <= wire_module.MAX_BYTES + 24
    assert memory.seen
    assert memory.peak_kb < MEMORY_LIMIT_KB, f"the grading session peaked at {memory.peak_kb} kB"


# --- the frame log on its own (no capture) ---------------------------------------------------


def connection_frames(client: tuple[str, int], end: bool) -> list[Frame]:
    frames = [
        make_frame(1.0, client, SERVER, 100, 0, SYN),
        make_frame(1.1, SERVER, client, 500, 101, SYN | ACK),
        make_frame(1.2, client, SERVER, 101, 501, PSH | ACK, b"hello"),
    ]
    if end:
        frames.append(make_frame(1.3, client, SERVER, 106, 501, FIN | ACK))
    return frames


def test_the_frame_log_stops_at_its_caps_and_names_the_flood(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wire_module, "MAX_BYTES", 100_000)
    pcap = tmp_path / "capture.pcap"
    log = FrameLog(pcap)
    for f in connection_frames(GRADER, end=True) + connection_frames(("127.0.0.1", 40002), end=False):
        assert log.add(f)
    chunk = b"x" * 1000
    sent = 0
    while log.add(make_frame(2.0 + sent / 1e6, FLOODER, SERVER, sent, 0, PSH | ACK, chunk)):
        sent += len(chunk)
    assert log.full and not log.add(make_frame(9.0, GRADER, SERVER, 0, 0, SYN))
    log.close()

    assert pcap.stat().st_size <= 100_000 + 24
    assert len(read_pcap(pcap)) == len(log)
    whole = log.connection(GRADER[1], SERVER[1], "test", timeout=5)  # it ended before the cap
    assert whole.client_stream == b"hello" and whole.closed_by() == [("client", "FIN")]
    started = time.monotonic()
    with pytest.raises(WireFlooded) as caught:
        log.connection(40002, SERVER[1], "test", timeout=5)
    assert time.monotonic() - started < 1, "a full log does not make anyone wait"
    assert "from port 40001 to port 12345" in caught.value.seen
    assert "records at most 0.1 MiB" in caught.value.seen
    assert "the end of its connection 40002 -> 12345" in caught.value.seen
    assert not log.wait_for_syn(40003, timeout=5)


def test_a_wait_drowned_in_traffic_is_the_students_failure_a_quiet_one_ours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = FrameLog(None)
    for f in connection_frames(GRADER, end=False):
        log.add(f)
    with pytest.raises(HarnessError, match="did not see the end of the connection 40000 -> 12345"):
        log.connection(GRADER[1], SERVER[1], "test", timeout=0.2)

    monkeypatch.setattr(wire_module, "BUSY_FRAMES", 200)
    stop = threading.Event()

    def flood() -> None:
        n = 0
        while not stop.is_set() and log.add(make_frame(3.0, FLOODER, SERVER, n, 0, PSH | ACK, b"x")):
            n += 1

    adder = threading.Thread(target=flood, daemon=True)
    adder.start()
    try:
        with pytest.raises(WireFlooded, match="faster than the grader can record it|records at most"):
            log.connection(GRADER[1], SERVER[1], "test", timeout=0.5)
    finally:
        stop.set()
        adder.join(5)


def test_a_connection_with_lost_frames_under_a_flood_is_the_students_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c, s = GRADER, SERVER
    hello, world = (
        make_frame(1.2, c, s, 101, 501, PSH | ACK, b"hello "),
        make_frame(1.3, c, s, 107, 501, PSH | ACK, b"world"),
    )
    head = [make_frame(1.0, c, s, 100, 0, SYN), make_frame(1.1, s, c, 500, 101, SYN | ACK)]
    acked = make_frame(1.4, s, c, 501, 112, ACK)  # the server got all 11 bytes
    fin = make_frame(1.5, c, s, 112, 501, FIN | ACK)
    whole = [*head, hello, world, acked, fin]
    holed = [*head, world, acked, fin]  # "hello " was dropped by the capture
    tail_lost = [*head, hello, acked]  # "world" dropped, yet acknowledged
    assert not Connection(c, s, tuple(whole), "test").lost_frames()
    assert Connection(c, s, tuple(holed), "test").lost_frames()
    assert Connection(c, s, tuple(tail_lost), "test").lost_frames()

    quiet = FrameLog(None)
    for f in holed:
        quiet.add(f)
    assert quiet.connection(c[1], s[1], "test", timeout=1).client_stream == b"world"  # as before

    monkeypatch.setattr(wire_module, "BUSY_FRAMES", 100)
    flooded = FrameLog(None)
    for n in range(100):
        flooded.add(make_frame(0.5, FLOODER, SERVER, n, 0, PSH | ACK, b"x"))
    for f in holed:
        flooded.add(f)
    with pytest.raises(WireFlooded, match="frames of it were lost"):
        flooded.connection(c[1], s[1], "test", timeout=1)
