"""Issue 14: a batch's outputs live apart from its students' (``OUT/students/<id>/`` beside
``OUT/index.html``), and an OUT written with the older ``OUT/<id>/`` layout is moved over by
``wiregrade report`` and by a resumed ``grade``, never losing a student's files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness._assignment import load_assignment
from harness._results import SubmissionResult
from harness._runner import grade_batch, migrate_layout, student_dir
from harness.cli import main

SERVER = "print('hello')\n"


@pytest.fixture
def graded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []

    def fake_session(assignment, submission, out, student, options, *, capture_secret=""):  # type: ignore[no-untyped-def]
        seen.append(student)
        return SubmissionResult(assignment=assignment.id, student=student, checks=())

    monkeypatch.setattr("harness._runner.run_session", fake_session)
    return seen


def class_of(subs: Path, names: list[str]) -> Path:
    for name in names:
        (subs / name).mkdir(parents=True)
        (subs / name / "server.py").write_text(SERVER)
    return subs


def to_old_layout(out: Path) -> None:
    """What an OUT graded before OUT/students/ looked like."""
    for folder in sorted((out / "students").iterdir()):
        folder.rename(out / f".old-{folder.name}")
    (out / "students").rmdir()
    for folder in sorted(out.glob(".old-*")):
        folder.rename(out / folder.name.removeprefix(".old-"))


def test_students_live_under_out_students_and_the_class_page_links_there(
    graded: list[str], tmp_path: Path
) -> None:
    subs = class_of(tmp_path / "subs", ["alice", "index.html", "students"])
    out = tmp_path / "out"
    grade_batch(load_assignment("tls-server"), subs, out)
    assert student_dir(out, "alice") == out / "students" / "alice"
    for sid in ("alice", "index.html_student", "students"):
        assert (out / "students" / sid / "results.json").is_file(), sid
    assert (out / "index.html").is_file()
    index = (out / "index.html").read_text()
    assert 'href="students/alice/report.html"' in index
    assert 'href="students/students/instructor.html"' in index


@pytest.mark.parametrize("how", ["report", "grade"])
def test_an_old_out_is_migrated_by_report_and_by_a_resumed_grade(
    graded: list[str], tmp_path: Path, how: str
) -> None:
    subs = class_of(tmp_path / "subs", ["alice", "bob", "students"])
    out = tmp_path / "out"
    main(["grade", "tls-server", str(subs), "--out", str(out)])
    to_old_layout(out)
    (out / "alice" / "my-notes.txt").write_text("kept")  # anything in there moves with it
    (out / "bob" / "report.html").unlink()
    (out / "students" / "capture.pcap").write_bytes(b"\xd4\xc3\xb2\xa1")  # the old "students"' own
    (out / "unrelated").mkdir()  # not a student the store knows: left alone
    graded.clear()
    args = ["report", str(out)] if how == "report" else ["grade", "tls-server", str(subs), "--out", str(out)]
    assert main(args) == 0
    assert graded == []  # a resume grades nothing that is current
    for sid in ("alice", "bob", "students"):
        assert not (out / sid).exists() or sid == "students"
        assert (out / "students" / sid / "report.html").is_file(), sid
    assert (out / "students" / "alice" / "my-notes.txt").read_text() == "kept"
    assert (out / "students" / "students" / "capture.pcap").read_bytes() == b"\xd4\xc3\xb2\xa1"
    assert (out / "unrelated").is_dir()
    assert 'href="students/bob/report.html"' in (out / "index.html").read_text()


def test_a_migration_never_merges_over_a_folder_already_in_place(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "alice").mkdir(parents=True)
    (out / "alice" / "old.txt").write_text("old")
    (out / "students" / "alice").mkdir(parents=True)
    (out / "students" / "alice" / "new.txt").write_text("new")
    (out / "bob").mkdir()
    assert migrate_layout(out, {"alice", "bob"}) == ["bob"]
    assert (out / "alice" / "old.txt").read_text() == "old"  # left where it was: nothing lost
    assert (out / "students" / "alice" / "new.txt").read_text() == "new"
    assert (out / "students" / "bob").is_dir() and not (out / "bob").exists()
    shutil.rmtree(out)
