"""What leaves the instructor's hands: a student's starter repository and a Gradescope autograder.

The student bundle holds the handout, the starter, and an engine with the **public** checks
only: grader files are chosen by name (``check_*.py``, ``support.py``, ``conftest.py``); hidden
checks live in ``hidden_*.py`` (the plugin refuses a hidden check anywhere else), samples and
the reference are never copied. The Gradescope autograder is for the instructor to upload: it
holds every check and runs them all on Gradescope's machine.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path

from ._assignment import Assignment, project_root
from ._checks import CheckSpec
from ._errors import HarnessError

PUBLIC_GRADER_FILES = ("pytest.ini", "conftest.py", "support.py", "scenario.py", "check_*.py")
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".wiregrade", ".nginx-tmp")


def _copy_engine(a: Assignment, dest: Path, *, hidden: bool) -> None:
    """pyproject, harness/, reports/, graders/<id>/ (public files, or all) and the assignment's settings."""
    root = project_root()
    dest.mkdir(parents=True)
    shutil.copyfile(root / "pyproject.toml", dest / "pyproject.toml")
    (dest / "README.md").write_text(
        "# wiregrade engine\n\nThe checks of this exercise and the engine that runs them. Installed with "
        "`pip install .`; run with `WIREGRADE_HOME=<this folder> wiregrade check ...`.\n"
    )
    shutil.copytree(root / "harness", dest / "harness", ignore=_SKIP)
    shutil.copytree(root / "reports", dest / "reports", ignore=_SKIP)
    (dest / "graders").mkdir()
    shutil.copyfile(root / "graders" / "pytest.ini", dest / "graders" / "pytest.ini")
    grader = dest / "graders" / a.id
    grader.mkdir()
    patterns = ("*",) if hidden else PUBLIC_GRADER_FILES
    for pattern in patterns:
        for f in sorted(a.grader_dir.glob(pattern)):
            if f.is_file() and f.suffix in (".py", ".ini") and "__pycache__" not in f.parts:
                shutil.copyfile(f, grader / f.name)
    (dest / "assignments" / a.id).mkdir(parents=True)
    shutil.copyfile(a.handout_dir / "assignment.toml", dest / "assignments" / a.id / "assignment.toml")


def public_checks(a: Assignment) -> list[CheckSpec]:
    """The public checks, in file order, without running anything (for the workflow's steps)."""
    import ast

    specs = []
    for f in sorted(a.grader_dir.glob("check_*.py")):
        for node in ast.parse(f.read_text()).body:
            if not isinstance(node, ast.FunctionDef):
                continue
            for d in node.decorator_list:
                if isinstance(d, ast.Call) and getattr(d.func, "id", "") == "check":
                    kw = {
                        k.arg: ast.literal_eval(k.value) for k in d.keywords if k.arg in ("title", "points")
                    }
                    cid = node.name.removeprefix("test_").replace("_", "-")
                    specs.append(CheckSpec(cid, kw["title"], float(kw["points"]), None, "", "", None))  # type: ignore[arg-type]
    return specs


def _workflow(a: Assignment) -> str:
    checks = public_checks(a)
    steps = []
    runners = []
    for i, c in enumerate(checks, 1):
        sid = f"check-{i}"
        runners.append(sid)
        title = c.title.replace('"', "'")
        steps.append(
            f"""      - name: "{title}"
        id: {sid}
        uses: classroom-resources/autograding-command-grader@v1
        with:
          test-name: "{title}"
          command: wiregrade result .wiregrade-report {c.id}
          timeout: 1
          max-score: {c.points:g}
"""
        )
    env = "".join(f'          {r.upper()}_RESULTS: "${{{{steps.{r}.outputs.result}}}}"\n' for r in runners)
    return f"""# Runs the public checks of `{a.id}` on every push and reports the points to GitHub Classroom.
# Made by `wiregrade bundle`; the hidden checks run only when your instructor grades.
name: wiregrade
on: [push, workflow_dispatch]
permissions:
  checks: write
  actions: read
  contents: read
jobs:
  check:
    runs-on: ubuntu-latest
    timeout-minutes: 15
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.12"
      - name: Install wiregrade and the tools it drives
        run: |
          sudo apt-get update -qq
          sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \\
            tshark stunnel4 nginx-light openssl bubblewrap openssh-server openssh-client
          # Ubuntu 24.04 forbids unprivileged user namespaces; wiregrade captures inside one
          sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 || true
          python -m pip install -q ./.wiregrade
      - name: Self-check (public checks)
        env:
          WIREGRADE_HOME: .wiregrade
        run: wiregrade check {a.id} . --out .wiregrade-report || true
{"".join(steps)}      - name: Report points to GitHub Classroom
        uses: classroom-resources/autograding-grading-reporter@v1
        env:
{env}        with:
          runners: {",".join(runners)}
"""


def make_bundle(a: Assignment, out: Path) -> Path:
    """The starter repository a student receives."""
    if out.exists() and any(out.iterdir()):
        raise HarnessError(f"{out} exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted(a.handout_dir.iterdir()):
        if f.name in ("samples", "assignment.toml") or f.name.startswith("."):
            continue
        if f.is_dir():
            shutil.copytree(f, out / f.name, ignore=_SKIP)
        else:
            shutil.copy2(f, out / f.name)
    _copy_engine(a, out / ".wiregrade", hidden=False)
    wf = out / ".github" / "workflows"
    wf.mkdir(parents=True)
    (wf / "wiregrade.yml").write_text(_workflow(a))
    (out / ".gitignore").write_text(".wiregrade-report/\n__pycache__/\n*.key\n*.pem\n")
    return out


RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for each submission: every check, hidden ones included.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
WIREGRADE="${WIREGRADE:-$ROOT/venv/bin/wiregrade}"
mkdir -p "$ROOT/results"
WIREGRADE_HOME="$ROOT/source/wiregrade" "$WIREGRADE" check {id} "$ROOT/submission" --all \\
    --out "$ROOT/results/wiregrade"
code=$?
if [ -f "$ROOT/results/wiregrade/results.json" ]; then
    cp "$ROOT/results/wiregrade/results.json" "$ROOT/results/results.json"
else
    msg="Autograder failure (exit $code): not your fault, ask for a regrade."
    printf '{"score": 0, "output": "%s"}\\n' "$msg" > "$ROOT/results/results.json"
fi
exit 0
"""

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, when the autograder image is built.
set -euo pipefail
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip tshark stunnel4 \\
    nginx-light openssl util-linux bubblewrap openssh-server openssh-client
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install -q /autograder/source/wiregrade
"""


def make_gradescope(a: Assignment, out_zip: Path, workdir: Path) -> Path:
    """Gradescope's autograder.zip: setup.sh, run_autograder, and the engine with all checks."""
    stage = workdir / "autograder"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    (stage / "setup.sh").write_text(SETUP)
    (stage / "run_autograder").write_text(RUN_AUTOGRADER.replace("{id}", a.id))
    _copy_engine(a, stage / "wiregrade", hidden=True)
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out_zip, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(stage.rglob("*")):
            if f.is_file():
                info = zipfile.ZipInfo(str(f.relative_to(stage)))
                executable = f.name in ("setup.sh", "run_autograder")
                info.external_attr = ((0o755 if executable else 0o644) | stat.S_IFREG) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, f.read_bytes())
    return out_zip
