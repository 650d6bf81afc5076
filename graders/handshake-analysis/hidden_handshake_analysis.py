"""Hidden checks for `handshake-analysis`: a second capture (more.pcap) with a handshake the
client refused and a resumed session."""

from __future__ import annotations

import hidden_scenes  # noqa: F401  (registers the hidden capture's scenes in scenario.HIDDEN)
from support import Answer, Capture, compare

from harness import EvidenceRecorder, Shared, check


@check(
    title="A handshake refused with an alert",
    points=1,
    visibility="hidden",
    expected='fatal_alert: {"from": "client", "description": "unknown_ca"} for the refused handshake, '
    "null elsewhere.",
    hint="A client that does not trust the certificate says so with a fatal alert, in clear.",
)
def test_refused(more_keyed: Shared[Answer], more: Capture, evidence: EvidenceRecorder) -> None:
    compare(more_keyed.get(), more, ("fatal_alert",), evidence)


@check(
    title="A resumed session",
    points=1,
    visibility="hidden",
    expected="resumed: true for the connection that resumed the previous one's session, false elsewhere.",
    hint="TLS 1.3: the ServerHello accepts a pre_shared_key; TLS 1.2: it echoes the client's session id.",
)
def test_resumed(more_keyed: Shared[Answer], more: Capture, evidence: EvidenceRecorder) -> None:
    compare(more_keyed.get(), more, ("resumed",), evidence)
