"""Instructor batches: intake of archives and LMS exports, the store, resume, regrade, re-render,
manual adjustments, and a kill -9 in the middle."""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from harness._assignment import load_assignment
from harness._intake import IntakeError, intake, safe_unpack
from harness._runner import grade_batch, rerender
from tests.conftest import ROOT, Exercises, descends_from, needs_tshark, own_session_processes


def make_tar(path: Path, members: dict[str, bytes], link: tuple[str, str] | None = None) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link[0])
            info.type = tarfile.SYMTYPE
            info.linkname = link[1]
            tf.addfile(info)


def test_archives_are_unpacked_safely(tmp_path: Path) -> None:
    make_tar(tmp_path / "ok.tar.gz", {"wrap/server.py": b"print(1)\n"})
    assert (safe_unpack(tmp_path / "ok.tar.gz", tmp_path / "ok") / "server.py").read_bytes() == b"print(1)\n"
    make_tar(tmp_path / "up.tar.gz", {"../../escaped.py": b"x"})
    with pytest.raises(IntakeError, match="unsafe path"):
        safe_unpack(tmp_path / "up.tar.gz", tmp_path / "up")
    make_tar(tmp_path / "ln.tar.gz", {"a.py": b"x"}, link=("etc", "/etc"))
    with pytest.raises(IntakeError, match="link"):
        safe_unpack(tmp_path / "ln.tar.gz", tmp_path / "ln")
    with zipfile.ZipFile(tmp_path / "abs.zip", "w") as zf:
        zf.writestr("/tmp/abs.py", "x")
    with pytest.raises(IntakeError, match="unsafe path"):
        safe_unpack(tmp_path / "abs.zip", tmp_path / "abs")
    (tmp_path / "junk.zip").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(IntakeError, match="not a valid archive"):
        safe_unpack(tmp_path / "junk.zip", tmp_path / "junk")
    assert not (tmp_path / "escaped.py").exists() and not (tmp_path.parent / "escaped.py").exists()


def test_an_archive_too_big_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harness._intake.MAX_UNPACKED", 1000)
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.txt", "0" * 100_000)  # 100 kB of zeros compress to almost nothing
    with pytest.raises(IntakeError, match="would unpack to 100,000 bytes"):
        safe_unpack(tmp_path / "bomb.zip", tmp_path / "bomb")
    assert not (tmp_path / "bomb").exists()


def test_lms_exports_name_students(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    (subs / "Jane Doe_12345_assignsubmission_file_" / "inner").mkdir(parents=True)
    (subs / "Jane Doe_12345_assignsubmission_file_" / "inner" / "server.py").write_text("x")
    (subs / "submission_777").mkdir()
    (subs / "submission_metadata.yml").write_text(
        "submission_777:\n  :submitters:\n  - :name: Sam Roe\n    :sid: s0042\n    :email: sam@example.edu\n"
    )
    ready, refused = intake(subs, tmp_path / "work")
    assert sorted(ready) == ["Jane_Doe_12345", "s0042"] and refused == {}
    assert ready["Jane_Doe_12345"].name == "inner"  # a single wrapping folder is flattened


def gradebook(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k != "duration_s"} for row in csv.DictReader(f)]


@pytest.fixture
def three(exercises: Exercises, tmp_path: Path) -> Path:
    subs = tmp_path / "subs"
    for name in ("reference", "lecture", "plaintext"):
        shutil.copytree(exercises.submissions("tls-server") / name, subs / name)
    return subs


@needs_tshark
@pytest.mark.slow
def test_resume_regrade_one_force_and_rerender(three: Path, tmp_path: Path) -> None:
    a = load_assignment("tls-server")
    out = tmp_path / "out"
    graded: list[str] = []

    def grade(**kw: object) -> list[str]:
        graded.clear()
        grade_batch(a, three, out, 2, progress=lambda d, t, r: graded.append(r.student), **kw)  # type: ignore[arg-type]
        return sorted(graded)

    assert grade() == ["lecture", "plaintext", "reference"]
    first = gradebook(out / "gradebook.csv")
    assert grade() == []  # same files, same grader: nothing to do
    assert gradebook(out / "gradebook.csv") == first
    (three / "lecture" / "notes.txt").write_text("changed")
    assert grade() == ["lecture"]  # only what changed
    assert grade(only={"plaintext"}) == ["plaintext"]
    assert grade(force=True) == ["lecture", "plaintext", "reference"]
    # re-render from the store alone: reports come back, nothing runs
    (out / "index.html").unlink()
    shutil.rmtree(out / "students" / "reference")
    rerender(out)
    assert (out / "index.html").is_file() and (out / "students" / "reference" / "report.html").is_file()
    assert gradebook(out / "gradebook.csv") == first
    with sqlite3.connect(out / "wiregrade.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 3


@needs_tshark
@pytest.mark.slow
def test_adjustments_apply_and_survive_a_regrade(three: Path, tmp_path: Path) -> None:
    adj = tmp_path / "adjustments.csv"
    adj.write_text("student,points,reason\nlecture,-2,late by a day\nlecture,+1,good comments\n")
    a = load_assignment("tls-server")
    for force in (False, True):
        grade_batch(a, three, tmp_path / "out", 2, force=force, adjustments=adj)
        rows = {r["student"]: r for r in gradebook(tmp_path / "out" / "gradebook.csv")}
        assert rows["lecture"]["score"] == "18" and rows["lecture"]["final"] == "17"
        assert rows["lecture"]["adjustment_reason"] == "-2 late by a day; +1 good comments"
        assert rows["reference"]["final"] == "25"


def session_processes() -> list[str]:
    return own_session_processes()


@needs_tshark
@pytest.mark.slow
def test_kill_9_mid_batch_then_rerun_equals_an_uninterrupted_run(
    exercises: Exercises, tmp_path: Path
) -> None:
    subs = tmp_path / "subs"
    for i, name in enumerate(
        ["reference", "lecture", "plaintext", "good", "allows-tls10", "wrong-certificate"]
    ):
        shutil.copytree(exercises.submissions("tls-server") / name, subs / f"s{i}-{name}")
    cmd = [sys.executable, "-m", "harness", "grade", "tls-server", str(subs), "--jobs", "1", "--out"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    victim = subprocess.Popen(
        [*cmd, str(tmp_path / "out")], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    db = tmp_path / "out" / "wiregrade.db"
    deadline = time.monotonic() + 120
    rows = 0
    while rows < 2 and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.2)  # polling the store for progress, bounded by the deadline
        if db.exists():
            with sqlite3.connect(db) as c:
                try:
                    rows = c.execute("SELECT COUNT(*) FROM results").fetchone()[0]
                except sqlite3.OperationalError:
                    rows = 0
    assert victim.poll() is None and rows >= 2, "the batch finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    deadline = time.monotonic() + 15
    while session_processes() and time.monotonic() < deadline:
        time.sleep(0.1)  # the session and its student programs die with the grader (PDEATHSIG)
    assert session_processes() == []
    subprocess.run(
        [*cmd, str(tmp_path / "out")], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300
    )
    subprocess.run(
        [*cmd, str(tmp_path / "clean")], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300
    )
    assert gradebook(tmp_path / "out" / "gradebook.csv") == gradebook(tmp_path / "clean" / "gradebook.csv")
    assert len(gradebook(tmp_path / "out" / "gradebook.csv")) == 6


PEEK_GRADER = """
from harness import check

@check(title="Runs the peek", points=1)
def test_peek(student, evidence):
    proc = student.run("peek.py", timeout=20)
    evidence.text("peek", proc.stdout.text())
    evidence.text("whoami", str(proc.returncode))
"""

PEEK_HIDDEN = """
from harness import check

@check(title="A hidden check", points=1, visibility="hidden")
def test_secret():
    assert "TOP-SECRET-ANSWER"
"""

PEEK = """
import os
for target in open("targets.txt").read().split():
    try:
        data = open(target).read()
        print("LEAK", target, data[:30].replace(chr(10), " "))
    except OSError as exc:
        print("BLOCKED", target, type(exc).__name__)
print("UID", os.getuid())
"""


def test_student_programs_see_no_grader_no_store_no_other_student(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    import tempfile

    from tests.test_plugin import make_project

    # Everything world-readable on purpose: what protects it must be the hiding, not modes.
    tmp_path = Path(tempfile.mkdtemp(prefix="wiregrade-peek-"))
    tmp_path.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(tmp_path, ignore_errors=True))
    root = tmp_path / "project"
    make_project(root, PEEK_GRADER, total=2, hidden=PEEK_HIDDEN)
    (root / "assignments/boom/assignment.toml").write_text(
        (root / "assignments/boom/assignment.toml")
        .read_text()
        .replace("hidden_points = 2", "hidden_points = 1")
    )
    monkeypatch.setenv("WIREGRADE_HOME", str(root))
    subs = tmp_path / "subs"
    out = tmp_path / "out"
    for name in ("alice", "bob"):
        (subs / name).mkdir(parents=True)
        (subs / name / "peek.py").write_text(PEEK)
        (subs / name / "diary.txt").write_text(f"{name}'s private answers")
    targets = [root / "graders/boom/hidden_boom.py", subs / "bob" / "diary.txt", out / "wiregrade.db"]
    (subs / "alice" / "targets.txt").write_text("\n".join(map(str, targets)))
    (subs / "bob" / "targets.txt").write_text(str(subs / "alice" / "diary.txt"))
    results = {r.student: r for r in grade_batch(load_assignment("boom"), subs, out, 2)}
    if results["alice"].environment.isolation == "none":
        pytest.skip("no private namespaces here: nothing can be hidden (the report says so)")
    for name, r in results.items():
        seen = next(e.data for c in r.checks for e in c.evidence if e.title == "peek")
        assert "LEAK" not in seen, seen
        assert seen.count("FileNotFoundError") == (3 if name == "alice" else 1), seen  # covered
        if "student programs run as uid" in r.environment.isolation_detail:
            assert "UID 0" not in seen  # never root (where no interpreter is reachable, the report says so)
    assert (out / "wiregrade.db").is_file()  # the store itself is fine: it was only hidden


HOSTILE = {
    "forkbomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
    "spinner": "while True:\n    pass\n",
    "gigabyte": "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n",
    "never-listens": "import time\nwhile True:\n    time.sleep(1)\n",
}


@needs_tshark
@pytest.mark.slow
def test_a_hostile_batch_finishes_with_everyone_else_graded(exercises: Exercises, tmp_path: Path) -> None:
    from harness._user import choose_student_user

    hostile = dict(HOSTILE)
    user = choose_student_user()
    if os.geteuid() == 0 and (user is None or user.uid < 0):
        del hostile["forkbomb"]  # students would run as root here, where RLIMIT_NPROC holds nothing
    subs = tmp_path / "subs"
    shutil.copytree(exercises.submissions("tls-server") / "reference", subs / "honest")
    for name, code in hostile.items():
        shutil.copytree(exercises.submissions("tls-server") / "reference", subs / name)
        (subs / name / "server.py").write_text(code)
    with zipfile.ZipFile(subs / "slip.zip", "w") as zf:
        zf.writestr("../../../slipped.py", "print('out')")
    results = {r.student: r for r in grade_batch(load_assignment("tls-server"), subs, tmp_path / "out", 2)}
    assert results["honest"].score == 25
    assert results["slip"].refused and "unsafe path" in results["slip"].refused
    for name in hostile:
        r = results[name]
        assert not r.harness_error and not r.errors, (name, r.harness_error, [c.seen for c in r.errors])
        assert r.score == 0, name
    assert (
        "did not listen" in results["spinner"].checks[0].seen
        or "stopped before" in results["spinner"].checks[0].seen
    )
    rows = gradebook(tmp_path / "out" / "gradebook.csv")
    assert sorted(r["student"] for r in rows) == sorted(["honest", "slip", *hostile])
    assert session_processes() == []
    leftovers = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
        except (OSError, IndexError, ValueError):
            continue
        if uid >= 200_000 and descends_from(int(pid), os.getpid()):  # ours, not another batch's
            leftovers.append(pid)
    assert leftovers == []
