"""Whose fault it was.

The grader's verdict depends on the exception a check ends with::

    Exception
    ├── CheckFailed          the student's program did the wrong thing  -> FAILED
    │   ├── StudentTimeout   ... or did not do it in time               -> TIMEOUT
    │   └── Blocked          ... this check could not happen: a check it
    │                        needs (``@check(needs=...)``) did not pass -> BLOCKED
    └── HarnessError         wiregrade or this machine failed           -> ERROR

Any other exception escaping a check is a bug in the grader and is reported as ERROR too:
a crash of ours must never read as the student's failure, and never as a pass.
"""

from __future__ import annotations


class CheckFailed(Exception):
    """The student's work does not do what the check expects.

    ``seen`` is what happened, ``expected`` what should have, ``hint`` what to try next.
    """

    def __init__(self, seen: str, *, expected: str = "", hint: str = "") -> None:
        super().__init__(seen)
        self.seen = seen
        self.expected = expected
        self.hint = hint


class StudentTimeout(CheckFailed):
    """The student's program did not do something within its time limit."""


class Blocked(CheckFailed):
    """This check cannot happen because something another check proves is missing.

    The plugin turns it into BLOCKED, linked to the first of the check's declared ``needs``
    that did not pass (scored 0, not counted as a missed idea). Where no declared need
    failed, the grader's declaration is incomplete and the check is FAILED with ``seen``, as
    before BLOCKED existed: never a pass.
    """


class HarnessError(Exception):
    """Something on the grading side failed (a missing tool, a port clash, our bug)."""


def fail(seen: str, *, expected: str = "", hint: str = "") -> CheckFailed:
    """Raise :class:`CheckFailed`; written as ``raise fail(...)`` reads better in checks."""
    return CheckFailed(seen, expected=expected, hint=hint)
