"""Issue 13 for `tunnel`, below the samples: the pieces that make correct configurations gradable.

The samples in tests/submissions/tunnel/ grade each finding end to end (test_graders.py); these
tests pin the mechanism they rely on: reading a connection that never ends (a proxy's
keep-alive pool to its backend, finding 1). Finding 2 (a program running as the student reopens
/dev/stderr and /dev/stdout) is the harness's: tests/test_sandbox.py.
"""

from __future__ import annotations

import pytest

from harness._errors import HarnessError
from harness._packets import ACK, PSH, SYN, make_frame
from harness._wire import FrameLog, RelayWire, WireFlooded

PROXY, APP = ("127.0.0.1", 41000), ("127.0.0.1", 8000)


def pooled_connection(log: FrameLog, t0: float) -> None:
    """nginx's kept-alive connection to the app: a request and its answer, and no FIN or RST."""
    log.add(make_frame(t0, PROXY, APP, 100, 0, SYN))
    log.add(make_frame(t0 + 0.01, APP, PROXY, 500, 101, SYN | ACK))
    log.add(make_frame(t0 + 0.02, PROXY, APP, 101, 501, ACK))
    log.add(make_frame(t0 + 0.03, PROXY, APP, 101, 501, PSH | ACK, b"GET /hello HTTP/1.1\r\n\r\n"))
    log.add(make_frame(t0 + 0.04, APP, PROXY, 501, 124, PSH | ACK, b"HTTP/1.1 200 OK\r\n\r\napp page"))


def test_a_connection_kept_open_is_read_as_far_as_it_went() -> None:
    log = FrameLog(None)
    pooled_connection(log, 1000.0)
    with pytest.raises(HarnessError, match="did not see the end"):  # what made every nginx check an ERROR
        log.connection(PROXY[1], APP[1], "test", timeout=0.05)
    [conn] = log.carried(APP[1], 1000.0, "test")
    assert conn.client_stream == b"GET /hello HTTP/1.1\r\n\r\n"
    assert conn.server_stream.endswith(b"app page")
    assert log.carried(APP[1], 1000.5, "test") == []  # nothing of it since then: not this exchange's


def test_reading_what_a_hop_carried_after_the_log_filled_up_is_the_students_flood() -> None:
    with RelayWire(None) as wire:
        pooled_connection(wire.log, 1000.0)
        assert [c.client[1] for c in wire.carried(APP[1], 1000.0)] == [PROXY[1]]
        wire.log.full = True  # from here on nothing is recorded: what the hop carried may be missing
        with pytest.raises(WireFlooded):
            wire.carried(APP[1], 1000.0)


# Checks that credit an absence or a refusal: nothing in clear on the public port, old TLS refused.
CREDITS_ABSENCE = {"stunnel-wire", "stunnel-old-tls", "nginx-wire", "nginx-old-tls"}
# Submissions that do nothing useful: the starter as handed out, and programs that run but carry
# nothing (stunnel speaking no TLS on 8443, nginx closing every HTTPS connection unanswered).
DOES_NOTHING = {
    "starter-unchanged": CREDITS_ABSENCE,
    "stunnel-client-mode": {"stunnel-wire", "stunnel-old-tls"},
    "nginx-closes-everything": {"nginx-wire", "nginx-old-tls"},
}
# One mistake about something else: each keeps the absence checks of its program.
ONE_UNRELATED_MISTAKE = {
    "stunnel-allows-tls10": {"stunnel-wire"},
    "stunnel-wrong-backend": {"stunnel-old-tls"},
    "nginx-no-redirect": {"nginx-wire", "nginx-old-tls"},
    "nginx-allows-tls10": {"nginx-wire"},
    "nginx-redirect-to-ip": {"nginx-wire", "nginx-old-tls"},
}


def test_absence_checks_are_earned_by_no_idle_submission_and_kept_by_one_unrelated_mistake() -> None:
    """The samples' expectations (graded for real in test_graders.py) cover both directions."""
    from tests.conftest import all_samples

    expected = {s.name: s.expect_failed for s in all_samples("tunnel")}
    for name, checks in DOES_NOTHING.items():
        assert checks <= expected[name], name
    for name, kept in ONE_UNRELATED_MISTAKE.items():
        assert expected[name] and not kept & expected[name], name  # loses its mistake, keeps these
    assert set().union(*DOES_NOTHING.values()) == CREDITS_ABSENCE
    assert set().union(*ONE_UNRELATED_MISTAKE.values()) == CREDITS_ABSENCE
