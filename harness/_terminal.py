"""What a person at a terminal sees of a self-check: the checks as they finish, then the story.

Lines are wrapped to the terminal's width with a hanging indent (never in a pipe or a CI log);
colour only at a terminal, and never with NO_COLOR or in CI.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
import threading
from collections.abc import Collection
from pathlib import Path
from typing import TextIO

from ._assignment import Assignment
from ._outputs import feedback_text
from ._progress import Event
from ._results import Outcome, SubmissionResult


class Style:
    """ANSI colour for people at a terminal; none in CI logs, pipes or with NO_COLOR."""

    def __init__(self, stream: object) -> None:
        tty = getattr(stream, "isatty", lambda: False)()
        self.on = tty and not os.environ.get("NO_COLOR") and not os.environ.get("CI")

    def __call__(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.on else text


_MARK = {
    Outcome.PASSED: ("PASS", "32"),
    Outcome.FAILED: ("FAIL", "31"),
    Outcome.TIMEOUT: ("TIME", "33"),
    Outcome.BLOCKED: ("BLKD", "90"),
    Outcome.ERROR: ("ERR ", "35"),
}


def _width(stream: object) -> int:
    """The terminal's width (or $COLUMNS); unbounded in a pipe or a CI log, where a line cut
    in two only hides a phrase from grep and the viewer wraps it anyway."""
    if os.environ.get("COLUMNS", "").isdigit() or getattr(stream, "isatty", lambda: False)():
        return max(40, shutil.get_terminal_size((100, 24)).columns)
    return 1 << 16


def wrapped(text: str, indent: int, width: int) -> list[str]:
    """Each line of ``text`` filled to ``width``, its continuation lines indented under its
    words (after a leading "Hint: " or "Expected: "), never splitting a long word or URL."""
    lines = []
    for line in text.splitlines() or [""]:
        label = next((x for x in ("Expected: ", "Hint: ") if line.startswith(x)), "")
        lines += textwrap.wrap(
            line,
            width=width,
            initial_indent=" " * indent,
            subsequent_indent=" " * (indent + (len(label) or 2)),
            break_long_words=False,
            break_on_hyphens=False,
        ) or [""]
    return lines


def check_line(title: str, outcome: Outcome, score: float, points: float, st: Style, width: int) -> str:
    """One check as it finishes: mark, title (wrapped under itself), points at the end."""
    label, colour = _MARK[outcome]
    points_text = f"{score:g}/{points:g}"
    room = max(20, width - 8 - len(points_text) - 1)
    parts = textwrap.wrap(title, room, break_long_words=False) or [""]
    parts[-1] = parts[-1].ljust(min(55, room)) + " " + points_text
    first, *rest = parts
    return "\n".join([f"  {st(label, colour)}  {first}", *(" " * 8 + p for p in rest)])


def print_summary(
    result: SubmissionResult, report: Path, out: TextIO | None = None, streamed: Collection[str] = ()
) -> None:
    """The end of a self-check. ``streamed``: checks already printed as they finished (their
    feedback comes here, once, as pytest shows its failures after the progress)."""
    out = out or sys.stdout
    st = Style(out)
    width = _width(out)
    w = lambda s="": print(s, file=out)  # noqa: E731
    if not streamed:
        w(st(f"wiregrade check {result.assignment}", "1"))
    said: set[str] = set()  # a grader error told once, not once per check it stopped
    for c in result.checks:
        if c.id not in streamed:
            w(check_line(c.title, c.outcome, c.score, c.points, st, width))
        elif c.outcome is not Outcome.PASSED:
            w()
            w(check_line(c.title, c.outcome, c.score, c.points, st, width))
        if c.outcome is Outcome.ERROR and c.seen in said:
            w(" " * 8 + "(the same grader error as above)")
        elif c.outcome is not Outcome.PASSED:
            for line in wrapped(feedback_text(c), 8, width):
                w(line)
        if c.outcome is Outcome.ERROR:
            said.add(c.seen)
    w()
    if result.harness_error:
        w(st("The grader could not run: " + result.harness_error.splitlines()[0], "35"))
    public = "public checks" if result.visibility == "public" else "checks"
    w(f"Score: {result.score:g}/{result.max_score:g} on {len(result.checks)} {public}.")
    if result.errors and not result.harness_error and shutil.which("tshark") is None:
        w(
            st(
                "Some checks could not run (ERR) because tshark is missing (see the note at the top): "
                "not your fault, and they cost you nothing.",
                "35",
            )
        )
    elif result.errors or result.harness_error:
        w(
            st(
                "The grader itself failed on some checks (ERR): not your fault; re-run, and tell "
                "your instructor if it persists.",
                "35",
            )
        )
    elif all(c.outcome is Outcome.PASSED for c in result.checks) and result.checks:
        if result.visibility == "public":
            w(st("All public checks passed.", "32") + " Hidden checks run when your instructor grades.")
        else:
            w(st("All checks passed.", "32"))
    else:
        w(st(f"Some {public} failed: see the hints above.", "31"))
    env = result.environment
    for line in wrapped(
        f"Network: {env.isolation_detail}. Traffic seen by: {env.wire_detail or env.wire}.", 0, width
    ):
        w(line)
    if env.sandbox:
        for line in wrapped(f"Your programs ran in: {env.sandbox}.", 0, width):
            w(line)
    w(f"Report: {report}")


class LiveCheck:
    """Prints a self-check as it goes: a header, notes on the set-up, each check as it ends."""

    def __init__(self, a: Assignment, folder: Path, out: TextIO | None = None) -> None:
        self.a = a
        self.out = out or sys.stdout
        self.st = Style(self.out)
        self.width = _width(self.out)
        self.streamed: list[str] = []
        self._lock = threading.Lock()
        self._say(self.st(f"wiregrade check {a.id}", "1") + f" in {folder}")

    def _say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)

    def _note(self, text: str) -> None:
        self._say("\n".join(wrapped("Note: " + text, 0, self.width)))

    def event(self, e: Event) -> None:
        kind = e.get("event")
        if kind == "start":
            which = "checks" if e.get("checks") != 1 else "check"
            self._say(f"{e.get('checks')} {which} to run; each is printed as it finishes.")
            if not e.get("private"):
                self._note(f"no private network: {e.get('network')}.")
                if (self.a.grader_dir / "scenario.py").exists() and os.geteuid() != 0:
                    self._note(
                        "this self-check makes a capture from your name, which needs dumpcap as root "
                        "or in a user namespace, so its checks will show ERR here (not counted). "
                        "Meanwhile test your program on the practice capture in your folder, as the "
                        "handout says (practice.pcap and practice-answer.json)."
                    )
            if shutil.which("tshark") is None:
                self._note(TSHARK_MISSING)
        elif kind == "note":
            self._note(str(e.get("text", "")))
        elif kind == "check":
            try:
                outcome = Outcome(e["outcome"])
                line = check_line(
                    str(e["title"]), outcome, float(e["score"]), float(e["points"]), self.st, self.width
                )
            except (KeyError, ValueError, TypeError):
                return
            self.streamed.append(str(e.get("id")))
            self._say(line)


TSHARK_MISSING = (
    "tshark is not installed: any check that reads the traffic with it shows ERR here (which "
    "costs you nothing); the others run. Install it: on Debian/Ubuntu `sudo apt install tshark` "
    "(the wireshark package, for the window, does not bring it); on Fedora `sudo dnf install wireshark-cli`."
)
