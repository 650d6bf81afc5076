"""Issue 14's done-when: ONE folder holding every shape an instructor meets (Moodle file + online
text, a D2L download, Canvas files incl. late, Gradescope, GitHub Classroom clones, plain
folders and archives, a stray, an unknown archive, a too-deep archive, reserved names) gives a
gradebook with one row per student, and the refusals list the rest with their reasons. The
first test stubs sessions (intake only); the second grades a reference handed in through two
export shapes for real."""

from __future__ import annotations

import csv
import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from harness._assignment import load_assignment
from harness._intake import MAX_DEPTH, Intake
from harness._results import SubmissionResult
from harness._runner import grade_batch
from harness.cli import main
from tests.conftest import Exercises, needs_tshark

SERVER = b"print('hello')\n"


def gradebook(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def _zip(path: Path, members: dict[str, bytes] | None = None) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in (members or {"server.py": SERVER}).items():
            zf.writestr(name, data)


def _tar(path: Path, mode: str, name: str = "wrap/server.py") -> None:
    with tarfile.open(path, mode) as tf:
        info = tarfile.TarInfo(name)
        info.size = len(SERVER)
        tf.addfile(info, io.BytesIO(SERVER))


def _folder(path: Path, name: str = "server.py", data: bytes = SERVER) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / name).write_bytes(data)


def every_shape(subs: Path) -> None:
    subs.mkdir()
    # Moodle, in folders: the file submission and its online text are one student
    _folder(subs / "Jane Doe_12345_assignsubmission_file_")
    _folder(subs / "Jane Doe_12345_assignsubmission_onlinetext_", "onlinetext.html", b"<p>see zip</p>")
    # D2L Brightspace, unpacked download: index.html beside entries; Kim's latest is graded
    (subs / "index.html").write_text("<html>D2L's list of submissions</html>")
    (subs / "201-7 - Kim Park - Oct 10, 2025 1022 AM - server.py").write_bytes(b"first try\n")
    (subs / "202-7 - Kim Park - Oct 11, 2025 845 PM - server.py").write_bytes(SERVER)
    # Canvas: two files of one student, and a late one
    (subs / "leeann_501_1_server.py").write_bytes(SERVER)
    (subs / "leeann_501_2_server.cnf").write_bytes(b"[req]\n")
    (subs / "roesam_LATE_502_3_server.py").write_bytes(SERVER)
    # Gradescope
    _folder(subs / "submission_9001")
    (subs / "submission_metadata.yml").write_text("submission_9001:\n  :submitters:\n  - :sid: gs42\n")
    # GitHub Classroom clones (their "<assignment>-" prefix is given: --classroom-prefix)
    for login in ("octo-cat", "hubot"):
        _folder(subs / f"tls-server-{login}")
        (subs / f"tls-server-{login}" / ".git").mkdir()
    # plain folders and archives, any case
    _folder(subs / "alice")
    _zip(subs / "bob.ZIP")
    _tar(subs / "carol.tgz", "w:gz")
    _tar(subs / "dan.tar.xz", "w:xz")
    _folder(subs / "empty")  # broken, but a submission: graded (to 0 by the checks)
    (subs / "empty" / "server.py").write_bytes(b"")
    # what must be refused, by name, with the reason
    (subs / "notes.txt").write_text("grading notes\n")
    (subs / "erin.rar").write_bytes(b"Rar!\x1a\x07\x00")
    _tar(subs / "deep.tar.gz", "w:gz", "/".join(["d"] * (MAX_DEPTH + 5)) + "/server.py")
    _folder(subs / "frank")
    _zip(subs / "frank.zip")  # two entries for one student
    # reserved names: graded under an id that takes no name the batch writes
    _zip(subs / "wiregrade.db.zip")
    _zip(subs / "index.html.zip")


GRADED = [
    "Jane_Doe_12345",
    "Kim_Park_7",
    "alice",
    "bob",
    "carol",
    "dan",
    "empty",
    "gs42",
    "hubot",
    "index.html_student",
    "leeann_501",
    "octo-cat",
    "roesam_502",
    "wiregrade.db_student",
]
ID_OF = {  # children whose id is not their name's stem
    "Jane Doe_12345_assignsubmission_file_": "Jane_Doe_12345",
    "Jane Doe_12345_assignsubmission_onlinetext_": "Jane_Doe_12345",
    "201-7 - Kim Park - Oct 10, 2025 1022 AM - server.py": "Kim_Park_7",
    "202-7 - Kim Park - Oct 11, 2025 845 PM - server.py": "Kim_Park_7",
    "leeann_501_1_server.py": "leeann_501",
    "leeann_501_2_server.cnf": "leeann_501",
    "roesam_LATE_502_3_server.py": "roesam_502",
    "submission_9001": "gs42",
    "tls-server-octo-cat": "octo-cat",
    "tls-server-hubot": "hubot",
    "wiregrade.db.zip": "wiregrade.db_student",
    "index.html.zip": "index.html_student",
    "erin.rar": "erin.rar",
    "notes.txt": "notes.txt",
    "frank": "frank",
    "frank.zip": "frank",
}
REFUSED = {
    "deep": f"levels deep (limit {MAX_DEPTH})",
    "erin.rar": ".rar archive, which wiregrade does not read",
    "frank": "2 entries map to student frank: frank, frank.zip; none was graded",
    "notes.txt": "notes.txt is a file, not a submission",
}


def test_one_folder_of_every_shape_one_row_per_student_refusals_list_the_rest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handed: dict[str, dict[str, bytes]] = {}

    def fake_session(assignment, submission, out, student, options, *, capture_secret=""):  # type: ignore[no-untyped-def]
        handed[student] = {
            str(p.relative_to(submission)): p.read_bytes() for p in submission.rglob("*") if p.is_file()
        }
        return SubmissionResult(assignment=assignment.id, student=student, checks=())

    monkeypatch.setattr("harness._runner.run_session", fake_session)
    subs = tmp_path / "subs"
    every_shape(subs)
    out = tmp_path / "out"
    taken: list[Intake] = []
    results = grade_batch(
        load_assignment("tls-server"), subs, out, on_intake=taken.append, classroom_prefix="tls-server-"
    )
    assert sorted(handed) == GRADED
    assert handed["Kim_Park_7"] == {"server.py": SERVER}  # the latest D2L submission
    assert handed["leeann_501"] == {"server.py": SERVER, "server.cnf": b"[req]\n"}
    assert handed["Jane_Doe_12345"] == {"server.py": SERVER}  # the file, not the online text
    refused = {r.student: r.refused for r in results if r.refused}
    assert sorted(refused) == sorted(REFUSED)
    for sid, why in REFUSED.items():
        assert why in refused[sid], (sid, refused[sid])
    rows = gradebook(out / "gradebook.csv")
    assert sorted(rows) == sorted([*GRADED, *REFUSED])  # one row per student, and one per refusal
    assert rows["roesam_502"]["late"] == "late" and rows["Kim_Park_7"]["submitted"] == "2025-10-11T20:45:00"
    (got,) = taken
    assert sorted(got.merged) == ["Jane_Doe_12345", "Kim_Park_7", "leeann_501"]
    assert got.renamed == {"index.html.zip": "index.html_student", "wiregrade.db.zip": "wiregrade.db_student"}
    # every child of SUBMISSIONS is accounted for: graded, merged, refused or the export's own
    own = {"index.html", "submission_metadata.yml"}
    for child in sorted(set(p.name for p in subs.iterdir()) - own):
        sid = ID_OF.get(child, child.split(".")[0])
        assert sid in handed or sid in refused, child
        if list(ID_OF.values()).count(sid) > 1:  # several entries, one student: each is named
            assert child in (got.merged[sid] if sid in got.merged else refused[sid]), child
    assert sorted(own) == sorted(f.split(" ")[0] for f in got.export_files)
    index = (out / "index.html").read_text()
    for why in REFUSED.values():
        assert why.split(":")[0] in index
    # the end of the run says the same (a resume: nothing is graded again)
    handed.clear()
    main(["grade", "tls-server", str(subs), "--out", str(out), "--classroom-prefix", "tls-server-"])
    said = capsys.readouterr().out
    assert handed == {}
    assert f"Refused ({len(REFUSED)}, in the gradebook with the reason):" in said
    assert "  Kim_Park_7: 202-7 - Kim Park - Oct 11, 2025 845 PM - server.py + 201-7 - Kim Park" in said
    assert "index.html (D2L Brightspace's list of submissions)" in said


@needs_tshark
@pytest.mark.slow
def test_a_reference_handed_in_through_d2l_and_canvas_earns_full_marks(
    exercises: Exercises, tmp_path: Path
) -> None:
    reference = exercises.submissions("tls-server") / "reference"
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "index.html").write_text("<html></html>")
    for i, f in enumerate(sorted(p for p in reference.iterdir() if p.is_file())):
        shutil.copyfile(f, subs / f"301-8 - Uma Rao - Nov 2, 2025 1101 PM - {f.name}")
        shutil.copyfile(f, subs / f"vosszoe_LATE_603_{i}_{f.name}")
    out = tmp_path / "out"
    assert main(["grade", "tls-server", str(subs), "--out", str(out), "--jobs", "2"]) == 0
    rows = gradebook(out / "gradebook.csv")
    assert {s: (r["score"], r["max"], r["late"]) for s, r in rows.items()} == {
        "Uma_Rao_8": ("25", "25", ""),
        "vosszoe_603": ("25", "25", "late"),
    }
    assert (out / "students" / "Uma_Rao_8" / "report.html").is_file()
