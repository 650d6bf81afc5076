"""The exercises whose grader makes the capture: many seeds, the practice capture, the seed.

The references must read every capture exactly as the grader's endpoints made it, for many
students' seeds; and the handout's practice capture must be what `make()` gives for the seed
"practice" (one code path for practice and grading).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import Outcome
from harness._assignment import load_assignment
from harness._capture import seed_for
from harness._runner import SessionOptions, run_session
from tests.conftest import ROOT, Exercises, needs_tshark

pytestmark = [needs_tshark, pytest.mark.slow]
EXERCISES = {"plaintext-http": "sniff.py", "handshake-analysis": "analyze.py"}


@pytest.mark.parametrize("exercise", sorted(EXERCISES))
def test_reference_reads_every_capture_of_twenty_students(exercise: str) -> None:
    seeds = [seed_for(exercise, f"student-{i:02d}") for i in range(20)]
    program = ROOT / "reference" / exercise / EXERCISES[exercise]
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "helpers" / "seeds.py"), exercise, str(program), *seeds],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["mismatches"] == []
    answers_per_capture = {"plaintext-http": 1, "handshake-analysis": 2}[exercise]  # without/with key log
    assert result["runs"] == 20 * 2 * answers_per_capture  # 20 students, public + hidden capture


@pytest.mark.parametrize("exercise", sorted(EXERCISES))
def test_practice_capture_is_made_by_the_grading_code(exercise: str, tmp_path: Path) -> None:
    handout = ROOT / "assignments" / exercise
    cmd = [sys.executable, "-m", "harness.cli", "capture", exercise, "--out", str(tmp_path)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    answers = sorted(p.name for p in handout.glob("practice-answer*.json"))
    assert answers and answers == sorted(p.name for p in tmp_path.glob("practice-answer*.json"))
    for name in answers:  # the same seed gives the same traffic, on any day
        assert json.loads((tmp_path / name).read_text()) == json.loads((handout / name).read_text()), name
    program = ROOT / "reference" / exercise / EXERCISES[exercise]
    for name in answers:  # and the shipped capture is read as its answer says
        args = [str(handout / "practice.pcap")]
        if name.endswith("-keylog.json"):
            args.append(str(handout / "practice.keys"))
        got = subprocess.run(
            [sys.executable, str(program), *args], capture_output=True, text=True, check=True
        )
        assert json.loads(got.stdout) == json.loads((handout / name).read_text()), name


def test_students_get_different_secrets() -> None:
    assert len({seed_for("plaintext-http", f"s{i}") for i in range(50)}) == 50
    assert seed_for("plaintext-http", "ana") != seed_for("handshake-analysis", "ana")


@pytest.mark.parametrize("exercise", sorted(EXERCISES))
def test_without_a_real_capture_every_check_is_a_grader_error(
    exercise: str, exercises: Exercises, tmp_path: Path
) -> None:
    """The relay cannot make a capture file: that is the grader's problem, never the student's."""
    r = run_session(
        load_assignment(exercise),
        exercises.submissions(exercise) / "reference",
        tmp_path,
        "reference",
        SessionOptions(wire="relay"),
    )
    assert r.checks and {c.outcome for c in r.checks} == {Outcome.ERROR}
    assert r.score == 0 and all("needs a real capture" in (c.seen + c.details) for c in r.checks)
