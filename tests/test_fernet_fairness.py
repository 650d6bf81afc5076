"""Fair marks in `fernet` (issue 13): refusals and absences are never free, never lost to another mistake.

The samples are graded once for tests/test_graders.py; these tests read the same results and
state the rules across them: what a blocked check points at, and who keeps which points.
"""

from __future__ import annotations

import re

import pytest

from harness import Outcome
from harness._results import CheckResult
from tests.conftest import Exercises, needs_tshark

pytestmark = [needs_tshark, pytest.mark.slow]

# Checks that credit a refusal or an absence (nothing refused wrongly, no traceback, nothing in clear).
REFUSALS = ["rejects-tampered", "rejects-wrong-key", "rejects-expired", "clean-errors", "client-wrong-key"]
ABSENCES = ["echo-server", "echo-client", "genkey"]  # nothing in clear on the wire; a key others cannot read
DOES_NOTHING = {  # sample: what it would collect if refusing or leaving out were enough
    "exits-at-once": REFUSALS + ABSENCES,
    "prints-nothing": REFUSALS + ABSENCES,
    "refuses-everything": REFUSALS[:4],  # its decrypt refuses every token, with one clean line
}
ONE_UNRELATED_MISTAKE = {  # sample: its one mistake, about none of REFUSALS
    "print-newline": "round-trip",
    "ignores-output-file": "round-trip",
    "key-world-readable": "genkey",
    "server-answers-plaintext": "echo-server",
    "client-sends-plaintext": "echo-client",
    "repr-tokens": "interop-ours",
}
POINTS_AT = re.compile(r"(?:needs what|see) '([^']+)'")


def by_id(checks: tuple[CheckResult, ...] | list[CheckResult]) -> dict[str, CheckResult]:
    return {c.id: c for c in checks}


def test_a_submission_that_does_nothing_earns_no_refusal_and_no_absence(exercises: Exercises) -> None:
    graded = exercises.graded("fernet")
    for name, free in DOES_NOTHING.items():
        checks = by_id(graded[name].checks)
        kept = [i for i in free if checks[i].outcome is Outcome.PASSED]
        assert kept == [], (name, kept)
    assert graded["exits-at-once"].score == graded["prints-nothing"].score == 0


def test_one_unrelated_mistake_keeps_every_refusal(exercises: Exercises) -> None:
    graded = exercises.graded("fernet")
    for name, mistake in ONE_UNRELATED_MISTAKE.items():
        checks = by_id(graded[name].checks)
        assert checks[mistake].outcome is Outcome.FAILED, name
        lost = [i for i in REFUSALS if checks[i].outcome is not Outcome.PASSED]
        assert lost == [], (name, {i: checks[i].seen for i in lost})


def test_a_blocked_check_points_at_a_check_that_failed_for_that_very_reason(exercises: Exercises) -> None:
    """'It needs what X checks': X failed, and says the tool does not accept a good token at all."""
    pointed = 0
    for name, result in exercises.graded("fernet").items():
        titles = {c.title: c for c in result.checks}
        for c in result.checks:
            if c.outcome is Outcome.PASSED or not c.id.startswith(("rejects-", "clean-errors")):
                continue
            for title in POINTS_AT.findall(c.seen):
                if title not in titles:
                    continue  # "see the 'Refuses ...' checks": a family, not one check
                owner = titles[title]
                pointed += 1
                assert owner.outcome is Outcome.FAILED, (name, c.id, title)
                assert "does not accept a good token" in owner.seen, (name, c.id, owner.seen)
    assert pointed >= 3 * 4  # exits-at-once, prints-nothing, refuses-everything, double-base64 at least


def test_exact_bytes_are_blamed_on_exact_bytes_only(exercises: Exercises) -> None:
    """print() in decrypt: the exact-output checks say what came out, and never 'does not accept'."""
    checks = by_id(exercises.graded("fernet")["print-newline"].checks)
    failed = {i: c.seen for i, c in checks.items() if c.outcome is not Outcome.PASSED}
    assert set(failed) == {"round-trip", "interop-theirs"}
    assert not any("does not accept" in seen for seen in failed.values()), failed
