"""Issue 14: LMS exports read from their own layout (D2L Brightspace, Canvas, Moodle without
folders, Gradescope, GitHub Classroom), submission times kept, late work marked (no penalty).
Sessions are stubbed where a batch runs: this is intake only."""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import replace
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from harness._assignment import load_assignment
from harness._errors import HarnessError
from harness._intake import Arrival, is_late, take_in_all
from harness._results import SubmissionResult
from harness._runner import deadline_of, grade_batch
from harness.cli import main

SERVER = b"print('hello')\n"


@pytest.fixture
def graded(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, bytes]]:
    """Stub sessions: student -> {file: bytes} of the folder it was handed."""
    seen: dict[str, dict[str, bytes]] = {}

    def fake_session(assignment, submission, out, student, options, *, capture_secret=""):  # type: ignore[no-untyped-def]
        seen[student] = {
            str(p.relative_to(submission)): p.read_bytes() for p in submission.rglob("*") if p.is_file()
        }
        return SubmissionResult(assignment=assignment.id, student=student, checks=())

    monkeypatch.setattr("harness._runner.run_session", fake_session)
    return seen


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def gradebook(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def d2l(subs: Path) -> None:
    """A D2L Brightspace download, unpacked: files named by submission ids, the student's
    name and the date, a folder for a submission of several files, and D2L's index.html."""
    subs.mkdir(parents=True, exist_ok=True)
    (subs / "index.html").write_text("<html><table><tr><td>Jane Doe</td></tr></table></html>")
    (subs / "111-901 - Jane Doe - Oct 10, 2025 1022 AM - server.py").write_bytes(b"old\n")
    (subs / "112-901 - Jane Doe - Oct 11, 2025 930 AM - server.py").write_bytes(SERVER)
    (subs / "112-901 - Jane Doe - Oct 11, 2025 930 AM - server.cnf").write_bytes(b"[req]\n")
    (subs / "113-902 - Sam Roe - Oct 9, 2025 1159 PM - work.zip").write_bytes(zipped({"w/server.py": SERVER}))
    folder = subs / "114-903 - Ann Lee - Oct 12, 2025 100 PM"
    folder.mkdir()
    (folder / "server.py").write_bytes(SERVER)


def test_d2l_download_the_latest_submission_is_graded_and_index_html_is_no_stray(tmp_path: Path) -> None:
    d2l(tmp_path / "subs")
    got = take_in_all(tmp_path / "subs", tmp_path / "work")
    assert got.refused == {}
    assert sorted(got.ready) == ["Ann_Lee_903", "Jane_Doe_901", "Sam_Roe_902"]  # name and user number
    assert files(got.ready["Jane_Doe_901"]) == {"server.py": SERVER, "server.cnf": b"[req]\n"}
    assert files(got.ready["Sam_Roe_902"]) == {"server.py": SERVER}  # the one archive is unpacked
    assert files(got.ready["Ann_Lee_903"]) == {"server.py": SERVER}
    assert got.merged == {
        "Jane_Doe_901": [
            "112-901 - Jane Doe - Oct 11, 2025 930 AM - server.cnf",
            "112-901 - Jane Doe - Oct 11, 2025 930 AM - server.py",
            "111-901 - Jane Doe - Oct 10, 2025 1022 AM - server.py",
        ]
    }
    assert got.arrivals["Jane_Doe_901"] == Arrival("2025-10-11T09:30:00", False, "d2l")
    assert got.arrivals["Sam_Roe_902"].submitted == "2025-10-09T23:59:00"
    assert any("index.html" in f for f in got.export_files)


def test_d2l_two_submissions_at_the_same_minute_are_refused_naming_both(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    d2l(subs)
    (subs / "115-904 - Bo Li - Oct 9, 2025 1159 PM - a.py").write_bytes(SERVER)
    (subs / "116-904 - Bo Li - Oct 9, 2025 1159 PM - b.py").write_bytes(SERVER)
    got = take_in_all(subs, tmp_path / "work")
    assert "2 entries map to student Bo_Li_904" in got.refused["Bo_Li_904"]
    assert "Bo_Li_904" in got.arrivals  # its time is still shown


def test_d2l_names_without_d2l_index_are_not_read_as_an_export(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "111-901 - Jane Doe - Oct 10, 2025 1022 AM - server.py").write_bytes(SERVER)
    got = take_in_all(subs, tmp_path / "work")
    assert got.ready == {} and list(got.refused.values())[0].endswith("it was not graded")


def test_canvas_files_of_one_student_are_one_submission_and_late_is_kept(
    graded: dict[str, dict[str, bytes]], tmp_path: Path
) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "doejane_1234_5678_server.py").write_bytes(SERVER)
    (subs / "doejane_1234_5679_server.cnf").write_bytes(b"[req]\n")
    (subs / "roe_sam_LATE_4321_8765_server.zip").write_bytes(zipped({"server.py": SERVER}))
    (subs / "lee_ann_late_77_88_server.py").write_bytes(SERVER)
    grade_batch(load_assignment("tls-server"), subs, tmp_path / "out")
    assert graded == {
        "doejane_1234": {"server.py": SERVER, "server.cnf": b"[req]\n"},
        "roe_sam_4321": {"server.py": SERVER},
        "lee_ann_77": {"server.py": SERVER},
    }
    rows = gradebook(tmp_path / "out" / "gradebook.csv")
    assert {s: r["late"] for s, r in rows.items()} == {
        "doejane_1234": "",
        "roe_sam_4321": "late",
        "lee_ann_77": "late",
    }
    index = (tmp_path / "out" / "index.html").read_text()
    assert index.count('class="badge failed">late<') == 2


def test_moodle_downloaded_without_folders_groups_the_file_submission(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "Jane Doe_12345_assignsubmission_file_server.py").write_bytes(SERVER)
    (subs / "Jane Doe_12345_assignsubmission_file_server.cnf").write_bytes(b"[req]\n")
    (subs / "Jane Doe_12345_assignsubmission_onlinetext_onlinetext.html").write_bytes(b"<p>hi</p>")
    (subs / "Sam Roe_777_assignsubmission_file_work.tgz").write_bytes(b"not really a tgz")
    got = take_in_all(subs, tmp_path / "work")
    assert files(got.ready["Jane_Doe_12345"]) == {"server.py": SERVER, "server.cnf": b"[req]\n"}
    assert got.merged["Jane_Doe_12345"][-1] == "Jane Doe_12345_assignsubmission_onlinetext_onlinetext.html"
    assert "is not a valid archive" in got.refused["Sam_Roe_777"]


def test_gradescope_times_are_kept_and_a_deadline_marks_late_work(
    graded: dict[str, dict[str, bytes]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subs = tmp_path / "subs"
    for n in ("submission_1", "submission_2"):
        (subs / n).mkdir(parents=True)
        (subs / n / "server.py").write_bytes(SERVER)
    (subs / "submission_metadata.yml").write_text(
        "submission_1:\n  :submitters:\n  - :name: Sam Roe\n    :sid: s1\n"
        "  :created_at: 2026-03-01 23:58:00.123456000 +0000\n"
        "submission_2:\n  :submitters:\n  - :name: Ann Lee\n    :sid: s2\n"
        "  :created_at: 2026-03-02 00:30:00.000000000 +0000\n"
    )
    out = tmp_path / "out"
    code = main(
        ["grade", "tls-server", str(subs), "--out", str(out), "--deadline", "2026-03-02T00:00:00+00:00"]
    )
    assert code == 0 and sorted(graded) == ["s1", "s2"]
    rows = gradebook(out / "gradebook.csv")
    assert rows["s1"]["submitted"] == "2026-03-01T23:58:00+00:00" and rows["s1"]["late"] == ""
    assert rows["s2"]["submitted"] == "2026-03-02T00:30:00+00:00" and rows["s2"]["late"] == "late"
    assert rows["s2"]["final"] == rows["s2"]["score"]  # marked, never penalised
    said = capsys.readouterr().out
    assert "Late (1, marked in the gradebook, no penalty): s2" in said
    assert "submission_metadata.yml (Gradescope's list of submitters)" in said
    main(["report", str(out)])  # times and marks survive a re-render from the store
    assert gradebook(out / "gradebook.csv")["s2"]["late"] == "late"


def test_the_deadline_comes_from_assignment_toml_or_the_command_line(tmp_path: Path) -> None:
    a = load_assignment("tls-server")
    assert deadline_of(a) is None
    due = datetime(2026, 3, 1, 23, 59, tzinfo=timezone.utc)
    assert deadline_of(replace(a, settings={**a.settings, "deadline": due})) == due
    assert deadline_of(replace(a, settings={**a.settings, "deadline": date(2026, 3, 1)})) == datetime(
        2026, 3, 1, 23, 59, 59, 999999
    )
    assert deadline_of(a, "2026-03-01") == datetime(2026, 3, 1, 23, 59, 59, 999999)
    assert deadline_of(a, "2026-03-01T12:00:00Z") == datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    with pytest.raises(HarnessError, match="--deadline: 'next friday' is not a date and time"):
        deadline_of(a, "next friday")
    with pytest.raises(HarnessError, match="deadline in tls-server's assignment.toml: 'soon' is not"):
        deadline_of(replace(a, settings={**a.settings, "deadline": "soon"}))
    out = tmp_path / "out"
    assert main(["grade", "tls-server", str(tmp_path), "--out", str(out), "--deadline", "next friday"]) == 2
    assert not out.exists()  # a usage error: nothing was graded
    # a time without a zone (D2L names none) is compared as wall-clock time with the deadline
    assert is_late(Arrival("2026-03-01T12:01:00"), datetime(2026, 3, 1, 12, tzinfo=timezone.utc))
    assert not is_late(Arrival("2026-03-01T11:59:00"), datetime(2026, 3, 1, 12, tzinfo=timezone.utc))
    assert is_late(Arrival("", late=True), None)  # the export's own marker is kept


def clone(folder: Path) -> None:
    (folder / ".git" / "objects").mkdir(parents=True)
    (folder / "server.py").write_bytes(SERVER)


def test_github_classroom_clones_are_named_by_login(tmp_path: Path) -> None:
    subs = tmp_path / "tls-server-submissions"  # what gh classroom clone student-repos makes
    for login in ("alice", "bob-smith"):
        clone(subs / f"tls-server-{login}")
    got = take_in_all(subs, tmp_path / "work")
    assert sorted(got.ready) == ["alice", "bob-smith"] and got.refused == {}
    other = tmp_path / "subs"  # any other folder name: the prefix is given, never guessed
    for login in ("carol", "dan"):
        clone(other / f"lab-3-{login}")
    assert sorted(take_in_all(other, tmp_path / "work2").ready) == ["lab-3-carol", "lab-3-dan"]
    given = take_in_all(other, tmp_path / "work3", classroom_prefix="lab-3-")
    assert sorted(given.ready) == ["carol", "dan"]


def test_a_refused_export_submission_names_every_entry_of_the_student(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    d2l(subs)
    (subs / "117-901 - Jane Doe - Oct 12, 2025 800 AM - work.zip").write_bytes(b"not a zip")
    got = take_in_all(subs, tmp_path / "work")
    why = got.refused["Jane_Doe_901"]
    assert why.startswith("117-901 - Jane Doe - Oct 12, 2025 800 AM - work.zip is not a valid archive")
    assert "111-901 - Jane Doe - Oct 10, 2025 1022 AM - server.py" in why and "Jane_Doe_901" not in got.merged
