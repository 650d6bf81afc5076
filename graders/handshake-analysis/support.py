"""Shared by the public and hidden checks of `handshake-analysis`: the captures, the runs, matching.

Each session makes the student's own captures (scenario.py, seeded from their identity) with
their key logs, runs the analyzer on each (with and without the key log), and the checks
compare one field of each connection with what the grader's endpoints did. Connections are
matched by their client and server addresses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import scenario

from harness import (
    Connection,
    EvidenceRecorder,
    GradingContext,
    Shared,
    fail,
    frame_rows,
    make_for_student,
    run_json,
    shape_error,
    show,
)

RUNS = "Reads the capture and the key log, and prints the report as JSON"


@dataclass
class Capture:
    file: str
    keys: str
    clear: list[dict[str, Any]]  # the answer without the key log
    keyed: list[dict[str, Any]]  # with it
    connections: dict[str, Connection]  # client address -> its frames (for the report)
    keylog: Path  # the grader's copy of the key log

    def show_connection(self, client: str, evidence: EvidenceRecorder, keys: bool) -> None:
        """The connection from ``client``, as Wireshark lists it (decrypted if ``keys``), into the report."""
        conn = self.connections.get(client)
        if conn is not None:
            rows = frame_rows(conn, "client", "server", self.keylog if keys else None)
            how = "with the key log" if keys else "without keys"
            evidence.frames(f"The connection from {client} in {self.file}, as Wireshark lists it {how}", rows)


def make_capture(grading: GradingContext, part: str, name: str) -> Capture:
    made = make_for_student(grading, scenario, part, name, (".pcap", ".keys"))
    keylog = grading.given[f"{name}.keys"]  # ours: handed to the student read-only
    answers = made["answers"]
    return Capture(
        f"{name}.pcap",
        f"{name}.keys",
        answers[""]["connections"],
        answers["-keylog"]["connections"],
        made["connections"],
        keylog,
    )


@pytest.fixture(scope="session")
def capture(grading: GradingContext) -> Capture:
    return make_capture(grading, "public", "capture")


@pytest.fixture(scope="session")
def more(grading: GradingContext) -> Capture:
    return make_capture(grading, "hidden", "more")


Answer = dict[tuple[str, str], dict[str, Any]]  # (client, server) -> the student's entry


def analyze(grading: GradingContext, *args: str) -> Answer:
    with grading.launcher() as launcher:
        _proc, data = run_json(
            launcher, grading.assignment.settings["program"]["analyzer"], *args, timeout=45
        )
    why = shape_error(data, ("connections",))
    if why:
        raise fail(
            f"Your program ran, but {why}.", expected='{"connections": [ {...}, ... ]} as in the handout'
        )
    return {(c.get("client"), c.get("server")): c for c in data["connections"]}


@pytest.fixture(scope="session")
def keyed(grading: GradingContext, capture: Capture) -> Shared[Answer]:
    return Shared(lambda: analyze(grading, capture.file, capture.keys), owner=RUNS)


@pytest.fixture(scope="session")
def clear(grading: GradingContext, capture: Capture) -> Shared[Answer]:
    return Shared(lambda: analyze(grading, capture.file))


@pytest.fixture(scope="session")
def more_keyed(grading: GradingContext, more: Capture) -> Shared[Answer]:
    return Shared(lambda: analyze(grading, more.file, more.keys))


def where(c: dict[str, Any]) -> str:
    return f"{c['client']} -> {c['server']} ({c['version']}, SNI {c['sni'] or 'none'})"


def compare(
    answer: Answer,
    capture: Capture,
    keys: tuple[str, ...],
    evidence: EvidenceRecorder,
    which: Callable[[dict[str, Any]], bool] = lambda c: True,
    with_keys: bool = True,
    skip: Callable[[dict[str, Any], str], bool] = lambda c, k: False,
) -> None:
    """For each connection that ``which`` selects, the student's ``keys`` must agree with the
    truth (with or without the key log); ``skip(want, key)`` leaves one field of one out."""
    truth = capture.keyed if with_keys else capture.clear
    how = "with the key log" if with_keys else "without the key log"
    chosen = [c for c in truth if which(c)]
    if not chosen:
        raise LookupError("the scenario made no connection this check is about")  # our bug: an ERROR
    problems = []
    for want in chosen:
        got = answer.get((want["client"], want["server"]))
        if got is None:
            problems.append(f"{where(want)}: not in your report")
            continue
        for k in keys:
            if got.get(k) != want[k] and not skip(want, k):
                problems.append(
                    f"{where(want)}: {k} is {show(got.get(k)) if k in got else '(missing)'}, "
                    f"expected {show(want[k])}"
                )
                evidence.side_by_side(
                    f"{k} of {want['client']} -> {want['server']}",
                    ("Expected (what the endpoints did)", show(want[k])),
                    ("Your report", show(got.get(k))),
                )
    if problems:
        first = problems[0].split(" -> ")[0]
        capture.show_connection(first, evidence, with_keys)
        raise fail(f"Reading the capture {how}:\n" + "\n".join(problems[:8]))


def tls13(c: dict[str, Any]) -> bool:
    return c["version"] == "TLS 1.3"


def tls12(c: dict[str, Any]) -> bool:
    return c["version"] == "TLS 1.2"
