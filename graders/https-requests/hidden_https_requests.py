"""Hidden checks for `https-requests`: run when the instructor grades; never in a student bundle."""

from __future__ import annotations

from support import (
    Fetch,
    refusal,
)

import harness
from harness import GraderPKI, GradingContext, Launcher, Shared, check

# --- hidden checks ------------------------------------------------------------------------


@check(
    title="Refuses a server whose certificate has expired",
    points=3,
    visibility="hidden",
    expected="No request reaches the server; exit code not 0.",
)
def test_refuses_expired(
    grading: GradingContext,
    student: Launcher,
    pki: GraderPKI,
    token: str,
    hello: Shared[Fetch],
    evidence: harness.EvidenceRecorder,
) -> None:
    refusal(grading, student, pki, token, hello, "expired", "certificate expired yesterday", evidence)


@check(
    title="Refuses a server whose certificate is not yet valid",
    points=3,
    visibility="hidden",
    expected="No request reaches the server; exit code not 0.",
)
def test_refuses_not_yet_valid(
    grading: GradingContext,
    student: Launcher,
    pki: GraderPKI,
    token: str,
    hello: Shared[Fetch],
    evidence: harness.EvidenceRecorder,
) -> None:
    refusal(
        grading, student, pki, token, hello, "not-yet-valid", "certificate is valid from tomorrow", evidence
    )
