"""What leaves the instructor's hands: a student's starter repository and a Gradescope autograder.

The student bundle holds the handout, the starter, and an engine with the **public** checks
only: grader files are chosen by name (``check_*.py``, ``support.py``, ``conftest.py``); hidden
checks live in ``hidden_*.py`` (the plugin refuses a hidden check anywhere else), samples and
the reference are never copied; its workflow, .gitignore and README section come from
:mod:`._classroom`. The Gradescope autograder is for the instructor to upload: it holds every
check and runs them all on Gradescope's machine.
"""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path

from ._assignment import Assignment, project_root
from ._classroom import (
    ENGINE_DIR,
    GRADER_ERROR,
    REPORT_DIR,
    bundle_readme,
    gitignore,
    public_checks,
    workflow,
)
from ._errors import HarnessError

__all__ = ["make_bundle", "make_gradescope", "public_checks"]

PUBLIC_GRADER_FILES = ("pytest.ini", "conftest.py", "support.py", "scenario.py", "check_*.py")
_SKIP = shutil.ignore_patterns(
    "__pycache__", "*.pyc", ENGINE_DIR, REPORT_DIR, ".venv", "build", "*.egg-info", ".nginx-tmp"
)


def _copy_engine(a: Assignment, dest: Path, *, hidden: bool) -> None:
    """pyproject, harness/, reports/, graders/<id>/ (public files, or all) and the assignment's settings."""
    root = project_root()
    dest.mkdir(parents=True)
    shutil.copyfile(root / "pyproject.toml", dest / "pyproject.toml")
    (dest / "README.md").write_text(
        f"# wiregrade engine\n\nThe checks of `{a.id}` and the engine that runs them. Install it into a "
        "virtual environment (`python3 -m venv .venv && .venv/bin/python -m pip install ./.wiregrade` "
        f"from the repository); `wiregrade check {a.id} DIR` uses the checks in `DIR/.wiregrade` "
        "first, so one environment serves every exercise's repository.\n"
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


def make_bundle(a: Assignment, out: Path) -> Path:
    """The starter repository a student receives."""
    if out.exists() and any(out.iterdir()):
        raise HarnessError(f"{out} exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted(a.handout_dir.iterdir()):
        if f.name in ("samples", "assignment.toml") or f.name.startswith("."):
            continue
        if f.name == "README.md":
            (out / f.name).write_text(bundle_readme(a, f.read_text()))
        elif f.is_dir():
            shutil.copytree(f, out / f.name, ignore=_SKIP)
        else:
            shutil.copy2(f, out / f.name)
    _copy_engine(a, out / ENGINE_DIR, hidden=False)
    wf = out / ".github" / "workflows"
    wf.mkdir(parents=True)
    (wf / "classroom.yml").write_text(workflow(a))
    (out / ".gitignore").write_text(gitignore(a))
    return out


RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for each submission: every check, hidden ones included.
# wiregrade's exit code: 0 all checks passed, 1 some failed (the student's: results.json is
# handed over), 2 or 3 the grader itself failed. Then no results.json is left: Gradescope shows
# the run as failed ("The autograder failed to execute correctly") and records no score, rather
# than a score that counts checks which never ran against the student. This output (the
# instructor's "Autograder Output") says which; "Rerun Autograder" grades the submission again.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
WIREGRADE="${WIREGRADE:-$ROOT/venv/bin/wiregrade}"
mkdir -p "$ROOT/results"
rm -f "$ROOT/results/results.json"
code=0
WIREGRADE_HOME="$ROOT/source/wiregrade" "$WIREGRADE" check {id} "$ROOT/submission" --all \\
    --out "$ROOT/results/wiregrade" || code=$?
if [ "$code" -le 1 ] && [ -f "$ROOT/results/wiregrade/results.json" ]; then
    cp "$ROOT/results/wiregrade/results.json" "$ROOT/results/results.json"
    exit 0
fi
echo "wiregrade: {grader_error} (exit $code). No score was recorded for this submission: the grader"
echo "itself failed, which is not the student's doing. Rerun the autograder; the session log follows."
tail -n 60 "$ROOT/results/wiregrade/session.log" 2>/dev/null
exit "$code"
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


GRADESCOPE_README = """# wiregrade autograder for `{id}`

For the instructor: upload this zip as a Gradescope programming assignment's autograder; never
give it to students (it holds the hidden checks).

- Each check is one test: `number` "1", "2", ... in grading order, the check's id in `tags`.
- Hidden checks have `visibility: after_published`: a student sees them (title and score only)
  once you publish grades, so resubmitting cannot be used to probe them. Gradescope then hides
  the student's total until publishing too; the top-level output states the public subtotal,
  so a student still sees where they stand on the checks they can see.
- A grader error (wiregrade exit 3) leaves no results.json on purpose: Gradescope marks the run
  as failed and records no score, never a zero for checks that did not run. The Autograder
  Output says what failed; use "Rerun Autograder" on that submission.
"""


def make_gradescope(a: Assignment, out_zip: Path, workdir: Path) -> Path:
    """Gradescope's autograder.zip: setup.sh, run_autograder, and the engine with all checks."""
    stage = workdir / "autograder"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    (stage / "setup.sh").write_text(SETUP)
    (stage / "run_autograder").write_text(
        RUN_AUTOGRADER.replace("{id}", a.id).replace("{grader_error}", GRADER_ERROR)
    )
    (stage / "README.md").write_text(GRADESCOPE_README.replace("{id}", a.id))
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
