"""Hidden checks for `plaintext-http`: the harder cases, each on its own connection of a second
capture (more.pcap), so one mistake costs one check. The cases come in a seeded order among
ordinary requests: each check finds its case by name, never by place."""

from __future__ import annotations

import hidden_scenes  # noqa: F401  (registers the hidden capture's scenes in scenario.HIDDEN)
from support import Answer, Capture, compare

from harness import EvidenceRecorder, Shared, check


@check(
    title="A request split over several TCP segments",
    points=2,
    visibility="hidden",
    expected="The request whose bytes came in three TCP segments (the first ends inside the path), "
    "read whole.",
    hint="Join each connection's payloads in sequence order before parsing; one packet is not one request.",
)
def test_split(more_answer: Shared[Answer], more: Capture, evidence: EvidenceRecorder) -> None:
    [want] = more.case("split")
    compare(more_answer.get(), want, ("method", "path"), "the request sent in pieces", evidence)


@check(
    title="Every request on a keep-alive connection",
    points=2,
    visibility="hidden",
    expected="The three requests one connection carried (Connection: keep-alive), each with its "
    "method and path.",
    hint="After one request's headers and Content-Length body, the next request may follow on the "
    "same connection.",
)
def test_keep_alive(more_answer: Shared[Answer], more: Capture, evidence: EvidenceRecorder) -> None:
    for want in more.case("keep-alive"):
        compare(more_answer.get(), want, ("method", "path"), "a keep-alive request", evidence)


@check(
    title="HTTP on a port that is not 80",
    points=1,
    visibility="hidden",
    expected="A request to a server on a port no dissector guesses is HTTP.",
    hint="Decide what a connection carries from its bytes, not from its port.",
)
def test_odd_port(more_answer: Shared[Answer], more: Capture, evidence: EvidenceRecorder) -> None:
    compare(
        more_answer.get(),
        more.case("odd-port")[0],
        ("method", "path", "host"),
        "the request on an odd port",
        evidence,
    )


@check(
    title="Percent-escapes and '+' decoded in the query",
    points=1,
    visibility="hidden",
    expected="'+' is a space, %26 an '&', %2B a '+', %C3%A9 an 'é' (UTF-8).",
    hint="urllib.parse.parse_qs decodes all of these; unquote() alone leaves '+' as it is.",
)
def test_encoding(more_answer: Shared[Answer], more: Capture, evidence: EvidenceRecorder) -> None:
    [want] = more.case("encoding")
    compare(more_answer.get(), want, ("query",), "the encoded search", evidence, as_lists=True)
