"""Issue 14: every child of SUBMISSIONS is graded, refused with the reason, or merged into a
named student; nothing is skipped without a word. Sessions are stubbed: this is intake only."""

from __future__ import annotations

import csv
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from harness._assignment import load_assignment
from harness._intake import Intake, take_in_all
from harness._results import SubmissionResult
from harness._runner import grade_batch
from harness.cli import main

SERVER = b"print('hello')\n"


def _tar(path: Path, mode: str) -> None:
    with tarfile.open(path, mode) as tf:
        info = tarfile.TarInfo("wrap/server.py")
        info.size = len(SERVER)
        tf.addfile(info, io.BytesIO(SERVER))


def _zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("server.py", SERVER)


def _folder(path: Path, name: str = "server.py", data: bytes = SERVER) -> None:
    path.mkdir(parents=True)
    (path / name).write_bytes(data)


@pytest.fixture
def graded(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Stub sessions: student -> the files of the folder it was handed (intake's copy goes)."""
    seen: dict[str, list[str]] = {}

    def fake_session(assignment, submission, out, student, options, *, capture_secret=""):  # type: ignore[no-untyped-def]
        seen[student] = sorted(str(p.relative_to(submission)) for p in submission.rglob("*"))
        return SubmissionResult(assignment=assignment.id, student=student, checks=())

    monkeypatch.setattr("harness._runner.run_session", fake_session)
    return seen


def gradebook(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def every_shape(subs: Path) -> None:
    _folder(subs / "alice")
    _zip(subs / "alice.zip")  # two entries, one id: refused, both named
    _zip(subs / "bob.zip")
    _zip(subs / "carol.ZIP")
    _tar(subs / "dan.TAR.GZ", "w:gz")
    _tar(subs / "erin.tgz", "w:gz")
    _tar(subs / "frank.tar.xz", "w:xz")
    (subs / "notes.txt").write_text("grading notes\n")
    (subs / "dave.rar").write_bytes(b"Rar!\x1a\x07\x00")
    (subs / "x.7z").write_bytes(b"7z\xbc\xaf\x27\x1c")
    _folder(subs / "outside")
    (subs / "linked").symlink_to(subs / "outside")  # never followed: refused
    (subs / "outside" / "server.py").rename(subs / "outside" / "main.py")


def test_every_child_is_graded_refused_or_merged(graded: dict[str, list[str]], tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    every_shape(subs)
    out = tmp_path / "out"
    taken: list[Intake] = []
    results = grade_batch(load_assignment("tls-server"), subs, out, on_intake=taken.append)
    accepted = ["bob", "carol", "dan", "erin", "frank", "outside"]
    assert sorted(graded) == accepted
    for name in accepted[:-1]:
        assert graded[name] == ["server.py"], name
    (got,) = taken
    assert got.merged == {} and got.renamed == {}
    refused = {r.student: r.refused for r in results if r.refused}
    assert sorted(refused) == ["alice", "dave.rar", "linked", "notes.txt", "x.7z"]
    assert "2 entries map to student alice: alice, alice.zip; none was graded" in refused["alice"]
    assert ".rar archive, which wiregrade does not read" in refused["dave.rar"]
    assert ".7z archive" in refused["x.7z"]
    assert "notes.txt is a file, not a submission" in refused["notes.txt"]
    assert "symbolic link" in refused["linked"]
    # one gradebook row per entry-or-student: every child of SUBMISSIONS is accounted for
    rows = gradebook(out / "gradebook.csv")
    assert sorted(rows) == sorted([*accepted, *refused])
    assert all(rows[s]["status"] == "submission refused" for s in refused)
    index = (out / "index.html").read_text()
    assert "none was graded" in index and "dave.rar" in index


def test_the_end_of_the_run_lists_refused_and_merged(
    graded: dict[str, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    every_shape(subs)
    main(["grade", "tls-server", str(subs), "--out", str(tmp_path / "out")])
    said = capsys.readouterr().out
    assert "Refused (5, in the gradebook with the reason):" in said
    for line in ("  alice: 2 entries map", "  dave.rar: dave.rar is a .rar", "  notes.txt: ", "  x.7z: "):
        assert line in said, line


def test_intake_alone_accounts_for_every_child(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    every_shape(subs)
    got = take_in_all(subs, tmp_path / "work")
    said = " ".join([*got.ready, *got.refused.values(), *(p for parts in got.merged.values() for p in parts)])
    for child in subs.iterdir():
        assert child.name.split(".")[0] in said, child.name
    assert not set(got.ready) & set(got.refused)


def test_moodle_file_and_online_text_are_merged_the_file_graded(
    graded: dict[str, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subs = tmp_path / "subs"
    # sorted, the online text comes last: it used to replace the file submission, silently
    _folder(subs / "Jane_Doe_12345_assignsubmission_file_" / "tls")
    _folder(subs / "Jane_Doe_12345_assignsubmission_onlinetext_", "onlinetext.html", b"<p>see my zip</p>")
    _folder(subs / "Sam_Roe_777_assignsubmission_onlinetext_", "onlinetext.html", b"<p>only text</p>")
    _folder(subs / "Ann_Lee_55_assignsubmission_file_")
    _folder(subs / "Ann_Lee_55_assignsubmission_file_2")  # not file + online text: refused, both named
    main(["grade", "tls-server", str(subs), "--out", str(tmp_path / "out")])
    assert graded == {"Jane_Doe_12345": ["server.py"], "Sam_Roe_777": ["onlinetext.html"]}
    said = capsys.readouterr().out
    jane = ["Jane_Doe_12345_assignsubmission_file_", "Jane_Doe_12345_assignsubmission_onlinetext_"]
    assert f"  Jane_Doe_12345: {jane[0]} + {jane[1]}" in said
    rows = gradebook(tmp_path / "out" / "gradebook.csv")
    assert sorted(rows) == ["Ann_Lee_55", "Jane_Doe_12345", "Sam_Roe_777"]
    assert rows["Jane_Doe_12345"]["status"] != "submission refused"
    assert rows["Ann_Lee_55"]["status"] == "submission refused"
    got = take_in_all(subs, tmp_path / "work")
    assert got.merged == {"Jane_Doe_12345": jane}
    assert "2 entries map to student Ann_Lee_55" in got.refused["Ann_Lee_55"]


def test_a_submission_named_like_the_batch_outputs_is_graded_under_another_id(
    graded: dict[str, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    _zip(subs / "wiregrade.db.zip")
    _zip(subs / "index.html.zip")
    _folder(subs / "gradebook.csv")
    _folder(subs / "wiregrade.db-wal")
    _zip(subs / "bob.zip")
    out = tmp_path / "out"
    for _ in range(2):  # the first run and a resume: neither crashes
        main(["grade", "tls-server", str(subs), "--out", str(out)])
    ids = [
        "bob",
        "gradebook.csv_student",
        "index.html_student",
        "wiregrade.db-wal_student",
        "wiregrade.db_student",
    ]
    assert sorted(graded) == ids
    said = capsys.readouterr().out
    assert "Renamed: index.html.zip takes the id index.html_student" in said
    assert "Renamed: wiregrade.db.zip takes the id wiregrade.db_student" in said
    assert sorted(gradebook(out / "gradebook.csv")) == ids
    assert (out / "wiregrade.db").is_file() and (out / "index.html").is_file()
    assert (out / "students" / "index.html_student" / "results.json").is_file()


def test_a_renamed_id_still_refuses_a_collision(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    _zip(subs / "index.html.zip")
    (subs / "index.html").write_text("<html>a download's own index</html>")  # a stray file
    got = take_in_all(subs, tmp_path / "work")
    assert got.ready == {} and got.renamed == {
        "index.html": "index.html_student",
        "index.html.zip": "index.html_student",
    }
    assert "index.html, index.html.zip; none was graded" in got.refused["index.html_student"]
