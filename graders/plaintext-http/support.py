"""Shared by the public and hidden checks of `plaintext-http`: the captures, the runs, matching.

Each session makes the student's own captures (scenario.py, seeded from the student's
identity), runs their sniffer on each once, and the checks compare parts of that answer
with what the grader's clients really sent. Requests are matched by connection (client
and server address) and then by method and path, so a mistake in one field never hides
a request from the checks about other fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import scenario

from harness import (
    Connection,
    EvidenceRecorder,
    GradingContext,
    Shared,
    differences,
    fail,
    frame_rows,
    make_for_student,
    run_json,
    shape_error,
    show,
)

RUNS = "Reads the capture and prints the report as JSON"


@dataclass
class Capture:
    file: str  # its name in the submission folder
    truth: dict[str, Any]  # the answer a correct program prints
    secrets: list[str]  # what travelled inside TLS
    connections: dict[str, Connection]  # client address -> its frames (for the report)
    cases: dict[str, list[int]] = field(default_factory=dict)  # hidden case -> its requests' indices

    def case(self, name: str) -> list[dict[str, Any]]:
        """The requests of a hidden case, wherever the seeded order put them."""
        return [self.truth["requests"][i] for i in self.cases[name]]

    def show_connection(self, client: str, evidence: EvidenceRecorder) -> None:
        """The connection from ``client``, as Wireshark lists it, into the report."""
        conn = self.connections.get(client)
        if conn is not None:
            rows = frame_rows(conn, "client", "server")
            evidence.frames(f"The connection from {client} in {self.file}, as Wireshark lists it", rows)


@dataclass
class Answer:
    capture: Capture
    data: dict[str, Any]

    def requests_on(self, client: str, server: str) -> list[dict[str, Any]]:
        return [r for r in self.data["requests"] if r.get("client") == client and r.get("server") == server]

    def find(self, want: dict[str, Any]) -> dict[str, Any] | None:
        """The student's entry for the request ``want``: same connection, then same method and
        path (else the one in the same place on that connection)."""
        theirs = self.requests_on(want["client"], want["server"])
        same = [r for r in theirs if r.get("method") == want["method"] and r.get("path") == want["path"]]
        if same:
            return same[0]
        mine = [r for r in self.capture.truth["requests"] if r["client"] == want["client"]]
        i = mine.index(want)
        return theirs[i] if i < len(theirs) else None


def make_capture(grading: GradingContext, part: str, file: str) -> Capture:
    made = make_for_student(grading, scenario, part, Path(file).stem, (".pcap",))
    return Capture(file, made["answers"][""], made["secrets"], made["connections"], made.get("cases", {}))


@pytest.fixture(scope="session")
def capture(grading: GradingContext) -> Capture:
    return make_capture(grading, "public", "capture.pcap")


@pytest.fixture(scope="session")
def more(grading: GradingContext) -> Capture:
    return make_capture(grading, "hidden", "more.pcap")


def sniff(grading: GradingContext, cap: Capture) -> Answer:
    with grading.launcher() as launcher:
        _proc, data = run_json(
            launcher, grading.assignment.settings["program"]["sniffer"], cap.file, timeout=45
        )
    why = shape_error(data, ("requests", "https"))
    if why:
        raise fail(
            f"Your program ran, but {why}.",
            expected='{"requests": [ {...}, ... ], "https": [ {...}, ... ]} as in the handout',
        )
    return Answer(cap, data)


@pytest.fixture(scope="session")
def answer(grading: GradingContext, capture: Capture) -> Shared[Answer]:
    return Shared(lambda: sniff(grading, capture), owner=RUNS)


@pytest.fixture(scope="session")
def more_answer(grading: GradingContext, more: Capture) -> Shared[Answer]:
    return Shared(lambda: sniff(grading, more))


def compare(
    ans: Answer,
    want: dict[str, Any],
    keys: tuple[str, ...],
    what: str,
    evidence: EvidenceRecorder,
    as_lists: bool = False,
) -> None:
    """The student's entry for ``want`` must agree on ``keys``. ``as_lists``: a value given as a
    string counts as a list of one (for a check about decoding, not about the answer's shape)."""
    got = ans.find(want)
    if got is not None and as_lists:
        got = {k: _as_lists(v) for k, v in got.items()}
    where = f"{want['method']} {want['path']} from {want['client']} to {want['server']}"
    if got is None:
        ans.capture.show_connection(want["client"], evidence)
        raise fail(
            f"Your report has no request for {what} ({where}).",
            expected=show({k: want[k] for k in ("client", "server", *keys)}),
            hint="Look for that connection in the capture (Wireshark: Follow > TCP Stream).",
        )
    diff = differences(want, got, keys)
    if diff:
        evidence.side_by_side(
            f"The request for {what}",
            ("Expected (what the grader's client sent)", show({k: want[k] for k in keys})),
            ("Your report", show({k: got.get(k) for k in keys})),
        )
        ans.capture.show_connection(want["client"], evidence)
        raise fail(f"For {what} ({where}):\n" + "\n".join(diff))


def _as_lists(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: x if isinstance(x, list) else [x] for k, x in v.items()}
    return v


def one(truth: dict[str, Any], **match: str) -> dict[str, Any]:
    for r in truth["requests"]:
        if all(r[k] == v for k, v in match.items()):
            return r
    raise LookupError(f"the scenario made no request {match}")  # our bug: an ERROR


def https_clients(truth: dict[str, Any]) -> set[tuple[str, str]]:
    return {(h["client"], h["server"]) for h in truth["https"]}


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
