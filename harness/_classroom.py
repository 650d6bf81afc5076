"""A student's repository on GitHub Classroom: its workflow, its .gitignore, its self-check
commands and the Markdown summary a CI run shows.

The workflow follows the one GitHub Classroom generates (job ``run-autograding-tests``, the
``repository_dispatch`` trigger Classroom uses, the bot's first commit not graded) and reports
points with Classroom's own actions: one ``autograding-command-grader`` step per public check,
then ``autograding-grading-reporter``. The self-check runs once before them; its exit code
tells a student's failures (0, 1: the per-check steps give the points) from a grader error
(2, 3: the step fails with "grader error: re-run" and no score is reported at all).
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

from ._assignment import Assignment
from ._checks import CheckSpec
from ._outputs import feedback_text
from ._results import Evidence, Outcome, SubmissionResult, Visibility

ENGINE_DIR = ".wiregrade"  # the engine and public checks, in the student's repository
REPORT_DIR = ".wiregrade-report"  # every self-check output: ignored by git, the same in CI
ARTIFACT = "wiregrade-report"
JOB = "run-autograding-tests"  # the reporter finds its check run by this job name
REPORT_RUNNER = re.compile(r"^[a-zA-Z0-9]+$")  # what the reporter accepts as a runner id
GRADER_ERROR = "grader error: re-run"
ERROR_TEXT = (
    "wiregrade itself failed (exit $code), not your work: no points are reported for this run."
    " Re-run the workflow; tell your instructor if it persists."
)
SUMMARY_FRAMES = 30  # rows of a frames table in the step summary (GitHub caps a summary at 1 MiB)
SUMMARY_TEXT = 4000  # characters of one failure's feedback in the step summary


def bundled_engine(folder: Path, assignment_id: str) -> Path | None:
    """``folder/.wiregrade`` if it holds this exercise's checks: a self-check of a student's
    repository uses it before whatever engine the venv holds (one venv may serve several
    exercises). Never for grading: there the folder is the student's, and so is this engine."""
    engine = folder / ENGINE_DIR
    if (engine / "graders" / assignment_id).is_dir() and (
        engine / "assignments" / assignment_id / "assignment.toml"
    ).is_file():
        return engine.resolve()
    return None


def public_checks(a: Assignment) -> list[CheckSpec]:
    """The public checks, in file order, without running anything (for the workflow's steps)."""
    specs = []
    for f in sorted(a.grader_dir.glob("check_*.py")):
        for node in ast.parse(f.read_text()).body:
            if not isinstance(node, ast.FunctionDef):
                continue
            for d in node.decorator_list:
                if isinstance(d, ast.Call) and getattr(d.func, "id", "") == "check":
                    kw = {
                        k.arg: ast.literal_eval(k.value)
                        for k in d.keywords
                        if k.arg in ("title", "points", "id")
                    }
                    cid = kw.get("id") or node.name.removeprefix("test_").replace("_", "-")
                    specs.append(
                        CheckSpec(cid, kw["title"], float(kw["points"]), Visibility.PUBLIC, "", "", None)
                    )
    return specs


def gitignore(a: Assignment) -> str:
    """What git leaves out: the self-check's output, the student's venv, the build the engine's
    install leaves behind, and what the handout says not to hand in (``[bundle] ignore``).
    Never a file the handout asks for (``*.key``/``*.pem`` dropped a tls-server's key)."""
    lines = [
        f"{REPORT_DIR}/",
        ".venv/",
        "__pycache__/",
        f"{ENGINE_DIR}/build/",
        f"{ENGINE_DIR}/*.egg-info/",
        *a.settings.get("bundle", {}).get("ignore", []),
    ]
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def workflow(a: Assignment) -> str:
    """``.github/workflows/classroom.yml``: GitHub Classroom's template with wiregrade's steps."""
    steps = []
    runners = []
    for i, c in enumerate(public_checks(a), 1):
        runner = f"check{i}"
        runners.append(runner)
        steps.append(
            f"""      - name: {_quote(c.title)}
        id: {runner}
        uses: classroom-resources/autograding-command-grader@v1
        with:
          test-name: {_quote(c.title)}
          setup-command: ''
          command: wiregrade result {REPORT_DIR} {c.id}
          timeout: 1
          max-score: {c.points:g}
"""
        )
    env = "".join(f'          {r.upper()}_RESULTS: "${{{{steps.{r}.outputs.result}}}}"\n' for r in runners)
    return f"""# Runs the public checks of `{a.id}` on every push and reports the points to GitHub Classroom.
# Made by `wiregrade bundle` after the workflow GitHub Classroom generates; the hidden checks run
# only when your instructor grades. A grader error fails the run ("{GRADER_ERROR}") and reports
# no points: it is never a zero.
name: Autograding Tests
'on':
  - push
  - workflow_dispatch
  - repository_dispatch
permissions:
  checks: write
  actions: read
  contents: read
jobs:
  {JOB}:
    runs-on: ubuntu-latest
    timeout-minutes: 20
    if: github.actor != 'github-classroom[bot]'
    steps:
      - name: Checkout code
        uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.12"
      - name: Install the tools wiregrade drives
        run: |
          sudo apt-get update -qq
          sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \\
            tshark stunnel4 nginx-light openssl bubblewrap openssh-server openssh-client
          # Ubuntu 24.04 restricts unprivileged user namespaces; wiregrade captures inside one
          if [ -e /proc/sys/kernel/apparmor_restrict_unprivileged_userns ]; then
            sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0
          fi
      - name: Install wiregrade
        run: python -m pip install -q ./{ENGINE_DIR}
      - name: Self-check (public checks)
        run: |
          code=0
          wiregrade check {a.id} . --out {REPORT_DIR} || code=$?
          if [ "$code" -gt 1 ]; then
            echo "::error title={GRADER_ERROR}::{ERROR_TEXT}"
            exit "$code"
          fi
      - name: Upload the report
        if: always()
        uses: actions/upload-artifact@v4
        with:
          name: {ARTIFACT}
          path: {REPORT_DIR}/report.html
          if-no-files-found: ignore
{"".join(steps)}      - name: Autograding Reporter
        uses: classroom-resources/autograding-grading-reporter@v1
        env:
{env}        with:
          runners: {",".join(runners)}
"""


def self_check_commands(a: Assignment) -> str:
    """The commands a student copies, in order: each works as written from the repository."""
    lines = [
        ("python3 -m venv .venv", "once: a Python of its own for this repository"),
        (f".venv/bin/python -m pip install ./{ENGINE_DIR}", "once, and when the checks are updated"),
        (f".venv/bin/wiregrade check {a.id} .", "each time: the public checks"),
    ]
    width = max(len(c) for c, _ in lines) + 2
    return "```sh\n" + "".join(f"{c:<{width}}# {why}\n" for c, why in lines) + "```\n"


def self_check_section(a: Assignment, handout_text: str = "") -> str:
    """The bundle README's self-check section: the set-up commands first, then what the
    handout says of its self-check (its own commands left out), then the repository's part."""
    intro = (
        "In this repository, as an ordinary user (no root needed), with Python 3.10 or newer "
        "(Debian/Ubuntu: `sudo apt install python3-venv tshark`):"
    )
    after = [
        f"Everything a self-check makes goes to `{REPORT_DIR}/` (git ignores it); the report is "
        f"`{REPORT_DIR}/report.html`. Exit code 0: all public checks passed; 1: some failed; 3: the "
        "grader itself failed (not your work: run it again). The hidden checks run when your "
        "instructor grades.",
        "Every push runs the same checks on GitHub (the *Actions* tab): each public check is worth "
        "its points there, the run's summary shows what failed, and the full report is the run's "
        f"`{ARTIFACT}` artifact. Commit your work with `git add -A && git commit`: everything the "
        "handout asks for is kept.",
    ]
    fill = lambda p: textwrap.fill(p, 100, break_on_hyphens=False)  # noqa: E731
    handout_says = re.sub(r"```.*?```\n?", "", handout_text, count=1, flags=re.S).strip()
    if handout_says[:1].islower():  # it went on from the handout's own command
        handout_says = "The self-check " + handout_says
    parts = [fill(intro), self_check_commands(a).rstrip("\n")]
    parts += [handout_says] if handout_says else []
    parts += [fill(p) for p in after]
    return "## Self-check\n\n" + "\n\n".join(parts) + "\n"


def bundle_readme(a: Assignment, handout: str) -> str:
    """The handout with its self-check section made for the repository (set-up commands first)."""
    m = re.search(r"^## Self-check[^\n]*\n(.*?)(?=^## |\Z)", handout, flags=re.M | re.S)
    if m is None:
        return handout.rstrip("\n") + "\n\n" + self_check_section(a)
    section = self_check_section(a, m.group(1))
    return handout[: m.start()] + section + ("\n" if m.end() < len(handout) else "") + handout[m.end() :]


# --- the step summary ----------------------------------------------------------------------

_ICON = {"passed": "✅", "failed": "❌", "timeout": "⏱️", "error": "⚠️", "blocked": "⛔"}


def _cell(text: object) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _fenced(text: str) -> str:
    """``text`` in a fence longer than any run of backticks in it: a student's output cannot
    close the block early."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _frames_table(e: Evidence) -> list[str]:
    rows = list(e.data or [])
    out = [
        f"**{_cell(e.title)}**",
        "",
        "| No. | Time | From | Protocol | Length | Info | Bytes an eavesdropper reads |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in rows[:SUMMARY_FRAMES]:
        if not isinstance(f, dict):
            continue
        cells = [_cell(f.get(k, "")) for k in ("no", "time", "src", "protocol", "length", "info")]
        cells[0] += " 🔴" if f.get("plaintext") else ""  # the report's red rows: the message in clear
        payload = _cell(f.get("payload", "")).replace("`", "'")
        out.append("| " + " | ".join(cells) + (f" | `{payload}` |" if payload else " |  |"))
    if len(rows) > SUMMARY_FRAMES:
        out.append(f"\n… {len(rows) - SUMMARY_FRAMES} more frames in the report.")
    return out


def markdown_summary(result: SubmissionResult) -> str:
    """For ``$GITHUB_STEP_SUMMARY``: the student's view (hidden checks: title and score only),
    failures as fenced text and the frames they saw as tables. A check's status is its own word
    (a status added later shows as itself)."""
    r = result.for_student()
    which = "public checks" if r.visibility == "public" else "checks"
    lines = [f"## wiregrade: {r.assignment} — {r.score:g}/{r.max_score:g} on {len(r.checks)} {which}", ""]
    if r.harness_error or r.errors:
        lines += [f"> ⚠️ **{GRADER_ERROR}**: the grader itself failed; this is not your work.", ""]
    lines += ["| | check | status | points |", "|---|---|---|---|"]
    for c in r.checks:
        word = c.outcome.value
        lines.append(f"| {_ICON.get(word, '•')} | {_cell(c.title)} | {word} | {c.score:g}/{c.points:g} |")
    blocked = [c for c in r.checks if c.outcome is Outcome.BLOCKED and not c.hidden]
    for c in r.checks:
        if c.outcome in (Outcome.PASSED, Outcome.BLOCKED) or c.hidden:
            continue
        text = feedback_text(c)
        if len(text) > SUMMARY_TEXT:
            text = text[:SUMMARY_TEXT] + "\n… (the rest is in the report)"
        lines += ["", f"### {_ICON.get(c.outcome.value, '•')} {_cell(c.title)} ({c.outcome.value})", ""]
        if text:
            lines.append(_fenced(text))
        for e in c.evidence:
            if e.kind == "frames":
                lines += ["", *_frames_table(e)]
    if blocked:  # echoes of a failure above, not mistakes of their own: collapsed
        lines += ["", f"<details><summary>{len(blocked)} check(s) could not run (blocked)</summary>", ""]
        lines += [f"- {_cell(c.title)}: blocked by `{c.blocked_by}`" for c in blocked]
        lines += ["", "</details>"]
    lines += ["", f"The full report is this run's `{ARTIFACT}` artifact (report.html)."]
    return "\n".join(lines) + "\n"
