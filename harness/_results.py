"""Check results: frozen values, produced by the plugin and consumed by the renderers."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any


class Outcome(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    BLOCKED = "blocked"  # could not happen because the check named in blocked_by did not pass
    ERROR = "error"  # harness fault: neither the student's failure nor a pass


class Visibility(str, enum.Enum):
    PUBLIC = "public"
    HIDDEN = "hidden"


@dataclass(frozen=True)
class Evidence:
    """Something a check saw, kept for the report (a transcript, a capture summary, output)."""

    kind: str  # "text" | "frames" | "output"
    title: str
    data: Any


def blocked_words(need_title: str) -> tuple[str, str]:
    """(seen, hint) of a check BLOCKED because the check titled ``need_title`` did not pass."""
    return (
        f"This check could not run: it needs what '{need_title}' checks, and that did not pass "
        f"(see '{need_title}').",
        f"Fix '{need_title}' first; this check runs again on your next submission.",
    )


@dataclass(frozen=True)
class CheckResult:
    id: str
    title: str
    points: float
    score: float
    outcome: Outcome
    visibility: Visibility
    expected: str = ""  # what a correct submission does: the same words, passed or failed
    expected_here: str = ""  # what this failure wanted, precisely (where that says more)
    seen: str = ""
    hint: str = ""
    details: str = ""  # instructor-only: a traceback for harness errors
    evidence: tuple[Evidence, ...] = ()
    duration: float = 0.0
    blocked_by: str = ""  # BLOCKED: the id of the check whose failure kept this one from running

    @property
    def hidden(self) -> bool:
        return self.visibility is Visibility.HIDDEN

    def for_student(self) -> CheckResult:
        """What a student may see. Hidden checks keep title and score only; nothing else."""
        if self.hidden:
            return CheckResult(
                id=self.id,
                title=self.title,
                points=self.points,
                score=self.score,
                outcome=self.outcome,
                visibility=self.visibility,
                duration=self.duration,
                blocked_by=self.blocked_by,
            )
        return replace(self, details="")


@dataclass(frozen=True)
class Environment:
    """How the session ran: what isolated it and which backend saw the wire."""

    isolation: str = "unknown"
    isolation_detail: str = ""
    wire: str = "unknown"
    wire_detail: str = ""
    python: str = ""
    sandbox: str = ""  # what contained the student's programs (bubblewrap, cgroup), in words


@dataclass(frozen=True)
class SubmissionResult:
    assignment: str
    student: str
    checks: tuple[CheckResult, ...]
    environment: Environment = field(default_factory=Environment)
    visibility: str = "all"  # "all" (instructor) or "public" (self-check)
    harness_error: str = ""  # set when the session could not grade at all
    refused: str = ""  # the submission could not be taken in (e.g. an unsafe zip)
    timings: dict[str, Any] = field(default_factory=dict)  # where the session's time went
    duration: float = 0.0
    graded_at: str = ""  # UTC, ISO 8601, when the session ended
    wiregrade_version: str = ""
    grader_fingerprint: str = ""  # of the checks, the exercise's settings and the engine

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        """The student's own misses: failed or too slow (not blocked, not our errors)."""
        return tuple(c for c in self.checks if c.outcome in (Outcome.FAILED, Outcome.TIMEOUT))

    @property
    def blocked(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.outcome is Outcome.BLOCKED)

    @property
    def score(self) -> float:
        return sum(c.score for c in self.checks)

    @property
    def max_score(self) -> float:
        return sum(c.points for c in self.checks)

    @property
    def errors(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.outcome is Outcome.ERROR)

    @property
    def status(self) -> str:
        if self.refused:
            return "submission refused"
        if self.harness_error or self.errors:
            return "harness error"
        if any(c.outcome is Outcome.TIMEOUT for c in self.checks):
            return "graded (student timeout)"
        return "graded"

    def for_student(self) -> SubmissionResult:
        return replace(self, checks=tuple(c.for_student() for c in self.checks))

    # --- storage -----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SubmissionResult:
        checks = tuple(
            CheckResult(
                **{
                    **c,
                    "outcome": Outcome(c["outcome"]),
                    "visibility": Visibility(c["visibility"]),
                    "evidence": tuple(Evidence(**e) for e in c.get("evidence", ())),
                }
            )
            for c in data["checks"]
        )
        env = Environment(**data.get("environment", {}))
        rest = {k: v for k, v in data.items() if k not in ("checks", "environment")}
        return cls(checks=checks, environment=env, **rest)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, default=str))

    @classmethod
    def load(cls, path: Path) -> SubmissionResult:
        return cls.from_json(json.loads(path.read_text()))
