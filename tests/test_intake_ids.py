"""Issue 14 follow-up: an export's names never make two students one. D2L entries of one name are
one student's only when the user's number agrees (two John Smiths, or two names that sanitise
alike, are two students); GitHub Classroom's prefix is stripped only when it is known (the
``<assignment>-submissions`` folder or ``--classroom-prefix``), never guessed from the clones."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from harness._intake import take_in_all
from harness._results import SubmissionResult
from harness.cli import main

SERVER = b"print('hello')\n"


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def d2l_folder(subs: Path, entries: dict[str, bytes]) -> Path:
    """A D2L download: D2L's index.html beside files named ``<ids> - <name> - <date> - <file>``."""
    subs.mkdir(parents=True)
    (subs / "index.html").write_text("<html>D2L's list of submissions</html>")
    for name, data in entries.items():
        (subs / name).write_bytes(data)
    return subs


def test_d2l_two_students_of_one_name_are_two_students(tmp_path: Path) -> None:
    subs = d2l_folder(
        tmp_path / "subs",
        {
            "39786-640693 - John Smith - Oct 10, 2025 1022 AM - server.py": b"first John\n",
            "39790-640700 - John Smith - Oct 11, 2025 900 AM - server.py": b"second John\n",
        },
    )
    got = take_in_all(subs, tmp_path / "work")
    assert got.refused == {} and got.merged == {}  # neither is listed as the other's older try
    assert sorted(got.ready) == ["John_Smith_640693", "John_Smith_640700"]
    assert files(got.ready["John_Smith_640693"]) == {"server.py": b"first John\n"}
    assert files(got.ready["John_Smith_640700"]) == {"server.py": b"second John\n"}
    assert got.arrivals["John_Smith_640693"].submitted == "2025-10-10T10:22:00"


def test_d2l_names_that_sanitise_alike_are_two_students(tmp_path: Path) -> None:
    subs = d2l_folder(
        tmp_path / "subs",
        {
            "501-71 - José Pérez - Oct 10, 2025 1022 AM - server.py": b"jose\n",
            "502-72 - Josè Pérez - Oct 10, 2025 1030 AM - server.py": b"josee\n",
        },
    )
    got = take_in_all(subs, tmp_path / "work")
    assert got.refused == {} and got.merged == {}
    assert {sid: files(p) for sid, p in got.ready.items()} == {
        "Jos_P_rez_71": {"server.py": b"jose\n"},
        "Jos_P_rez_72": {"server.py": b"josee\n"},
    }


def test_d2l_one_student_twice_the_latest_is_graded_the_other_merged(tmp_path: Path) -> None:
    subs = d2l_folder(
        tmp_path / "subs",
        {
            "39786-640693 - John Smith - Oct 10, 2025 1022 AM - server.py": b"old\n",
            "39901-640693 - John Smith - Oct 11, 2025 930 AM - server.py": SERVER,
        },
    )
    got = take_in_all(subs, tmp_path / "work")
    assert got.refused == {} and list(got.ready) == ["John_Smith_640693"]
    assert files(got.ready["John_Smith_640693"]) == {"server.py": SERVER}
    assert got.merged == {
        "John_Smith_640693": [
            "39901-640693 - John Smith - Oct 11, 2025 930 AM - server.py",
            "39786-640693 - John Smith - Oct 10, 2025 1022 AM - server.py",
        ]
    }


def test_d2l_names_that_contradict_the_user_number_are_refused_naming_every_entry(tmp_path: Path) -> None:
    """One submission number beside two user numbers: the second number is not the user's here,
    so whose work each entry is cannot be told; nothing is graded under a guess."""
    a = "700-1 - Bo Li - Oct 10, 2025 1022 AM - server.py"
    b = "700-2 - Bo Li - Oct 11, 2025 930 AM - server.py"
    subs = d2l_folder(
        tmp_path / "subs", {a: SERVER, b: SERVER, "701-3 - Sam Roe - Oct 9, 2025 1159 PM - x.py": SERVER}
    )
    got = take_in_all(subs, tmp_path / "work")
    assert list(got.ready) == ["Sam_Roe_3"]  # the rest of the batch is graded
    assert sorted(got.refused) == ["Bo_Li_1", "Bo_Li_2"]
    for why in got.refused.values():
        assert a in why and b in why and "none of these was graded" in why


def clone(folder: Path) -> None:
    (folder / ".git" / "objects").mkdir(parents=True)
    (folder / "server.py").write_bytes(folder.name.encode())


def test_classroom_prefix_is_never_guessed_from_the_clones_names(tmp_path: Path) -> None:
    subs = tmp_path / "subs"  # not named <assignment>-submissions: no prefix is known
    for name in ("hw1-ann-lee", "hw1-ann-smith"):
        clone(subs / name)
    got = take_in_all(subs, tmp_path / "work")
    assert got.refused == {}
    assert sorted(got.ready) == ["hw1-ann-lee", "hw1-ann-smith"]  # never "lee" and "smith"
    given = take_in_all(subs, tmp_path / "work2", classroom_prefix="hw1-")
    assert {sid: files(p) for sid, p in given.ready.items()} == {
        "ann-lee": {"server.py": b"hw1-ann-lee"},
        "ann-smith": {"server.py": b"hw1-ann-smith"},
    }


def test_classroom_submissions_folder_names_the_prefix(tmp_path: Path) -> None:
    subs = tmp_path / "hw1-submissions"  # what gh classroom clone student-repos makes
    for name in ("hw1-ann-lee", "hw1-ann-smith"):
        clone(subs / name)
    (subs / "hw1-notes").mkdir()  # not a clone: keeps its name
    (subs / "hw1-notes" / "server.py").write_bytes(SERVER)
    got = take_in_all(subs, tmp_path / "work")
    assert sorted(got.ready) == ["ann-lee", "ann-smith", "hw1-notes"] and got.refused == {}


def test_classroom_prefix_on_the_command_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    graded: dict[str, bytes] = {}

    def fake_session(assignment, submission, out, student, options, *, capture_secret=""):  # type: ignore[no-untyped-def]
        graded[student] = (submission / "server.py").read_bytes()
        return SubmissionResult(assignment=assignment.id, student=student, checks=())

    monkeypatch.setattr("harness._runner.run_session", fake_session)
    subs = tmp_path / "repos"
    for name in ("hw1-ann-lee", "hw1-ann-smith"):
        clone(subs / name)
    out = tmp_path / "out"
    assert main(["grade", "tls-server", str(subs), "--out", str(out), "--classroom-prefix", "hw1"]) == 0
    assert graded == {"ann-lee": b"hw1-ann-lee", "ann-smith": b"hw1-ann-smith"}
    with open(out / "gradebook.csv", newline="") as f:
        assert sorted(row["student"] for row in csv.DictReader(f)) == ["ann-lee", "ann-smith"]


def test_classroom_prefix_that_names_no_clone_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subs = tmp_path / "repos"
    for name in ("hw1-ann-lee", "hw1-ann-smith"):
        clone(subs / name)
    out = tmp_path / "out"
    assert main(["grade", "tls-server", str(subs), "--out", str(out), "--classroom-prefix", "hw2-"]) == 2
    said = capsys.readouterr().err
    assert f"--classroom-prefix: no git clone in {subs} is named hw2-<login>" in said
    assert "the git clones there: hw1-ann-lee, hw1-ann-smith" in said
    assert not out.exists()  # nothing was graded
