"""Assignments: the exercises and their settings (``assignments/<id>/assignment.toml``)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import HarnessError
from ._process import Limits

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10
    import tomli as tomllib


def project_root() -> Path:
    """Where assignments/, graders/, reference/ and reports/ live."""
    env = os.environ.get("WIREGRADE_HOME")
    root = Path(env).resolve() if env else Path(__file__).resolve().parent.parent
    if not (root / "graders").is_dir():
        raise HarnessError(
            f"wiregrade's graders were not found under {root}; install with `pip install -e .` "
            "from a checkout, or set WIREGRADE_HOME to one"
        )
    return root


@dataclass(frozen=True)
class Assignment:
    id: str
    title: str
    total_points: float
    hidden_points: float
    host: str
    port: int
    check_seconds: float
    ready_seconds: float
    session_seconds: float
    limits: Limits
    settings: dict[str, Any] = field(default_factory=dict)
    root: Path = Path()

    @property
    def handout_dir(self) -> Path:
        return self.root / "assignments" / self.id

    @property
    def grader_dir(self) -> Path:
        return self.root / "graders" / self.id

    @property
    def reference_dir(self) -> Path:
        return self.root / "reference" / self.id

    @property
    def samples_dir(self) -> Path:
        return self.handout_dir / "samples"


def assignment_ids(root: Path | None = None) -> list[str]:
    root = root or project_root()
    return sorted(
        p.parent.name
        for p in (root / "assignments").glob("*/assignment.toml")
        if (root / "graders" / p.parent.name).is_dir()
    )


def load_assignment(assignment_id: str, root: Path | None = None) -> Assignment:
    root = root or project_root()
    path = root / "assignments" / assignment_id / "assignment.toml"
    if not path.is_file():
        known = ", ".join(assignment_ids(root)) or "none"
        raise KeyError(f"no exercise {assignment_id!r} (known: {known})")
    data = tomllib.loads(path.read_text())
    try:
        grading = data["grading"]
        limits = data.get("limits", {})
        return Assignment(
            id=assignment_id,
            title=data["title"],
            total_points=float(grading["total_points"]),
            hidden_points=float(grading.get("hidden_points", 0)),
            host=data.get("network", {}).get("host", "localhost"),
            port=int(data.get("network", {}).get("port", 0)),
            check_seconds=float(grading.get("check_seconds", 20)),
            ready_seconds=float(grading.get("ready_seconds", 5)),
            session_seconds=float(grading.get("session_seconds", 300)),
            limits=Limits(
                cpu_seconds=int(limits.get("cpu_seconds", 20)),
                memory_bytes=int(limits.get("memory_mb", 1024)) << 20,
                file_bytes=int(limits.get("file_mb", 16)) << 20,
                processes=int(limits.get("processes", 256)),
                output_bytes=int(limits.get("output_kb", 64)) << 10,
            ),
            settings=data,
            root=root,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise HarnessError(f"{path}: invalid or missing setting: {exc}") from exc
