"""Declaring a check: its metadata sits on the test function, validated when it is declared."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from ._results import Visibility

MARKER = "wiregrade_check"
F = TypeVar("F", bound=Callable[..., Any])
_ID = re.compile(r"^[a-z][a-z0-9-]*$")


@dataclass(frozen=True)
class CheckSpec:
    id: str
    title: str
    points: float
    visibility: Visibility
    hint: str
    expected: str
    timeout: float | None
    needs: tuple[str, ...] = ()  # ids of the checks this one cannot happen without


def check(
    *,
    title: str,
    points: float,
    visibility: str = "public",
    hint: str = "",
    expected: str = "",
    timeout: float | None = None,
    id: str | None = None,  # noqa: A002 - the check's id, by default from the function name
    needs: str | Sequence[str] = (),
) -> Callable[[F], F]:
    """Mark a test function as a graded check.

    ``title`` is one line a student reads; ``expected`` says what a correct submission does
    (the same words whether it passed or failed); ``hint`` what to try when it fails.
    ``needs`` names the checks (by id, declared earlier) without which this one cannot
    happen: when the check raises :class:`~harness.Blocked` and one of them did not pass, it
    is BLOCKED by that check, not failed. A wrong value fails at import: a typo in a grader
    must never turn into a silently different mark.
    """
    if not isinstance(title, str) or not title.strip() or "\n" in title:
        raise TypeError(f"check title must be one non-empty line, not {title!r}")
    if isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0:
        raise TypeError(f"check points must be a number >= 0, not {points!r}")
    try:
        vis = Visibility(visibility)
    except ValueError:
        raise ValueError(f"check visibility must be 'public' or 'hidden', not {visibility!r}") from None
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise TypeError(f"check timeout must be a positive number of seconds, not {timeout!r}")
    wanted = (needs,) if isinstance(needs, str) else tuple(needs)
    for need in wanted:
        if not isinstance(need, str) or not _ID.match(need):
            raise ValueError(f"check needs must be check ids (lowercase letters, digits, '-'), not {need!r}")

    def decorate(fn: F) -> F:
        name = fn.__name__
        if not name.startswith("test_"):
            raise ValueError(f"a check must be a pytest test function named test_*, not {name}")
        check_id = id or name[len("test_") :].replace("_", "-")
        if not _ID.match(check_id):
            raise ValueError(f"check id {check_id!r} must be lowercase letters, digits and '-'")
        if check_id in wanted:
            raise ValueError(f"check {check_id!r} cannot need itself")
        spec = CheckSpec(check_id, title.strip(), float(points), vis, hint, expected, timeout, wanted)
        return pytest.mark.wiregrade_check(spec)(fn)  # type: ignore[no-any-return]

    return decorate


def spec_of(item: pytest.Item) -> CheckSpec | None:
    marks = list(item.iter_markers(MARKER))
    if len(marks) != 1:
        return None
    spec = marks[0].args[0] if marks[0].args else None
    return spec if isinstance(spec, CheckSpec) else None
