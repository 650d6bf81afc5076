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
import venv
import zipfile
from pathlib import Path

import pytest

from harness._assignment import assignment_ids, load_assignment
from harness._bundle import make_bundle, make_gradescope
from harness.cli import ExitCode, main
from tests.conftest import ROOT, Exercises, needs_tshark


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


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with wiregrade installed from a bundle, as the workflow does."""
    where = tmp_path_factory.mktemp("venv") / "v"
    venv.create(where, with_pip=True)
    bundle = make_bundle(load_assignment("tls-server"), tmp_path_factory.mktemp("b") / "bundle")
    run = subprocess.run(
        [
            str(where / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            str(bundle / ".wiregrade"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return where


def workflow_commands(bundle: Path) -> list[tuple[str, float]]:
    """The (command, max-score) of each per-check step of the bundle's workflow."""
    wf = (bundle / ".github/workflows/wiregrade.yml").read_text()
    return [
        (c, float(m)) for c, m in re.findall(r"command: (.+)\n\s+timeout: \d+\n\s+max-score: ([\d.]+)", wf)
    ]


@needs_tshark
@pytest.mark.slow
@pytest.mark.parametrize("assignment", assignment_ids())
def test_bundle_runs_as_its_workflow_would(
    assignment: str, fresh_venv: Path, exercises: Exercises, tmp_path: Path
) -> None:
    a = load_assignment(assignment)
    repo = make_bundle(a, tmp_path / "repo")  # "pushed to an empty folder"
    env = {
        "PATH": f"{fresh_venv / 'bin'}:{os.environ['PATH']}",
        "WIREGRADE_HOME": ".wiregrade",
        "HOME": str(tmp_path),
        "CI": "true",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
    }

    def self_check() -> tuple[int, float]:
        run = subprocess.run(
            ["wiregrade", "check", assignment, ".", "--out", ".wiregrade-report"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert "\033[" not in run.stdout
        points = 0.0
        for command, max_score in workflow_commands(repo):
            step = subprocess.run(
                command.split(), cwd=repo, env=env, capture_output=True, timeout=60, check=False
            )
            points += max_score if step.returncode == 0 else 0
        return run.returncode, points

    code, points = self_check()
    assert code == ExitCode.CHECKS_FAILED and points < a.total_points - a.hidden_points
    reference = exercises.submissions(assignment) / "reference"
    for f in reference.iterdir():
        if f.is_file():
            shutil.copy2(f, repo / f.name)
    code, points = self_check()
    assert code == ExitCode.OK
    assert points == a.total_points - a.hidden_points
    summary = (tmp_path / "summary.md").read_text()
    assert f"## wiregrade: {assignment}" in summary and "✅" in summary


@needs_tshark
@pytest.mark.slow
@pytest.mark.parametrize("assignment", ["tls-server", "fernet"])
def test_gradescope_autograder_grades_the_reference_in_gradescopes_layout(
    assignment: str, exercises: Exercises, tmp_path: Path
) -> None:
    a = load_assignment(assignment)
    zip_path = make_gradescope(a, tmp_path / "autograder.zip", tmp_path / "stage")
    root = tmp_path / "autograder"  # what Gradescope makes: source/, submission/, results/
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(root / "source")
        assert (zf.getinfo("run_autograder").external_attr >> 16) & 0o111
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
    assert "| ❌ | Ends the session with close_notify | 0/2 |" in text
    assert "unwrap()" in text
