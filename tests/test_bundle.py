"""Students and CI: the starter bundle leaks nothing hidden, runs as its workflow would, and the
Gradescope autograder grades in Gradescope's layout."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness._assignment import assignment_ids, load_assignment
from harness._bundle import make_bundle, make_gradescope
from harness.cli import ExitCode, main
from tests.conftest import ROOT, Exercises, needs_openssh, needs_tshark


def public_text(assignment_id: str) -> str:
    """What is public anyway: the handout, the starter, the engine and the public grader files."""
    a = load_assignment(assignment_id)
    files = [p for p in a.handout_dir.iterdir() if p.is_file()]
    files += [p for p in (ROOT / "harness").rglob("*.py")]
    files += [
        p
        for pat in ("check_*.py", "support.py", "scenario.py", "conftest.py")
        for p in a.grader_dir.glob(pat)
    ]
    return "\n".join(p.read_text(errors="replace") for p in files)


def bundle_text(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def hidden_fragments(assignment_id: str) -> set[str]:
    """What must never reach a student: each hidden check's title, hint, expectation and code."""
    frags: set[str] = set()
    for f in (ROOT / "graders" / assignment_id).glob("hidden_*.py"):
        src = f.read_text()
        for node in ast.parse(src).body:
            if isinstance(node, ast.FunctionDef):
                for d in node.decorator_list:
                    if isinstance(d, ast.Call):
                        frags |= {
                            ast.literal_eval(k.value)
                            for k in d.keywords
                            if k.arg in ("title", "hint", "expected")
                        }
                body = ast.get_source_segment(src, node) or ""
                frags |= {ln.strip() for ln in body.splitlines()[1:] if len(ln.strip()) > 30}
    return {f for f in frags if isinstance(f, str) and f}


def solution_lines(assignment_id: str) -> set[str]:
    """Lines of the reference and the samples that the handout and starter do not contain."""
    a = load_assignment(assignment_id)
    given = set()
    for p in a.handout_dir.iterdir():
        if p.is_file():
            given |= {ln.strip() for ln in p.read_text(errors="replace").splitlines()}
    lines = set()
    for folder in (
        [a.reference_dir, *a.samples_dir.glob("*")] if a.samples_dir.is_dir() else [a.reference_dir]
    ):
        for p in folder.rglob("*"):
            if p.is_file() and p.name != "sample.toml":
                lines |= {
                    ln.strip() for ln in p.read_text(errors="replace").splitlines() if len(ln.strip()) > 30
                }
    return lines - given


@pytest.mark.parametrize("assignment", assignment_ids())
def test_bundle_holds_nothing_hidden_and_no_solution(assignment: str, tmp_path: Path) -> None:
    out = make_bundle(load_assignment(assignment), tmp_path / "bundle")
    names = [p.name for p in out.rglob("*")]
    assert not [n for n in names if n.startswith("hidden_")]
    assert "samples" not in names and "sample.toml" not in names
    text, public = bundle_text(out), public_text(assignment)
    secret = {f for f in hidden_fragments(assignment) if f not in public}
    assert secret, "no hidden-only content found to look for"
    assert sorted(f for f in secret if f in text) == []
    solution = {ln for ln in solution_lines(assignment) if ln not in public}
    assert solution, "no solution-only line found to look for"
    assert sorted(ln for ln in solution if ln in text) == []


def test_a_hidden_check_in_a_public_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_plugin import make_project

    make_project(
        tmp_path / "p",
        "from harness import check\n\n@check(title='t', points=10, visibility='hidden')\n"
        "def test_x():\n    pass\n",
    )
    monkeypatch.setenv("WIREGRADE_HOME", str(tmp_path / "p"))
    (tmp_path / "s").mkdir()
    from harness._runner import run_session

    r = run_session(load_assignment("boom"), tmp_path / "s", tmp_path / "out", "s")
    assert "a hidden check must live in a hidden_*.py file" in r.harness_error


@needs_tshark
@pytest.mark.slow
@pytest.mark.parametrize(
    "assignment", ["tls-server", "fernet", pytest.param("ssh-tunnel", marks=needs_openssh)]
)
def test_gradescope_autograder_grades_the_reference_in_gradescopes_layout(
    assignment: str, exercises: Exercises, tmp_path: Path
) -> None:
    a = load_assignment(assignment)
    zip_path = make_gradescope(a, tmp_path / "autograder.zip", tmp_path / "stage")
    root = tmp_path / "autograder"  # what Gradescope makes: source/, submission/, results/
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(root / "source")
        assert (zf.getinfo("run_autograder").external_attr >> 16) & 0o111
    assert "openssh-server openssh-client" in (root / "source" / "setup.sh").read_text()  # ssh-tunnel's sshd
    shutil.copyfile(root / "source" / "run_autograder", root / "run_autograder")
    shutil.copytree(exercises.submissions(assignment) / "reference", root / "submission")
    wiregrade = Path(sys.executable).parent / "wiregrade"
    run = subprocess.run(
        ["bash", str(root / "run_autograder")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "AUTOGRADER_ROOT": str(root), "WIREGRADE": str(wiregrade)},
        check=False,
    )
    assert run.returncode == 0, run.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == a.total_points
    hidden = [t for t in results["tests"] if t["visibility"] == "after_published"]
    assert sum(t["max_score"] for t in hidden) == a.hidden_points and all(t["output"] == "" for t in hidden)
    assert [t["number"] for t in results["tests"]] == [str(i) for i in range(1, len(results["tests"]) + 1)]
    assert all(
        len(t["tags"]) == 1 and re.fullmatch(r"[a-z][a-z0-9-]*", t["tags"][0]) for t in results["tests"]
    )
    public = a.total_points - a.hidden_points
    assert f"Public checks: {public:g}/{public:g}" in results["output"]  # the total is hidden until published


GRADER_BUG = """

import pytest as _pytest


@_pytest.fixture(autouse=True)
def _a_grader_bug():
    raise RuntimeError("a bug in the grader, not in the student's work")
"""


@needs_tshark
@pytest.mark.slow
def test_a_grader_error_on_gradescope_records_no_score(exercises: Exercises, tmp_path: Path) -> None:
    a = load_assignment("tls-server")
    zip_path = make_gradescope(a, tmp_path / "autograder.zip", tmp_path / "stage")
    root = tmp_path / "autograder"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(root / "source")
    conftest = root / "source" / "wiregrade" / "graders" / a.id / "conftest.py"
    conftest.write_text(conftest.read_text() + GRADER_BUG)
    shutil.copytree(exercises.submissions(a.id) / "reference", root / "submission")
    run = subprocess.run(
        ["bash", str(root / "source" / "run_autograder")],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "AUTOGRADER_ROOT": str(root),
            "WIREGRADE": str(Path(sys.executable).parent / "wiregrade"),
        },
        check=False,
    )
    assert run.returncode != 0
    assert "grader error: re-run" in run.stdout and "No score was recorded" in run.stdout
    # No results.json: Gradescope shows the run as failed, never a score of checks that never ran.
    assert not (root / "results" / "results.json").exists()


def test_step_summary_for_github(
    exercises: Exercises, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code = main(
        [
            "check",
            "tls-server",
            str(exercises.submissions("tls-server") / "lecture"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == ExitCode.CHECKS_FAILED
    text = summary.read_text()
    assert "16/20 on 8 public checks" in text
    assert "| ❌ | Ends the session with close_notify | failed | 0/2 |" in text
    assert "### ❌ Ends the session with close_notify (failed)\n\n```text\n" in text  # fenced
    assert "unwrap()" in text
