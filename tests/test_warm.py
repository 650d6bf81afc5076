"""Warm sessions: forked from one process with the engine imported, each still a fresh session.
Nothing one session does to module state or the environment reaches the next, and the grades
equal cold sessions' on the samples and the broken submissions."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import queue
import signal
import uuid
from pathlib import Path

import pytest

from harness._assignment import assignment_ids, load_assignment
from harness._proc import _proc_stat
from harness._results import SubmissionResult
from harness._runner import SessionOptions, grade_batch, session_env
from harness._warm import WarmSessions, Zygote, run_warm_session
from tests.conftest import Exercises, needs_tshark, own_session_processes
from tests.test_plugin import make_project

ALL = assignment_ids()

POLLUTER = """
import os
import harness
from harness import check

@check(title="Sees a fresh engine and environment", points=1)
def test_fresh(grading, evidence):
    seen = (getattr(harness, "LEFT_BY_A_SESSION", None), os.environ.get("WIREGRADE_LEFT_BY_A_SESSION"))
    evidence.text("seen", repr(seen))
    if (grading.submission / "pollute").exists():  # this student's session leaves state behind
        harness.LEFT_BY_A_SESSION = "dirty"
        os.environ["WIREGRADE_LEFT_BY_A_SESSION"] = "dirty"
    assert seen == (None, None), f"an earlier session left {seen}"
"""


def test_a_session_leaves_nothing_for_the_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "project"
    make_project(root, POLLUTER, total=1)
    monkeypatch.setenv("WIREGRADE_HOME", str(root))
    subs = tmp_path / "subs"
    for name in ("a-polluter", "b-next", "c-after"):
        (subs / name).mkdir(parents=True)
        (subs / name / "answer.txt").write_text("42")
    (subs / "a-polluter" / "pollute").write_text("yes")
    order: list[str] = []
    results = grade_batch(
        load_assignment("boom"),
        subs,
        tmp_path / "out",
        sessions=WarmSessions(jobs=1),  # one after the other, forked from the same warm process
        progress=lambda d, t, r: order.append(r.student),
    )
    assert order == ["a-polluter", "b-next", "c-after"]
    for r in results:
        assert not r.harness_error, r.harness_error
        assert r.score == 1, (r.student, [c.seen or c.expected for c in r.checks])
    assert own_session_processes() == []


def test_a_warm_session_that_hangs_is_stopped_at_its_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "project"
    make_project(
        root,
        "import time\nfrom harness import check\n\n@check(title='t', points=1)\n"
        "def test_hang():\n    time.sleep(600)\n",
        total=1,
    )
    toml = root / "assignments/boom/assignment.toml"
    toml.write_text(
        toml.read_text().replace("check_seconds = 10", "check_seconds = 600\nsession_seconds = 3")
    )
    monkeypatch.setenv("WIREGRADE_HOME", str(root))
    (tmp_path / "subs" / "alice").mkdir(parents=True)
    [r] = grade_batch(load_assignment("boom"), tmp_path / "subs", tmp_path / "out", sessions=WarmSessions(1))
    assert "did not finish within 3 s" in r.harness_error
    assert own_session_processes() == []


# A check that leaves a tree behind as it returns: its program P stays in the session's group,
# P's child C leaves it (setsid) and forks D. Killing P orphans C, killing C orphans D.
TREE = (
    "import os, time\n"
    "r, w = os.pipe()\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        os.write(w, b'up')\n"
    "    while True:\n"
    "        time.sleep(60)\n"
    "os.read(r, 2)\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    time.sleep(60)\n"
)
LEAVER = f"""
import subprocess, sys
from harness import check

@check(title="Leaves a daemon behind", points=1)
def test_leave():
    p = subprocess.Popen([sys.executable, "-c", {TREE!r}, "MARKER"], stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\\n"  # D is up (bounded by check_seconds)
"""


def marked_processes(marker: str) -> list[int]:
    """Live (not zombie) processes whose command line holds ``marker``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmd and _proc_stat(int(pid)) is not None:
            found.append(int(pid))
    return found


def test_a_warm_session_leaves_no_process_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = f"wiregrade-leftover-{uuid.uuid4().hex}"
    root = tmp_path / "project"
    make_project(root, LEAVER.replace("MARKER", marker), total=1)
    monkeypatch.setenv("WIREGRADE_HOME", str(root))
    (tmp_path / "alice").mkdir()
    a = load_assignment("boom")
    zygote = Zygote(*session_env())
    try:
        for n in range(2):  # each session's end leaves nothing, not only the next one's
            r = run_warm_session(
                zygote, a, tmp_path / "alice", tmp_path / f"out{n}", "alice", SessionOptions()
            )
            assert r.score == 1, (r.harness_error, [c.seen for c in r.checks])
            assert marked_processes(marker) == [], "a grandchild outlived its session"
    finally:
        zygote.close()
        for pid in marked_processes(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class FakeZygoteProcess:
    """Stands for ``python -m harness._warm``: answers each request in the zygote's words.
    Every session it starts gets pid 4242 (a pid is reused), and the first one's end, never
    waited for (its grader gave up on it), is said before the second starts."""

    pid = 4242

    def __init__(self, *_args: object, **_kw: object) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stdin = self
        self.stdout = iter(self.lines.get, None)

    def write(self, line: str) -> None:
        req = json.loads(line)
        self.lines.put(json.dumps({"id": req["id"], "pid": self.pid}) + "\n")
        if req["id"] == 1:
            self.lines.put(json.dumps({"ended": 1, "exited": self.pid, "status": -9}) + "\n")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.lines.put(None)

    def wait(self, timeout: float | None = None) -> int:
        return 0


def test_a_sessions_end_is_never_taken_for_another_with_the_same_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harness._warm.subprocess.Popen", FakeZygoteProcess)
    zygote = Zygote({}, Path("."))
    try:
        first = zygote.spawn([], {}, Path("."), Path("first.log"))
        second = zygote.spawn([], {}, Path("."), Path("second.log"))
        assert first.pid == second.pid == 4242 and first.id != second.id
        assert zygote.wait(second, 0.2) is None  # still running: the first's end is not its end
        assert zygote.wait(first, 0.2) == -9
    finally:
        zygote.close()


def gradebook(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k != "duration_s"} for row in csv.DictReader(f)]


@pytest.mark.slow
@needs_tshark
@pytest.mark.parametrize("exercise", ALL)
def test_warm_grades_equal_cold_grades_on_samples_and_broken_submissions(
    exercises: Exercises, tmp_path: Path, exercise: str
) -> None:
    cold = exercises.graded(exercise)
    warm = grade_batch(
        load_assignment(exercise),
        exercises.submissions(exercise),
        tmp_path / "warm",
        sessions=WarmSessions(2),
    )
    assert sorted(r.student for r in warm) == sorted(cold)
    for r in warm:
        c = cold[r.student]
        assert not r.harness_error and not r.errors, (r.student, r.harness_error)
        assert [(x.id, x.outcome, x.score) for x in r.checks] == [
            (x.id, x.outcome, x.score) for x in c.checks
        ], r.student


def test_every_outcome_and_message_equals_a_cold_sessions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness._runner import SessionOptions, run_session, session_env
    from harness._warm import Zygote, run_warm_session
    from tests.test_plugin import GRADER, HIDDEN

    root = tmp_path / "project"
    make_project(root, GRADER, hidden=HIDDEN)  # pass, fail, plain assert, errors, timeout, setup error
    monkeypatch.setenv("WIREGRADE_HOME", str(root))
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "answer.txt").write_text("42")
    a = load_assignment("boom")
    cold = run_session(a, tmp_path / "alice", tmp_path / "cold", "alice")
    zygote = Zygote(*session_env())
    try:
        warm = run_warm_session(zygote, a, tmp_path / "alice", tmp_path / "warm", "alice", SessionOptions())
    finally:
        zygote.close()

    def seen(r: SubmissionResult) -> list[tuple[object, ...]]:
        return [(c.id, c.outcome, c.score, c.expected, c.seen, c.hint) for c in r.checks]

    assert any("one is not two" in c.seen for c in warm.checks)
    assert seen(warm) == seen(cold)  # an assert's message too: pytest rewrote it in both
    assert (warm.harness_error, warm.environment.isolation) == (
        cold.harness_error,
        cold.environment.isolation,
    )
