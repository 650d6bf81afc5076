"""A student's repository as GitHub Classroom runs it: the bundle pushed to an origin, the
reference committed as a student would, a fresh checkout, and each step of the bundle's own
workflow run as GitHub runs it (``run:`` steps with bash and the step's env; Classroom's
command grader and reporter as their sources do). And the README's commands, run literally."""

from __future__ import annotations

import base64
import enum
import json
import os
import re
import shutil
import subprocess
import venv
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from harness._assignment import Assignment, assignment_ids, load_assignment
from harness._bundle import make_bundle
from harness._classroom import JOB, REPORT_DIR, REPORT_RUNNER, markdown_summary, public_checks
from harness._outputs import gradescope, gradescope_test_html
from harness._results import CheckResult, Evidence, Outcome, SubmissionResult, Visibility
from harness.cli import ExitCode, main
from tests.conftest import ROOT, Exercises, needs_tshark

WORKFLOW = ".github/workflows/classroom.yml"
TOOLS_STEP = "Install the tools wiregrade drives"  # apt-get: this machine has them already
# What autograding-command-grader hands its command: nothing of the step's environment else.
GRADER_ENV = ("PATH", "HOME")


def git(*args: str, cwd: Path) -> str:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "A Student",
        "GIT_AUTHOR_EMAIL": "student@example.invalid",
        "GIT_COMMITTER_NAME": "A Student",
        "GIT_COMMITTER_EMAIL": "student@example.invalid",
    }
    run = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, f"git {' '.join(args)}: {run.stderr}"
    return run.stdout


def classroom_repository(a: Assignment, tmp: Path, work: Path | None) -> tuple[Path, Path]:
    """Classroom's copy of the bundle (a bare origin) and the student's clone, with ``work``'s
    files committed by ``git add -A`` and pushed. Returns (origin, the student's clone)."""
    starter = make_bundle(a, tmp / "starter")
    git("init", "-q", cwd=starter)
    git("add", "-A", cwd=starter)
    git("commit", "-q", "-m", "Initial commit (GitHub Classroom)", cwd=starter)
    origin = tmp / "origin.git"
    git("clone", "-q", "--bare", str(starter), str(origin), cwd=tmp)
    mine = tmp / "mine"
    git("clone", "-q", str(origin), str(mine), cwd=tmp)
    if work is not None:
        for f in work.iterdir():
            if f.is_file():
                shutil.copy2(f, mine / f.name)
        git("add", "-A", cwd=mine)
        git("commit", "-q", "-m", "My solution", cwd=mine)
        git("push", "-q", "origin", "HEAD", cwd=mine)
    return origin, mine


@dataclass
class Run:
    """What a workflow run came to, as GitHub and Classroom would show it."""

    ran: list[str] = field(default_factory=list)
    failed: str = ""  # the step that failed the job
    log: str = ""
    points: float | None = None  # what the reporter sent to Classroom (None: it never ran)
    max_points: float = 0.0
    artifacts: list[Path] = field(default_factory=list)


def command_grader(step: dict, workspace: Path, env: dict[str, str]) -> tuple[str, str]:  # type: ignore[type-arg]
    """autograding-command-grader: execSync(command) with PATH and HOME only; exit 0 passes."""
    w = step["with"]
    grader_env = {k: env[k] for k in GRADER_ENV} | {"FORCE_COLOR": "true"}
    try:
        run = subprocess.run(
            ["/bin/sh", "-c", w["command"]],
            cwd=workspace,
            env=grader_env,
            capture_output=True,
            text=True,
            timeout=float(w.get("timeout", 10)) * 60,
            check=False,
        )
        status, log = ("pass" if run.returncode == 0 else "fail"), run.stdout + run.stderr
    except subprocess.TimeoutExpired:
        status, log = "error", "Command timed out"
    score = float(w.get("max-score", 0))
    result = {
        "version": 1,
        "status": status,
        "max_score": score,
        "tests": [{"name": w["test-name"], "status": status, "score": score if status == "pass" else 0}],
    }
    return base64.b64encode(json.dumps(result).encode()).decode(), log


def run_workflow(origin: Path, workspace: Path, python_bin: Path, tmp: Path) -> Run:
    """The bundle's workflow, run step by step as GitHub runs it on a push."""
    git("clone", "-q", str(origin), str(workspace), cwd=tmp)
    wf = yaml.safe_load((workspace / WORKFLOW).read_text())
    assert {"push", "repository_dispatch"} <= set(wf["on"])
    job = wf["jobs"][JOB]  # the reporter finds its check run by this job name
    assert job["if"] == "github.actor != 'github-classroom[bot]'"
    summary = tmp / "step-summary.md"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp / "home"),
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    (tmp / "home").mkdir(exist_ok=True)
    outputs: dict[str, str] = {}
    run = Run()
    for step in job["steps"]:
        name = step.get("name") or step.get("uses", "")
        if run.failed and step.get("if") != "always()":
            continue
        run.ran.append(name)
        uses = step.get("uses", "")
        if uses.startswith("actions/checkout@"):
            continue  # the clone above
        if uses.startswith("actions/setup-python@"):
            env["PATH"] = f"{python_bin}:{env['PATH']}"
        elif uses.startswith("actions/upload-artifact@"):
            run.artifacts += [p for p in workspace.glob(step["with"]["path"]) if p.is_file()]
        elif uses.startswith("classroom-resources/autograding-command-grader@"):
            outputs[step["id"]], log = command_grader(step, workspace, env)
            run.log += log
        elif uses.startswith("classroom-resources/autograding-grading-reporter@"):
            runners = step["with"]["runners"].split(",")
            run.points = 0.0
            for r in runners:
                assert REPORT_RUNNER.match(r), r
                assert step["env"][f"{r.upper()}_RESULTS"] == f"${{{{steps.{r}.outputs.result}}}}"
                result = json.loads(base64.b64decode(outputs[r]))
                run.points += sum(t["score"] for t in result["tests"])
                run.max_points += result["max_score"]
        elif "run" in step and name == TOOLS_STEP:
            assert all(shutil.which(t) for t in ("tshark", "dumpcap", "openssl", "bwrap"))
        elif "run" in step:
            proc = subprocess.run(
                ["bash", "-e", "-c", step["run"]],
                cwd=workspace,
                env={**env, **step.get("env", {})},
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            run.log += proc.stdout + proc.stderr
            if proc.returncode != 0:
                run.failed = name
        else:
            raise AssertionError(f"a step this test cannot run as GitHub would: {step}")
    run.log += summary.read_text() if summary.exists() else ""
    return run


@pytest.fixture(scope="module")
def setup_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What actions/setup-python gives: a Python on PATH with pip and nothing of wiregrade."""
    where = tmp_path_factory.mktemp("setup-python") / "py"
    venv.create(where, with_pip=True)
    return where / "bin"


@pytest.mark.parametrize("assignment", assignment_ids())
def test_the_workflow_is_classrooms_own(assignment: str, tmp_path: Path) -> None:
    a = load_assignment(assignment)
    repo = make_bundle(a, tmp_path / "repo")
    text = (repo / WORKFLOW).read_text()
    wf = yaml.safe_load(text)
    assert wf["on"] == ["push", "workflow_dispatch", "repository_dispatch"]
    job = wf["jobs"][JOB]
    assert job["if"] == "github.actor != 'github-classroom[bot]'"
    command = "classroom-resources/autograding-command-grader@"
    graders = [s for s in job["steps"] if s.get("uses", "").startswith(command)]
    assert [s["with"]["test-name"] for s in graders] == [c.title for c in public_checks(a)]
    assert sum(float(s["with"]["max-score"]) for s in graders) == a.total_points - a.hidden_points
    reporter = job["steps"][-1]
    assert reporter["uses"].startswith("classroom-resources/autograding-grading-reporter@")
    assert reporter["with"]["runners"].split(",") == [s["id"] for s in graders]
    assert "|| true" not in text  # a grader error must not pass as a student's zero


@pytest.mark.parametrize("assignment", assignment_ids())
def test_what_the_handout_asks_for_is_what_git_keeps(
    assignment: str, exercises: Exercises, tmp_path: Path
) -> None:
    a = load_assignment(assignment)
    reference = exercises.submissions(assignment) / "reference"
    origin, mine = classroom_repository(a, tmp_path, reference)
    kept = set(git("ls-files", cwd=mine).split())
    made = {f.name for f in reference.iterdir() if f.is_file()}
    assert made - kept == set(), "committed with git add -A but left out by .gitignore"
    assert git("status", "--porcelain", "--ignored", cwd=mine) == ""


@needs_tshark
@pytest.mark.slow
@pytest.mark.parametrize("assignment", assignment_ids())
def test_the_workflow_gives_the_reference_full_public_marks(
    assignment: str, setup_python: Path, exercises: Exercises, tmp_path: Path
) -> None:
    a = load_assignment(assignment)
    origin, _ = classroom_repository(a, tmp_path, exercises.submissions(assignment) / "reference")
    workspace = tmp_path / "workspace"
    run = run_workflow(origin, workspace, setup_python, tmp_path)
    assert not run.failed, run.log[-3000:]
    assert run.points == a.total_points - a.hidden_points == run.max_points, run.log[-3000:]
    assert run.artifacts == [workspace / REPORT_DIR / "report.html"]
    assert git("status", "--porcelain", cwd=workspace) == "", "the run left files git would commit"
    assert f"## wiregrade: {assignment}" in run.log and "| ✅ |" in run.log


GRADER_BUG = """

@pytest.fixture(autouse=True)
def _a_grader_bug():
    raise RuntimeError("a bug in the grader, not in the student's work")
"""


@needs_tshark
@pytest.mark.slow
def test_a_grader_error_fails_the_workflow_and_reports_no_points(
    setup_python: Path, exercises: Exercises, tmp_path: Path
) -> None:
    a = load_assignment("tls-server")
    origin, mine = classroom_repository(a, tmp_path, exercises.submissions("tls-server") / "reference")
    conftest = mine / ".wiregrade" / "graders" / a.id / "conftest.py"
    text = conftest.read_text()
    conftest.write_text(("import pytest\n" if "import pytest" not in text else "") + text + GRADER_BUG)
    git("commit", "-q", "-am", "the engine breaks", cwd=mine)
    git("push", "-q", "origin", "HEAD", cwd=mine)
    run = run_workflow(origin, tmp_path / "workspace", setup_python, tmp_path)
    assert run.failed == "Self-check (public checks)"
    assert "::error title=grader error: re-run::" in run.log
    assert run.points is None, "a grader error must report no points, never a zero"
    assert "Upload the report" in run.ran  # the report still says what happened


def readme_commands(readme: str) -> list[str]:
    """The first fenced block of the README's self-check section, comments dropped."""
    section = readme[readme.index("## Self-check") :]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S)
    assert block is not None, "no commands in the README's self-check section"
    return [ln.split("#")[0].strip() for ln in block.group(1).splitlines() if ln.split("#")[0].strip()]


@pytest.mark.parametrize("assignment", assignment_ids())
def test_every_bundle_readme_gives_the_install_commands(assignment: str, tmp_path: Path) -> None:
    repo = make_bundle(load_assignment(assignment), tmp_path / "repo")
    commands = readme_commands((repo / "README.md").read_text())
    assert commands[0].startswith("python3 -m venv ")
    assert any("pip install ./.wiregrade" in c for c in commands)
    assert commands[-1].endswith(f"wiregrade check {assignment} .")
    text = (repo / "README.md").read_text()
    assert "WIREGRADE_HOME" not in text
    handout = (load_assignment(assignment).handout_dir / "README.md").read_text()
    if "## Self-check" in handout:  # what the handout says of its self-check stays, its commands go
        own = re.sub(
            r"```.*?```", "", handout[handout.index("## Self-check") :].split("\n## ")[0], flags=re.S
        )
        said = [ln for ln in own.splitlines()[2:] if ln.strip() and "/path/to/wiregrade" not in ln]
        assert [ln for ln in said if ln not in text] == []
        assert "/path/to/wiregrade" not in text


@needs_tshark
@pytest.mark.slow
def test_the_readme_commands_work_as_written(exercises: Exercises, tmp_path: Path) -> None:
    a = load_assignment("tls-server")
    _, mine = classroom_repository(a, tmp_path, exercises.submissions("tls-server") / "reference")
    env = {
        "PATH": os.environ["PATH"].replace(str(Path(__file__).parents[1] / ".venv" / "bin"), "/nonexistent"),
        "HOME": str(tmp_path),
    }
    run = None
    for command in readme_commands((mine / "README.md").read_text()):
        run = subprocess.run(
            ["bash", "-c", command],
            cwd=mine,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert run.returncode == 0, f"{command}: {run.stdout[-2000:]}{run.stderr[-2000:]}"
    assert run is not None and "All public checks passed." in run.stdout
    assert (mine / REPORT_DIR / "report.html").is_file()
    assert not (mine / ".wiregrade" / "report.html").exists()
    assert git("status", "--porcelain", cwd=mine) == "", "the self-check left files git would commit"


# --- what a run shows --------------------------------------------------------------------------

FRAMES = [
    {
        "no": 4,
        "time": "0.001",
        "src": "client",
        "protocol": "TCP",
        "length": 80,
        "info": "GET | x",
        "payload": "secret `here`",
        "plaintext": True,
    },
]


def shown(outcome: object, **kw: object) -> SubmissionResult:
    checks = (
        CheckResult("a", "First | one", 2, 2, Outcome.PASSED, Visibility.PUBLIC),
        CheckResult(
            "b",
            "Second",
            3,
            0,
            outcome,
            Visibility.PUBLIC,  # type: ignore[arg-type]
            seen="it printed ``` and went on",
            hint="Try this.",
            evidence=(Evidence("frames", "What an eavesdropper saw", FRAMES),),
            **kw,  # type: ignore[arg-type]
        ),
        CheckResult("c", "Secret", 5, 0, Outcome.FAILED, Visibility.HIDDEN, seen="HIDDEN-DETAIL"),
    )
    return SubmissionResult("tls-server", "s", checks, visibility="all")


def test_the_step_summary_tables_checks_fences_failures_and_shows_frames() -> None:
    text = markdown_summary(shown(Outcome.FAILED))
    assert "| ✅ | First \\| one | passed | 2/2 |" in text
    assert "| ❌ | Second | failed | 0/3 |" in text
    assert "````text\nit printed ``` and went on" in text  # a fence the student's output cannot close
    assert "| 4 🔴 | 0.001 | client | TCP | 80 | GET \\| x | `secret 'here'` |" in text
    assert "HIDDEN-DETAIL" not in text and "| Secret | failed | 0/5 |" in text


def test_a_status_the_summary_does_not_know_shows_as_its_own_word() -> None:
    blocked = enum.Enum("Later", {"BLOCKED": "blocked"})  # as a status added later would be
    text = markdown_summary(shown(blocked.BLOCKED))
    assert "| ⛔ | Second | blocked | 0/3 |" in text and "### ⛔ Second (blocked)" in text
    html = gradescope_test_html(shown(blocked.BLOCKED).checks[1])
    assert "<strong>blocked</strong>" in html


def test_a_blocked_check_is_collapsed_in_the_step_summary_not_told_as_a_failure() -> None:
    text = markdown_summary(shown(Outcome.BLOCKED, blocked_by="a"))
    assert "| ⛔ | Second | blocked | 0/3 |" in text
    assert "### ⛔ Second" not in text and "it printed" not in text  # no fenced failure of its own
    assert "<details><summary>1 check(s) could not run (blocked)</summary>" in text
    assert "- Second: blocked by `a`" in text


def test_gradescope_shows_each_public_check_with_its_evidence_in_html() -> None:
    gs = gradescope(shown(Outcome.FAILED))
    tests = gs["tests"]
    assert [t["number"] for t in tests] == ["1", "2", "3"] and [t["tags"] for t in tests] == [
        ["a"],
        ["b"],
        ["c"],
    ]
    assert tests[1]["output_format"] == "html" and "secret `here`" in tests[1]["output"]
    assert '<tr style="color:#b00">' in tests[1]["output"] and "GET | x" in tests[1]["output"]
    assert tests[2]["visibility"] == "after_published" and tests[2]["output"] == ""
    assert "Public checks: 2/5 on 2 checks." in gs["output"] and "HIDDEN-DETAIL" not in json.dumps(gs)


def test_a_grader_error_says_so_at_the_top_on_gradescope() -> None:
    gs = gradescope(shown(Outcome.ERROR))
    assert gs["output"].startswith("GRADER ERROR: re-run.")
    assert gs["tests"][1]["name"] == "[grader error] Second" and gs["extra_data"] == {"grader_error": True}


# --- which engine a self-check uses ------------------------------------------------------------


def test_a_self_check_uses_the_repositorys_own_checks_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One venv, several exercises: the checks in DIR/.wiregrade, whatever engine is installed."""
    from tests.test_plugin import make_project

    repo = tmp_path / "repo"
    make_project(
        repo / ".wiregrade",
        "from harness import check\n\n@check(title='t', points=10)\ndef test_x():\n    pass\n",
    )
    monkeypatch.setenv("WIREGRADE_HOME", str(ROOT))  # an engine without this exercise
    assert main(["check", "boom", str(repo)]) == ExitCode.OK
    assert (repo / REPORT_DIR / "report.html").is_file() and not (
        repo / ".wiregrade" / "report.html"
    ).exists()
    # An autograder (--all) never takes checks from the folder it grades: that is the student's.
    assert main(["check", "boom", str(repo), "--all", "--out", str(tmp_path / "o")]) == ExitCode.USAGE
    assert os.environ["WIREGRADE_HOME"] == str(ROOT)


def test_a_self_checks_output_and_the_engine_are_not_graded_again(tmp_path: Path) -> None:
    from harness._context import copy_regular

    repo = tmp_path / "repo"
    (repo / REPORT_DIR).mkdir(parents=True)
    (repo / REPORT_DIR / "keys.log").write_text("CLIENT_RANDOM ...")
    (repo / ".wiregrade" / "harness").mkdir(parents=True)
    (repo / ".wiregrade" / "harness" / "cli.py").write_text("")
    (repo / "server.py").write_text("print('hi')")
    (tmp_path / "copy").mkdir()
    copy_regular(repo, tmp_path / "copy")
    assert sorted(p.name for p in (tmp_path / "copy").rglob("*")) == ["server.py"]
