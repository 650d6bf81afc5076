"""`wiregrade feedback OUT --out DIR`: one zip per student of student-safe files only.

Every zip is unpacked and every byte searched for the hidden checks' ids, titles, texts and
tracebacks; instructor-only files never enter; a refused submission gets a note, not a crash.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from harness import cli
from harness._assignment import load_assignment
from harness._feedback import export_feedback, feedback_view, hidden_pieces, zip_name
from harness._outputs import write_outputs
from harness._results import (
    CheckResult,
    Environment,
    Evidence,
    Outcome,
    SubmissionResult,
    Visibility,
    blocked_words,
)
from harness._runner import STORE_NAME, grade_batch, student_dir
from harness._samples import materialize, samples_of
from harness._store import Store

INSTRUCTOR_ONLY = {"instructor.html", "session.json", "session.log", "capture.pcap", "keys.log"}

# Distinctive text of hidden checks (and a grader error quoting one): none may reach a student.
HIDDEN = {
    "id": "zebra-secret-check",
    "title": "Zebra secret title 9931",
    "expected": 'Expected zebra text 4471 <with markup & quotes">',
    "seen": "Seen zebra output 5512\nsecond zebra line 5513",
    "hint": "Hint zebra 6623: `chmod zebra`",
    "details": 'Traceback (most recent call last):\n  File "hidden_zebra.py", line 7734\nZebraError 7735',
    "evidence_title": "Zebra evidence title 8845",
    "evidence_data": "Zebra evidence bytes 9956",
    "frame": "Zebra frame payload 1067",
    "error": "Traceback zebra 2178 in hidden_zebra_check",
}
PUBLIC_SEEN = "your server printed public text 3141"


def hidden_check(n: int = 1, outcome: Outcome = Outcome.FAILED) -> CheckResult:
    return CheckResult(
        id=f"{HIDDEN['id']}-{n}",
        title=f"{HIDDEN['title']} #{n}",
        points=2,
        score=0 if outcome is not Outcome.PASSED else 2,
        outcome=outcome,
        visibility=Visibility.HIDDEN,
        expected=HIDDEN["expected"],
        seen=HIDDEN["seen"],
        hint=HIDDEN["hint"],
        details=HIDDEN["details"],
        evidence=(
            Evidence("text", HIDDEN["evidence_title"], HIDDEN["evidence_data"]),
            Evidence(
                "frames",
                "frames",
                [
                    {
                        "no": 1,
                        "time": "0.0",
                        "src": "127.0.0.1:4433",
                        "protocol": "TCP",
                        "length": 60,
                        "info": "data",
                        "payload": HIDDEN["frame"],
                        "plaintext": True,
                    }
                ],
            ),
        ),
    )


def public_check(outcome: Outcome = Outcome.FAILED) -> CheckResult:
    return CheckResult(
        id="serves-message",
        title="Serves its message",
        points=3,
        score=3 if outcome is Outcome.PASSED else 0,
        outcome=outcome,
        visibility=Visibility.PUBLIC,
        expected="the message over TLS",
        seen=PUBLIC_SEEN,
        hint="send the message after the handshake",
        details="Traceback: instructor-only public zebra 4252",  # tracebacks never go to students
    )


def graded(student: str, *checks: CheckResult, **kw: object) -> SubmissionResult:
    env = Environment(isolation="netns", wire="dumpcap", wire_detail="dumpcap", python="3.11")
    return SubmissionResult("tls-server", student, checks, environment=env, **kw)  # type: ignore[arg-type]


def make_out(out: Path, results: list[SubmissionResult]) -> None:
    """A batch's OUT as grading leaves it: the store, and each student's folder with the
    instructor-only files beside the student's (all holding hidden text)."""
    store = Store(out / STORE_NAME)
    for r in results:
        store.put(r, "files", "grader")
        folder = student_dir(out, r.student)
        write_outputs(r, folder)
        r.save(folder / "session.json")
        (folder / "session.log").write_text(HIDDEN["error"])
        (folder / "capture.pcap").write_bytes(HIDDEN["frame"].encode())
        (folder / "keys.log").write_text("CLIENT_TRAFFIC_SECRET_0 zebra")
    store.close()


def unzip_all(dest: Path) -> dict[str, dict[str, bytes]]:
    """zip name -> member -> bytes, for every zip under DEST."""
    got = {}
    for z in sorted(dest.rglob("*.zip")):
        with zipfile.ZipFile(z) as zf:
            got[z.name] = {name: zf.read(name) for name in zf.namelist()}
    return got


def hidden_texts(result: SubmissionResult) -> list[str]:
    """Every hidden id, title and text line of a full result, for a byte search."""
    found = set(hidden_pieces(result))
    found |= {c.id for c in result.checks if c.hidden} | {c.title for c in result.checks if c.hidden}
    return sorted(found)


def assert_nothing_hidden(zips: dict[str, dict[str, bytes]], texts: list[str]) -> None:
    assert zips, "no zip was written"
    for zname, members in zips.items():
        for name, data in members.items():
            assert name not in INSTRUCTOR_ONLY, f"{zname} holds {name}"
            low = (name.encode() + b"\n" + data).lower()
            for t in texts:
                for form in {t, t.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&#34;")}:
                    assert form.lower().encode() not in low, f"{zname}/{name} holds hidden text {t!r}"


def test_feedback_zips_hold_no_hidden_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, dest = tmp_path / "out", tmp_path / "feedback"
    alice = graded("alice", public_check(), hidden_check(1), hidden_check(2, Outcome.PASSED))
    bob = graded("bob", public_check(Outcome.PASSED), hidden_check(1, Outcome.TIMEOUT))
    rita = SubmissionResult(
        "tls-server", "rita", (), refused="rita.rar is a .rar archive, which wiregrade does not read"
    )
    make_out(out, [alice, bob, rita])
    assert (
        HIDDEN["title"].encode() in (student_dir(out, "alice") / "instructor.html").read_bytes()
    )  # there to leak

    assert cli.main(["feedback", str(out), "--out", str(dest)]) == cli.ExitCode.OK
    zips = unzip_all(dest)
    assert set(zips) == {"alice.zip", "bob.zip", "rita.zip"}
    assert_nothing_hidden(zips, [*HIDDEN.values(), *hidden_texts(alice), *hidden_texts(bob), "4252"])

    report = zips["alice.zip"]["report.html"].decode()
    assert PUBLIC_SEEN in report and "Hidden check 1" in report and "Hidden check 2" in report
    assert set(zips["alice.zip"]) == {"report.html", "results.json", "README.txt"}
    results = json.loads(zips["alice.zip"]["results.json"])
    assert results["score"] == 2  # hidden check 2 passed: its points count, its name does not show
    assert [t["name"] for t in results["tests"]] == ["Serves its message", "Hidden check 1", "Hidden check 2"]
    assert "capture" in zips["alice.zip"]["README.txt"].decode()  # says why the capture is left out
    assert set(zips["rita.zip"]) == {"README.txt"}
    assert ".rar archive" in zips["rita.zip"]["README.txt"].decode()
    said = capsys.readouterr().out
    assert "Wrote 3 feedback zips" in said and "rita" in said


def test_a_grader_error_is_exported_without_its_text_and_flagged(tmp_path: Path) -> None:
    out, dest = tmp_path / "out", tmp_path / "feedback"
    carl = graded("carl", public_check(), harness_error=HIDDEN["error"])
    make_out(out, [carl])
    assert cli.main(["feedback", str(out), "--out", str(dest)]) == cli.ExitCode.HARNESS_ERROR
    zips = unzip_all(dest)
    assert_nothing_hidden(zips, [HIDDEN["error"], "2178"])
    assert "re-run" in zips["carl.zip"]["README.txt"].decode()


def test_a_leak_in_rendering_withholds_the_zip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The search for hidden text is a second lock: if redaction ever misses something (here:
    hidden titles kept), that student's zip is not written and the export says so."""
    out, dest = tmp_path / "out", tmp_path / "feedback"
    make_out(out, [graded("alice", public_check(), hidden_check(1))])
    assert cli.main(["feedback", str(out), "--out", str(dest)]) == cli.ExitCode.OK
    assert (dest / "alice.zip").is_file()
    monkeypatch.setattr("harness._feedback.feedback_view", lambda r: r.for_student())
    assert cli.main(["feedback", str(out), "--out", str(dest)]) == cli.ExitCode.HARNESS_ERROR
    assert not list(dest.rglob("*.zip"))  # nor the earlier export's zip, which would pass for this one


def blocked_by_hidden(outcome: Outcome = Outcome.BLOCKED) -> CheckResult:
    """A public check that needs the hidden one, as the plugin records it (its text quotes the
    hidden title: ERROR when the grader failed on the need, BLOCKED when the student did)."""
    need = f"{HIDDEN['title']} #1"
    if outcome is Outcome.ERROR:
        seen, hint, by = f"The grader could not run this check: it needs what '{need}' checks.", "", ""
    else:
        seen, hint = blocked_words(need)
        by = f"{HIDDEN['id']}-1"
    return CheckResult(
        id=f"after-{outcome.value}",
        title=f"Public check waiting {outcome.value}",
        points=1,
        score=0,
        outcome=outcome,
        visibility=Visibility.PUBLIC,
        seen=seen,
        hint=hint,
        blocked_by=by,
    )


def test_a_public_check_blocked_by_a_hidden_one_names_it_anonymously(tmp_path: Path) -> None:
    out, dest = tmp_path / "out", tmp_path / "feedback"
    dana = graded(
        "dana",
        public_check(),
        hidden_check(1),
        blocked_by_hidden(),
        blocked_by_hidden(Outcome.ERROR),
        replace(hidden_check(2, Outcome.BLOCKED), blocked_by=f"{HIDDEN['id']}-1"),
    )
    make_out(out, [dana])
    assert cli.main(["feedback", str(out), "--out", str(dest)]) == cli.ExitCode.HARNESS_ERROR  # the ERROR
    zips = unzip_all(dest)
    assert set(zips) == {"dana.zip"}, "the zip was withheld"
    assert_nothing_hidden(zips, [*HIDDEN.values(), *hidden_texts(dana), "9931", "zebra"])
    view = {c.id: c for c in feedback_view(dana).checks}
    assert view["after-blocked"].blocked_by == "hidden-check-1"
    assert (
        "'Hidden check 1'" in view["after-blocked"].seen and "'Hidden check 1'" in view["after-blocked"].hint
    )
    assert "'Hidden check 1'" in view["after-error"].seen
    assert view["hidden-check-2"].blocked_by == "hidden-check-1"
    report = zips["dana.zip"]["report.html"].decode()
    assert 'href="#hidden-check-1"' in report


def test_a_hidden_title_quoted_by_a_public_check_is_caught_as_a_leak(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second lock: were the blocked check's text kept, the search finds the hidden title."""
    out, dest = tmp_path / "out", tmp_path / "feedback"
    make_out(out, [graded("dana", public_check(), hidden_check(1), blocked_by_hidden())])

    def titles_only(r: SubmissionResult) -> SubmissionResult:  # hidden checks renamed, nothing else
        checks, n = [], 0
        for c in r.for_student().checks:
            if c.hidden:
                n += 1
                c = replace(c, id=f"hidden-check-{n}", title=f"Hidden check {n}")
            checks.append(c)
        return replace(r.for_student(), checks=tuple(checks))

    monkeypatch.setattr("harness._feedback.feedback_view", titles_only)
    assert cli.main(["feedback", str(out), "--out", str(dest)]) == cli.ExitCode.HARNESS_ERROR
    assert not list(dest.rglob("*.zip"))


def test_without_a_store_it_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["feedback", str(tmp_path), "--out", str(tmp_path / "fb")]) == cli.ExitCode.USAGE
    assert "holds no wiregrade store" in capsys.readouterr().err


def test_a_destination_that_is_a_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    make_out(out, [graded("alice", public_check())])
    (tmp_path / "fb").write_text("not a folder")
    assert cli.main(["feedback", str(out), "--out", str(tmp_path / "fb")]) == cli.ExitCode.USAGE
    assert "could not write the feedback" in capsys.readouterr().err


def test_zip_names_are_the_student_ids() -> None:
    assert zip_name("Jane_Doe_12345") == "Jane_Doe_12345.zip"
    assert zip_name("../etc/passwd") == "etc_passwd.zip"


def test_several_assignments_each_get_a_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_out(out, [graded("alice", public_check())])
    store = Store(out / STORE_NAME)
    store.put(SubmissionResult("fernet", "alice", (public_check(),)), "f", "g")
    store.close()
    done = export_feedback(out, tmp_path / "fb")
    assert sorted(p.relative_to(tmp_path / "fb").as_posix() for p in done.zips.values()) == [
        "fernet/alice.zip",
        "tls-server/alice.zip",
    ]


@pytest.mark.slow
def test_a_graded_batch_exports_nothing_hidden(tmp_path: Path) -> None:
    """A real batch: the lecture's certificate fails a hidden check (key permissions)."""
    a = load_assignment("certificate")
    subs = tmp_path / "subs"
    for s in samples_of(a):
        if s.name in ("lecture", "reference"):
            materialize(s, subs / s.name)
    out, dest = tmp_path / "out", tmp_path / "feedback"
    results = {r.student: r for r in grade_batch(a, subs, out, jobs=2)}
    lecture = results["lecture"]
    failed_hidden = [c for c in lecture.checks if c.hidden and c.outcome is not Outcome.PASSED]
    assert failed_hidden and failed_hidden[0].hint, "the sample no longer fails a hidden check with a hint"
    assert failed_hidden[0].hint.encode() in (student_dir(out, "lecture") / "instructor.html").read_bytes()

    assert cli.main(["feedback", str(out), "--out", str(dest)]) == cli.ExitCode.OK
    zips = unzip_all(dest)
    assert set(zips) == {"lecture.zip", "reference.zip"}
    assert_nothing_hidden(zips, hidden_texts(lecture) + hidden_texts(results["reference"]))
    assert b"Hidden check 1" in zips["lecture.zip"]["report.html"]
