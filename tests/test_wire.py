"""Seeing the wire: dumpcap and the relay see the same known traffic; packets and pcaps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness._packets import ACK, FIN, PSH, SYN, Connection, make_frame, read_pcap, write_pcap
from tests.conftest import ROOT, needs_tshark

SECRET = "attack at dawn: the password is hunter2"


def probe(backend: str, tmp_path: Path) -> dict:  # type: ignore[type-arg]
    tmp_path.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests/helpers/wire_probe.py"), backend, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.skipif(shutil.which("dumpcap") is None, reason="dumpcap is not installed")
def test_capture_sees_a_known_plaintext(tmp_path: Path) -> None:
    seen = probe("dumpcap", tmp_path)
    if seen["isolation"] == "none" and os.geteuid() != 0:
        pytest.skip("no network namespace and not root: capture is not permitted here")
    assert seen["backend"] == "dumpcap"
    assert seen["client_stream"] == SECRET
    assert seen["server_stream_ok"]
    assert ["client", "FIN"] in seen["closed_by"]
    assert seen["pcap_bytes"] > 24


@pytest.mark.skipif(shutil.which("dumpcap") is None, reason="dumpcap is not installed")
def test_relay_and_capture_agree(tmp_path: Path) -> None:
    cap, relay = probe("dumpcap", tmp_path / "a"), probe("relay", tmp_path / "b")
    for key in ("client_stream", "server_stream_len", "server_stream_ok"):
        assert cap[key] == relay[key], key
    assert relay["backend"] == "relay"
    assert ["client", "FIN"] in relay["closed_by"]


def test_streams_reassemble_out_of_order_and_duplicate_segments(tmp_path: Path) -> None:
    c, s = ("127.0.0.1", 40000), ("127.0.0.1", 12345)
    frames = [
        make_frame(1.0, c, s, 100, 0, SYN),
        make_frame(1.1, c, s, 101, 1, PSH | ACK, b"hello "),
        make_frame(1.3, c, s, 107, 1, PSH | ACK, b"world"),
        make_frame(1.2, c, s, 101, 1, PSH | ACK, b"hello "),  # retransmission
        make_frame(1.4, c, s, 112, 1, FIN | ACK),
    ]
    write_pcap(tmp_path / "x.pcap", frames)
    back = read_pcap(tmp_path / "x.pcap")
    assert [f.data for f in back] == [f.data for f in frames]
    conn = Connection(c, s, tuple(back), "test")
    assert conn.client_stream == b"hello world"
    assert conn.server_stream == b""
    assert conn.closed_by() == [("client", "FIN")]


@needs_tshark
def test_tshark_reads_relay_made_frames(tmp_path: Path) -> None:
    from harness._dissect import dissect

    c, s = ("127.0.0.1", 40000), ("127.0.0.1", 12345)
    conn = Connection(
        c,
        s,
        (
            make_frame(1.0, c, s, 1, 0, SYN),
            make_frame(1.0, s, c, 9, 2, SYN | ACK),
            make_frame(1.1, c, s, 2, 10, PSH | ACK, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            make_frame(1.2, c, s, 29, 10, FIN | ACK),
        ),
        "test",
    )
    t = dissect(conn)
    assert [f.protocol for f in t.frames] == ["TCP", "TCP", "HTTP", "TCP"]
    assert t.frames[2].from_client and not t.frames[1].from_client
    assert t.frames[3].fin
