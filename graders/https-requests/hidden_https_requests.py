"""Hidden checks for `https-requests`: run when the instructor grades; never in a student bundle."""

from __future__ import annotations

from support import (
    Refuse,
)

from harness import check

# --- hidden checks ------------------------------------------------------------------------


@check(
    title="Refuses a server whose certificate has expired",
    points=3,
    visibility="hidden",
    expected="No request reaches the server; exit code not 0.",
    needs="fetch",
)
def test_refuses_expired(refuse: Refuse) -> None:
    refuse("expired", "certificate expired yesterday")


@check(
    title="Refuses a server whose certificate is not yet valid",
    points=3,
    visibility="hidden",
    expected="No request reaches the server; exit code not 0.",
    needs="fetch",
)
def test_refuses_not_yet_valid(refuse: Refuse) -> None:
    refuse("not-yet-valid", "certificate is valid from tomorrow")
