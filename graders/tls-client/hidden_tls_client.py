"""Hidden checks for `tls-client`: run when the instructor grades; never in a student bundle."""

from __future__ import annotations

from support import (
    Refuse,
)

import harness
from harness import check

# --- hidden checks ------------------------------------------------------------------------


@check(
    title="Refuses a certificate that is not yet valid",
    points=2,
    visibility="hidden",
    expected="Exit code not 0 and none of the server's data printed.",
    needs="good-server",
)
def test_refuses_not_yet_valid(refuse: Refuse) -> None:
    refuse("not-yet-valid", "certificate is valid from tomorrow")


@check(
    title="Refuses a server that speaks only TLS 1.0/1.1",
    points=3,
    visibility="hidden",
    expected="Exit code not 0 and none of the server's data printed.",
    needs="good-server",
)
def test_refuses_old_tls(refuse: Refuse) -> None:
    if (why := harness.legacy_tls_unavailable()) is not None:
        raise harness.HarnessError(f"the grader cannot serve TLS 1.0/1.1 on this machine: {why}")
    refuse("old-tls", "only speaks TLS 1.0 and 1.1")
