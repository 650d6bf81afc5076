"""wiregrade's pytest plugin: check metadata, fixtures, outcomes, and the session's results.

Loaded with ``-p harness.plugin`` (plugin autoload is off in grading sessions). Like pytest's
own junitxml, it registers its options, keeps its state under a StashKey, listens to the
reports and writes once, at the end of the session.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
import traceback
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from ._assignment import Assignment, load_assignment
from ._checks import MARKER, CheckSpec, spec_of
from ._context import (
    EvidenceRecorder,
    GradingContext,
    Launcher,
    current_isolation,
    current_student_user,
)
from ._errors import Blocked, CheckFailed, HarnessError, StudentTimeout
from ._isolation import hide, unhide
from ._markup import relative_paths
from ._progress import ProgressWriter
from ._results import (
    CheckResult,
    Environment,
    Evidence,
    Outcome,
    SubmissionResult,
    Visibility,
    blocked_words,
)
from ._servers import GraderPKI
from ._store import fingerprint_grader
from ._timing import snapshot as timing_snapshot
from ._wire import Wire


@dataclass
class _State:
    assignment: Assignment
    submission: Path
    student: str
    out: Path | None
    visibility: str
    wire_choice: str
    results: dict[str, CheckResult] = field(default_factory=dict)
    collect_errors: list[str] = field(default_factory=list)
    ctx: GradingContext | None = None
    hidden: list[str] = field(default_factory=list)
    hidden_note: str = ""
    started: float = field(default_factory=time.monotonic)
    progress: ProgressWriter = field(default_factory=lambda: ProgressWriter(None))


STATE = pytest.StashKey[_State]()
PHASES = pytest.StashKey[dict[str, tuple[str, Any]]]()
EVIDENCE = pytest.StashKey[EvidenceRecorder]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("wiregrade")
    g.addoption("--wiregrade-assignment", help="exercise id (e.g. tls-server)")
    g.addoption("--wiregrade-submission", help="the submission folder to grade")
    g.addoption("--wiregrade-student", default="", help="student name for the results")
    g.addoption("--wiregrade-out", default=None, help="write session.json (and capture) here")
    g.addoption("--wiregrade-visibility", default="all", choices=("all", "public"))
    g.addoption("--wiregrade-wire", default="auto", choices=("auto", "dumpcap", "relay"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(spec): a graded wiregrade check")
    aid = config.getoption("--wiregrade-assignment")
    if not aid:
        return  # loaded but not grading (e.g. the project's own tests)
    sub = config.getoption("--wiregrade-submission")
    if not sub:
        raise pytest.UsageError("--wiregrade-submission is required with --wiregrade-assignment")
    out = config.getoption("--wiregrade-out")
    st = config.stash[STATE] = _State(
        assignment=load_assignment(aid),
        submission=Path(sub).resolve(),
        student=config.getoption("--wiregrade-student") or Path(sub).name,
        out=Path(out) if out else None,
        visibility=config.getoption("--wiregrade-visibility"),
        wire_choice=config.getoption("--wiregrade-wire"),
        progress=ProgressWriter.from_environment(),
    )
    config.pluginmanager.register(_CollectWatcher(st), "wiregrade-collect-watcher")


def _state(config: pytest.Config) -> _State:
    try:
        return config.stash[STATE]
    except KeyError:
        raise HarnessError("wiregrade fixtures need --wiregrade-assignment") from None


# --- collection: validate, select, time-limit ---------------------------------------------


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    if STATE not in config.stash:
        return
    st = config.stash[STATE]
    seen: dict[str, str] = {}
    problems = []
    visibility_of = {s.id: s.visibility for i in items if (s := spec_of(i))}
    for item in items:
        spec = spec_of(item)
        if spec is None:
            problems.append(f"{item.nodeid}: not declared with @harness.check(...) exactly once")
            continue
        if spec.id in seen:
            problems.append(f"{item.nodeid}: check id {spec.id!r} also used by {seen[spec.id]}")
        seen[spec.id] = item.nodeid
        for need in spec.needs:  # run order decides: a need must have its outcome already
            if need not in visibility_of:
                problems.append(f"{item.nodeid}: needs {need!r}, which is no check of this grader")
            elif need not in seen:
                problems.append(f"{item.nodeid}: needs {need!r}, which must be declared (run) before it")
            elif spec.visibility is Visibility.PUBLIC and visibility_of[need] is Visibility.HIDDEN:
                problems.append(f"{item.nodeid}: a public check cannot need the hidden check {need!r}")
        # Hidden checks live in hidden_*.py and only there: a student bundle is made of the
        # other files, so a hidden check in a public file would leak.
        in_hidden_file = item.path.name.startswith("hidden_")
        if in_hidden_file != (spec.visibility is Visibility.HIDDEN):
            problems.append(
                f"{item.nodeid}: a {spec.visibility.value} check must live in a "
                f"{'hidden_*.py' if spec.visibility is Visibility.HIDDEN else 'check_*.py'} file"
            )
        timeout = spec.timeout or st.assignment.check_seconds
        item.add_marker(pytest.mark.timeout(timeout, method="signal"))
    specs = [s for i in items if (s := spec_of(i))]
    public = sum(s.points for s in specs if s.visibility is Visibility.PUBLIC)
    hidden = sum(s.points for s in specs if s.visibility is Visibility.HIDDEN)
    a = st.assignment
    if not problems and abs(public - (a.total_points - a.hidden_points)) > 1e-9:
        problems.append(
            f"the public checks add up to {public:g} points but assignment.toml says "
            f"{a.total_points:g} in all, {a.hidden_points:g} of them hidden"
        )
    # A student bundle has no hidden checks at all; where there are some, they must add up.
    if not problems and hidden and abs(hidden - a.hidden_points) > 1e-9:
        problems.append(
            f"the hidden checks add up to {hidden:g} points but assignment.toml says {a.hidden_points:g}"
        )
    if problems:
        msg = "invalid grader:\n  " + "\n  ".join(problems)
        st.collect_errors.append(msg)
        raise pytest.UsageError(msg)
    if st.visibility == "public":
        hidden_items = [i for i in items if (s := spec_of(i)) and s.visibility is Visibility.HIDDEN]
        if hidden_items:
            config.hook.pytest_deselected(items=hidden_items)
            items[:] = [i for i in items if i not in hidden_items]


def _hide_from_students(st: _State, ctx: GradingContext) -> None:
    """Once the grader is loaded and the submission copied, cover what students must not read.

    Instructor grading only (a self-check has nothing to hide from its student): the graders
    (hidden checks included), the solutions, the project's tests, the other submissions and
    the batch's output and store. Needs the session's private mount namespace.
    """
    if st.visibility != "all":
        return
    if not ctx.isolation.private_network:
        st.hidden_note = "graders and other submissions NOT hidden from student programs (no mount namespace)"
        return
    root = st.assignment.root
    user = current_student_user()
    keep = [os.path.realpath(p) for p in (sys.prefix, sys.executable, Path(__file__).parent, ctx.workdir)]
    if user is not None:
        keep += [os.path.realpath(user.python)] + [
            os.path.realpath(p) for p in user.pythonpath.split(os.pathsep) if p
        ]
    targets = [root / d for d in ("graders", "reference", "tests", "assignments")]
    targets.append(st.submission.parent)
    if st.out is not None:
        targets.append(st.out.resolve().parent)
    st.hidden = hide([str(t) for t in targets], keep)
    st.hidden_note = (
        f"graders, solutions and other submissions hidden from student programs ({len(st.hidden)} folders)"
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Tell a listening ``check`` how many checks will run, and on what network, up front."""
    st = session.config.stash.get(STATE, None)
    if st is not None:
        iso = current_isolation()
        st.progress.emit("start", checks=len(session.items), network=iso.detail, private=iso.private_network)


class _CollectWatcher:
    """Remembers collection errors: a grader that fails to import is a harness error."""

    def __init__(self, st: _State) -> None:
        self.st = st

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.st.collect_errors.append(f"{report.nodeid}: {report.longrepr}")


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def grading(request: pytest.FixtureRequest) -> Iterator[GradingContext]:
    """The session's grading context (submission copy, port, wire, key log)."""
    st = _state(request.config)
    ctx = GradingContext(
        st.assignment, st.submission, st.student, st.wire_choice, require_sandbox=st.visibility == "all"
    )
    st.ctx = ctx
    if ctx.port_busy_note:
        st.progress.emit("note", text=ctx.port_busy_note)
    _hide_from_students(st, ctx)
    try:
        yield ctx
    finally:
        unhide()  # before pytest's own ending, which returns to a folder that may be covered
        ctx.close()


@pytest.fixture(scope="session")
def assignment(grading: GradingContext) -> Assignment:
    return grading.assignment


@pytest.fixture(scope="session")
def wire(grading: GradingContext) -> Wire:
    """The wire backend (started once per session; its start failing is a harness ERROR)."""
    return grading.wire


@pytest.fixture(scope="session")
def pki(grading: GradingContext) -> GraderPKI:
    """The grader's certificates for this session; the CA is also in the submission as ca.crt."""
    pki = GraderPKI(grading.assignment.host, grading.workdir)
    grading.give("ca.crt", Path(pki.ca_file).read_bytes(), 0o444)
    return pki


@pytest.fixture
def student(grading: GradingContext) -> Iterator[Launcher]:
    """Starts the student's programs; every one of them is killed when the check ends."""
    with grading.launcher() as launcher:
        yield launcher


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> EvidenceRecorder:
    return request.node.stash.setdefault(EVIDENCE, EvidenceRecorder())


# --- outcomes -------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    phases = item.stash.setdefault(PHASES, {})
    if call.excinfo is not None:
        phases[call.when] = ("raised", call.excinfo)
    else:
        phases[call.when] = (report.outcome, None)
    phases.setdefault("_duration", ("", 0.0))
    phases["_duration"] = ("", phases["_duration"][1] + report.duration)
    return report


def classify(phases: dict[str, tuple[str, Any]]) -> tuple[Outcome, str, str, str, str]:
    """(outcome, seen, expected, hint, details) from the three phases of one check."""
    for when in ("setup", "call", "teardown"):
        state, excinfo = phases.get(when, ("passed", None))
        if state != "raised":
            continue
        exc = excinfo.value
        if when == "call" and isinstance(exc, Blocked):  # _record links it to the need, or fails it
            return Outcome.BLOCKED, exc.seen, exc.expected, exc.hint, ""
        if when == "call" and isinstance(exc, StudentTimeout):
            return Outcome.TIMEOUT, exc.seen, exc.expected, exc.hint, ""
        if when == "call" and isinstance(exc, CheckFailed):
            return Outcome.FAILED, exc.seen, exc.expected, exc.hint, ""
        if when == "call" and isinstance(exc, pytest.fail.Exception) and "Timeout" in str(exc):
            return (
                Outcome.TIMEOUT,
                "The check did not finish within its time limit; your "
                "program may be waiting for something that never comes.",
                "",
                "",
                str(exc),
            )
        if when == "call" and type(exc) is AssertionError:
            return Outcome.FAILED, str(exc).split("\nassert ")[0], "", "", ""
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        what = str(exc) if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {exc}"
        return (
            Outcome.ERROR,
            f"The grader could not run this check ({when}): {what}. "
            "This is not your fault and costs you nothing until it is re-run.",
            "",
            "",
            tb,
        )
    return Outcome.PASSED, "", "", "", ""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    """After all three phases of a check: turn them into one CheckResult."""
    ran = yield
    _record(item)
    return ran


def _record(item: pytest.Item) -> None:
    st = item.config.stash.get(STATE, None)
    spec: CheckSpec | None = spec_of(item)
    if st is None or spec is None:
        return
    phases = item.stash.get(PHASES, {})
    outcome, seen, expected, hint, details = classify(phases)
    blocked_by = ""
    if outcome is Outcome.BLOCKED:
        outcome, seen, hint, blocked_by = _blocked(spec, st.results, seen, hint)
    rec = item.stash.get(EVIDENCE, None)
    # Paths in a student's traceback read as in their own folder, not the session's copy.
    folder = str(st.ctx.submission) if st.ctx is not None else ""
    st.results[spec.id] = CheckResult(
        id=spec.id,
        title=spec.title,
        points=spec.points,
        score=spec.points if outcome is Outcome.PASSED else 0.0,
        outcome=outcome,
        visibility=spec.visibility,
        expected=spec.expected or expected,  # said once, the same way passed or failed
        expected_here=expected if spec.expected and expected != spec.expected else "",
        seen=relative_paths(seen, folder),
        hint=(hint or spec.hint) if outcome in (Outcome.FAILED, Outcome.TIMEOUT) else hint,
        details=details,
        evidence=tuple(_relative_evidence(e, folder) for e in rec.items) if rec else (),
        duration=round(phases.get("_duration", ("", 0.0))[1], 3),
        blocked_by=blocked_by,
    )
    r = st.results[spec.id]
    st.progress.emit("check", id=r.id, title=r.title, outcome=r.outcome.value, score=r.score, points=r.points)


def _relative_evidence(e: Evidence, folder: str) -> Evidence:
    return replace(e, data=relative_paths(e.data, folder)) if isinstance(e.data, str) else e


def _blocked(
    spec: CheckSpec, results: dict[str, CheckResult], seen: str, hint: str
) -> tuple[Outcome, str, str, str]:
    """(outcome, seen, hint, blocked_by) of a check that raised Blocked.

    BLOCKED by the first declared need that did not pass, followed to the root cause (a
    check blocked by one that was itself blocked points where the story is told). A need the
    grader failed on makes this an ERROR too: it cannot be judged. With no failed need the
    grader's declaration is incomplete, and the check FAILS as it said (never a pass).
    """
    need = next(
        (results[n] for n in spec.needs if n in results and results[n].outcome is not Outcome.PASSED), None
    )
    if need is None:
        return Outcome.FAILED, seen, hint, ""
    if need.outcome is Outcome.BLOCKED and need.blocked_by in results:
        need = results[need.blocked_by]
    if need.outcome is Outcome.ERROR:
        return (
            Outcome.ERROR,
            f"The grader could not run this check: it needs what '{need.title}' checks, and the "
            "grader failed there. This is not your fault and costs you nothing until it is re-run.",
            "",
            "",
        )
    return (Outcome.BLOCKED, *blocked_words(need.title), need.id)


def _version() -> str:
    try:
        return metadata.version("wiregrade")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _fingerprint(a: Assignment) -> str:
    try:
        return fingerprint_grader(a)[:12]
    except OSError as exc:  # the report says so; the marks do not depend on it
        return f"unknown ({exc.strerror or exc})"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    st = session.config.stash.get(STATE, None)
    if st is None or st.out is None:
        return
    unhide()  # our results go into one of the covered folders
    st.out.mkdir(parents=True, exist_ok=True)
    harness_error = ""
    if st.collect_errors:
        harness_error = "the grader could not be loaded: " + "\n".join(st.collect_errors)
    elif exitstatus in (
        pytest.ExitCode.INTERRUPTED,
        pytest.ExitCode.INTERNAL_ERROR,
        pytest.ExitCode.USAGE_ERROR,
    ):
        harness_error = f"the grading session ended abnormally (pytest exit {int(exitstatus)})"
    env = Environment()
    if st.ctx is not None:
        iso = st.ctx.isolation
        w = st.ctx._wire
        env = Environment(
            isolation=iso.kind,
            isolation_detail="; ".join(filter(None, [iso.detail, st.ctx.port_busy_note, st.hidden_note])),
            sandbox="; ".join(filter(None, [st.ctx.sandbox_note, st.ctx.cgroup_note, st.ctx.left_out_note])),
            wire=w.info.backend if w else "not used",
            wire_detail=(w.info.detail if w else ""),
            python=platform.python_version(),
        )
        st.ctx.close()
        for name in ("capture.pcap", "keys.log"):
            src = st.ctx.workdir / name
            if src.exists() and src.stat().st_size:
                shutil.copyfile(src, st.out / name)
        st.ctx.cleanup()
    result = SubmissionResult(
        assignment=st.assignment.id,
        student=st.student,
        checks=tuple(st.results.values()),
        environment=env,
        visibility=st.visibility,
        harness_error=harness_error,
        duration=round(time.monotonic() - st.started, 3),
        timings=timing_snapshot(),
        graded_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        wiregrade_version=_version(),
        grader_fingerprint=_fingerprint(st.assignment),
    )
    result.save(st.out / "session.json")
