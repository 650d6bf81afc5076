"""The command line, in-process and as `python -m harness`, as students and instructors use it."""

from __future__ import annotations

import csv
import io
import json
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from harness._results import Outcome
from harness.cli import ExitCode, main
from tests.conftest import ROOT, Exercises, check_as_nobody, needs_tshark


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == ExitCode.OK
    assert "tls-server" in capsys.readouterr().out


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "no-such-exercise", str(tmp_path)]) == ExitCode.USAGE
    assert "no exercise 'no-such-exercise'" in capsys.readouterr().err
    assert main(["check", "tls-server", str(tmp_path / "missing")]) == ExitCode.USAGE
    assert main(["frobnicate"]) == ExitCode.USAGE


def test_python_dash_m() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "harness", "list"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0 and "tls-server" in run.stdout


@needs_tshark
@pytest.mark.slow
def test_self_check_of_the_reference_passes_public_checks_only(
    tls_server_submissions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["check", "tls-server", str(tls_server_submissions / "reference"), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == ExitCode.OK
    assert "All public checks passed." in out and "All checks passed" not in out
    assert "20/20 on 8 public checks" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert {t["visibility"] for t in results["tests"]} == {"visible"}
    assert (tmp_path / "report.html").is_file() and (tmp_path / "junit.xml").is_file()
    assert "\033[" not in out  # no colour codes when not at a terminal


@needs_tshark
@pytest.mark.slow
def test_self_check_of_the_lecture_fails_with_hints(
    tls_server_submissions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["check", "tls-server", str(tls_server_submissions / "lecture"), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == ExitCode.CHECKS_FAILED
    assert "FAIL  Ends the session with close_notify" in out
    assert "Hint: Call ssl_sock.unwrap()" in out
    assert "16/20" in out


@needs_tshark
@pytest.mark.slow
def test_grade_a_folder_with_a_hostile_zip(tls_server_submissions: Path, tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copytree(tls_server_submissions / "reference", subs / "alice")
    with zipfile.ZipFile(subs / "mallory.zip", "w") as zf:
        zf.writestr("../../evil.py", "print('escaped')")
    with zipfile.ZipFile(subs / "bob.zip", "w") as zf:  # one wrapping folder, flattened
        for f in (tls_server_submissions / "lecture").iterdir():
            zf.write(f, f"bob-submission/{f.name}")
    out = tmp_path / "out"
    assert main(["grade", "tls-server", str(subs), "--out", str(out), "--jobs", "2"]) == ExitCode.OK
    assert not (tmp_path / "evil.py").exists()
    with open(out / "gradebook.csv") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert rows["alice"]["score"] == "25" and rows["alice"]["status"] == "graded"
    assert rows["bob"]["score"] == "18"
    assert rows["mallory"]["status"] == "submission refused"
    assert "unsafe path" in json.loads((out / "students/mallory/results.json").read_text())["output"]
    index = (out / "index.html").read_text()
    assert "Ends the session with close_notify" in index and "students/alice/report.html" in index


@needs_tshark
@pytest.mark.slow
@pytest.mark.parametrize(
    ("exercise", "folder", "score", "code"),
    [
        ("tls-server", "lecture", "16/20", ExitCode.CHECKS_FAILED),
        # the grader makes this one's capture itself: a user namespace lets dumpcap run without root
        ("plaintext-http", "reference", "19/19", ExitCode.OK),
    ],
)
def test_a_student_without_root_gets_a_result(
    exercises: Exercises,
    request: pytest.FixtureRequest,
    exercise: str,
    folder: str,
    score: str,
    code: ExitCode,
) -> None:
    run, _ = check_as_nobody(request, exercises.submissions(exercise) / folder, exercise)
    assert run.returncode == code, run.stdout + run.stderr
    assert score in run.stdout
    # as an ordinary user: a user namespace (capture) or, where forbidden, the relay
    assert "Network: a private network namespace" in run.stdout or "free ports" in run.stdout
    assert "Traffic seen by: " in run.stdout
    print(run.stdout)


def test_check_in_a_folder_without_the_program_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)  # a student at a prompt, not a CI run
    (tmp_path / "notes.txt").write_text("not a submission")
    assert main(["check", "tls-server", str(tmp_path)]) == ExitCode.USAGE
    out, err = capsys.readouterr()
    assert err == f"wiregrade: no server.py in {tmp_path}: is this your submission folder?\n"
    assert out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing created there
    assert main(["check", "fernet", str(tmp_path)]) == ExitCode.USAGE  # several programs: all named
    assert "no fernet_tool.py, echo_server.py or echo_client.py in" in capsys.readouterr().err


def test_an_autograder_grades_a_folder_without_the_program_and_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "serveur.py").write_text("print('misnamed')")
    code = main(["check", "tls-server", str(tmp_path / "sub"), "--all", "--out", str(tmp_path / "out")])
    assert code == ExitCode.CHECKS_FAILED, capsys.readouterr()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "server.py is not in your submission (it holds: serveur.py)" in results["tests"][0]["output"]


def test_terminal_lines_wrap_to_the_width_with_a_hanging_indent() -> None:
    from harness._results import Outcome
    from harness._terminal import Style, check_line, wrapped

    text = "Hint: " + "call ssl_sock.unwrap() before closing the socket " * 4
    lines = wrapped(text, 8, 60)
    assert len(lines) > 1 and all(len(x) <= 60 for x in lines)
    assert lines[0].startswith(" " * 8 + "Hint: call")
    assert all(x.startswith(" " * 14) and x[14] != " " for x in lines[1:])  # under the hint's words
    title = "A very long check title that cannot fit on one line of a narrow terminal at all"
    shown = check_line(title, Outcome.FAILED, 0, 2, Style(None), 50).splitlines()
    assert len(shown) > 1 and all(len(x) <= 50 for x in shown)
    assert shown[0].startswith("  FAIL  A very") and shown[-1].rstrip().endswith("0/2")
    assert all(x.startswith(" " * 8) for x in shown[1:])


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["--seed", "week3"], "week3"),
        ([], "practice"),
        (["--seed", "../x y"], "x-y"),
        (["--student", "ana"], "ana"),
    ],
)
def test_capture_names_its_files_by_the_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], name: str
) -> None:
    from harness import cli

    made: list[list[str]] = []

    def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        made.append(cmd)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(cli.subprocess, "run", run)
    monkeypatch.setenv("WIREGRADE_CAPTURE_SECRET", "s3cret")
    assert main(["capture", "plaintext-http", *argv, "--out", str(tmp_path)]) == ExitCode.OK
    assert made[-1][made[-1].index("--name") + 1] == name


def _grade(subs: Path, out: Path, capsys: pytest.CaptureFixture[str], *more: str) -> tuple[int, str, str]:
    code = main(["grade", "tls-server", str(subs), "--out", str(out), "--jobs", "1", *more])
    got = capsys.readouterr()
    return code, got.out, got.err


def test_grade_says_when_there_is_nothing_to_grade(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    code, _, err = _grade(subs, tmp_path / "out", capsys)
    assert code == ExitCode.USAGE and f"{subs} is empty: no submissions to grade" in err
    (subs / ".DS_Store").write_text("")
    code, out, err = _grade(subs, tmp_path / "out", capsys)
    assert (
        code == ExitCode.USAGE
        and "holds no submissions, only entries that are never graded: .DS_Store" in err
    )
    assert "Skipped (1;" in out and "  .DS_Store" in out
    (subs / "notes.txt").write_text("stray")
    (subs / "marks.csv").write_text("stray")
    code, out, err = _grade(subs, tmp_path / "out", capsys)
    assert code == ExitCode.USAGE and "nothing in" in err and "each of its 2 entries was refused" in err
    assert "notes.txt: notes.txt is a file, not a submission" in out


def test_grade_only_naming_nobody_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subs = tmp_path / "subs"
    (subs / "alice").mkdir(parents=True)
    (subs / "bob").mkdir()
    code, _, err = _grade(subs, tmp_path / "out", capsys, "--only", "zed")
    assert code == ExitCode.USAGE
    assert f"--only zed: no such student in {subs} (students there: alice, bob)" in err


@needs_tshark
@pytest.mark.slow
def test_grade_says_when_all_is_graded_already(
    tls_server_submissions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copytree(tls_server_submissions / "reference", subs / "alice")
    code, out, _ = _grade(subs, tmp_path / "out", capsys)
    assert code == ExitCode.OK and "Graded 1 submissions into" in out
    code, out, _ = _grade(subs, tmp_path / "out", capsys)
    assert code == ExitCode.OK
    assert "Nothing to do: the 1 submissions in" in out and "--force grades them all again" in out


@needs_tshark
@pytest.mark.slow
def test_ctrl_c_stops_a_batch_at_once(tls_server_submissions: Path, tmp_path: Path) -> None:
    from harness._runner import student_dir
    from tests.conftest import own_session_processes

    subs, out = tmp_path / "subs", tmp_path / "out"
    names = ["a-reference", "b-lecture", "c-plaintext"]
    for name in names:
        shutil.copytree(tls_server_submissions / name.split("-", 1)[1], subs / name)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "grade", "tls-server", str(subs), "--out", str(out), "--jobs", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # the first submission graded: the second is running, the third waits
        if " 1/3 " in line:
            proc.send_signal(signal.SIGINT)
            break
    assert proc.wait(60) == 130
    err = proc.stderr.read()
    assert "Traceback" not in err and "wiregrade: interrupted (Ctrl-C)" in err
    started = [n for n in names if (student_dir(out, n) / "session.log").exists()]
    assert len(started) <= 2, started  # what had not started never started
    deadline = time.monotonic() + 10
    while own_session_processes() and time.monotonic() < deadline:
        time.sleep(0.05)  # polling /proc for what the sessions left, bounded
    assert own_session_processes() == []


def test_a_blocked_check_has_its_own_mark_in_the_terminal() -> None:
    from harness._terminal import Style, check_line

    line = check_line("Second client", Outcome.BLOCKED, 0, 3, Style(io.StringIO()), 100)
    assert line.startswith("  BLKD  Second client") and line.endswith("0/3")
