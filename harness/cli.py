"""The ``wiregrade`` command: a thin layer over the runner and the renderers."""

from __future__ import annotations

import argparse
import enum
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ._assignment import Assignment, assignment_ids, load_assignment
from ._bundle import make_bundle, make_gradescope
from ._capture import SECRET_ENV, seed_for
from ._errors import HarnessError
from ._outputs import feedback_text, write_outputs
from ._results import Outcome, SubmissionResult
from ._runner import (
    Intake,
    IntakeError,
    SessionOptions,
    Sessions,
    grade_batch,
    graded_capture_secret,
    rerender,
    run_session,
)
from ._samples import materialize, samples_of


class ExitCode(enum.IntEnum):
    OK = 0  # check: all public checks passed; grade: every submission graded
    CHECKS_FAILED = 1  # check: some public check failed
    USAGE = 2
    HARNESS_ERROR = 3  # the grader itself failed somewhere: results are incomplete


class _Style:
    """ANSI colour for people at a terminal; none in CI logs, pipes or with NO_COLOR."""

    def __init__(self, stream: object) -> None:
        tty = getattr(stream, "isatty", lambda: False)()
        self.on = tty and not os.environ.get("NO_COLOR") and not os.environ.get("CI")

    def __call__(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.on else text


_MARK = {
    Outcome.PASSED: ("PASS", "32"),
    Outcome.FAILED: ("FAIL", "31"),
    Outcome.TIMEOUT: ("TIME", "33"),
    Outcome.ERROR: ("ERR ", "35"),
}


def print_summary(result: SubmissionResult, report: Path, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    st = _Style(out)
    w = lambda s="": print(s, file=out)  # noqa: E731
    w(st(f"wiregrade check {result.assignment}", "1"))
    for c in result.checks:
        label, colour = _MARK[c.outcome]
        w(f"  {st(label, colour)}  {c.title:<55} {c.score:g}/{c.points:g}")
        if c.outcome is not Outcome.PASSED:
            for line in feedback_text(c).splitlines():
                w(f"        {line}")
    w()
    if result.harness_error:
        w(st("The grader could not run: " + result.harness_error.splitlines()[0], "35"))
    public = "public checks" if result.visibility == "public" else "checks"
    w(f"Score: {result.score:g}/{result.max_score:g} on {len(result.checks)} {public}.")
    if result.errors or result.harness_error:
        w(
            st(
                "The grader itself failed on some checks (ERR): not your fault; re-run, and tell "
                "your instructor if it persists.",
                "35",
            )
        )
    elif all(c.outcome is Outcome.PASSED for c in result.checks) and result.checks:
        if result.visibility == "public":
            w(st("All public checks passed.", "32") + " Hidden checks run when your instructor grades.")
        else:
            w(st("All checks passed.", "32"))
    else:
        w(st(f"Some {public} failed: see the hints above.", "31"))
    env = result.environment
    w(f"Network: {env.isolation_detail}. Traffic seen by: {env.wire_detail or env.wire}.")
    if env.sandbox:
        w(f"Your programs ran in: {env.sandbox}.")
    w(f"Report: {report}")


def _exit_for_check(result: SubmissionResult) -> ExitCode:
    if result.harness_error or result.errors or not result.checks:
        return ExitCode.HARNESS_ERROR
    if all(c.outcome is Outcome.PASSED for c in result.checks):
        return ExitCode.OK
    return ExitCode.CHECKS_FAILED


def cmd_list(args: argparse.Namespace) -> int:
    for aid in assignment_ids():
        a = load_assignment(aid)
        print(f"{aid:<20} {a.title} ({a.total_points:g} points)")
    return ExitCode.OK


def _options(args: argparse.Namespace, visibility: str) -> SessionOptions:
    return SessionOptions(
        visibility=visibility,
        wire=args.wire,
        isolation=args.isolation,
        student_user=args.student_user,
        sandbox=args.sandbox,
    )


def cmd_check(args: argparse.Namespace) -> int:
    a = load_assignment(args.id)
    folder = Path(args.dir).resolve()
    if not folder.is_dir():
        print(f"wiregrade: {folder} is not a folder", file=sys.stderr)
        return ExitCode.USAGE
    out = Path(args.out).resolve() if args.out else folder / ".wiregrade"
    result = run_session(a, folder, out, folder.name, _options(args, "all" if args.all else "public"))
    write_outputs(result, out)
    print_summary(result, out / "report.html")
    if summary := os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(summary, "a") as f:
            f.write(markdown_summary(result))
    return _exit_for_check(result)


def markdown_summary(result: SubmissionResult) -> str:
    """For $GITHUB_STEP_SUMMARY: the student's view (hidden checks: title and score only)."""
    r = result.for_student()
    icon = {Outcome.PASSED: "✅", Outcome.FAILED: "❌", Outcome.TIMEOUT: "⏱️", Outcome.ERROR: "⚠️"}
    which = "public checks" if r.visibility == "public" else "checks"
    lines = [
        f"## wiregrade: {r.assignment} — {r.score:g}/{r.max_score:g} on {len(r.checks)} {which}",
        "",
        "| | check | points |",
        "|---|---|---|",
    ]
    for c in r.checks:
        lines.append(f"| {icon[c.outcome]} | {c.title} | {c.score:g}/{c.points:g} |")
    for c in r.checks:
        if c.outcome is not Outcome.PASSED and not c.hidden:
            text = feedback_text(c).replace("\n", "\n> ")
            lines += ["", f"**{c.title}**", "", f"> {text}"]
    return "\n".join(lines) + "\n"


def cmd_result(args: argparse.Namespace) -> int:
    """Exit 0 if CHECK passed in a report folder: one step per check in a CI workflow."""
    try:
        result = SubmissionResult.load(Path(args.report) / "session.json")
    except (OSError, ValueError, KeyError) as exc:
        print(f"wiregrade: no results in {args.report} ({exc})", file=sys.stderr)
        return ExitCode.HARNESS_ERROR
    check = next((c for c in result.for_student().checks if c.id == args.check), None)
    if check is None:
        print(f"wiregrade: no check {args.check!r} in {args.report}", file=sys.stderr)
        return ExitCode.USAGE
    print(f"{check.title}: {check.outcome.value} ({check.score:g}/{check.points:g})")
    if check.outcome is not Outcome.PASSED:
        print(feedback_text(check))
    return ExitCode.OK if check.outcome is Outcome.PASSED else ExitCode.CHECKS_FAILED


def cmd_bundle(args: argparse.Namespace) -> int:
    out = make_bundle(load_assignment(args.id), Path(args.out))
    print(f"Student starter repository for {args.id}: {out} (public checks only)")
    return ExitCode.OK


def cmd_gradescope(args: argparse.Namespace) -> int:
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        make_gradescope(load_assignment(args.id), out, Path(tmp))
    print(f"Gradescope autograder for {args.id}: {out} (all checks; upload it, never give it out)")
    return ExitCode.OK


def cmd_grade(args: argparse.Namespace) -> int:
    a = load_assignment(args.id)
    subs = Path(args.submissions)
    if not subs.is_dir():
        print(f"wiregrade: {subs} is not a folder of submissions", file=sys.stderr)
        return ExitCode.USAGE
    out = Path(args.out)
    if args.cluster and (why := _needs_dask()):
        print(f"wiregrade: --cluster: {why}", file=sys.stderr)
        return ExitCode.USAGE
    results = _grade(a, subs, out, args)
    return ExitCode.HARNESS_ERROR if any(r.harness_error or r.errors for r in results) else ExitCode.OK


def _grade(a: Assignment, subs: Path, out: Path, args: argparse.Namespace) -> list[SubmissionResult]:
    st = _Style(sys.stderr)
    started = time.monotonic()
    trouble = 0

    def progress(done: int, total: int, r: SubmissionResult) -> None:
        nonlocal trouble
        bad = bool(r.harness_error or r.errors)
        trouble += bad
        mark = st("GRADER ERROR", "35") if bad else f"{r.score:g}/{r.max_score:g}"
        elapsed = time.monotonic() - started
        eta = elapsed / done * (total - done)
        bar = "#" * round(20 * done / total) + "-" * (20 - round(20 * done / total))
        print(
            f"[{bar}] {done}/{total} {r.student}: {mark} ({r.duration:.1f} s) · ETA {eta:.0f} s"
            f" · grader errors so far: {trouble}",
            file=sys.stderr,
        )

    taken: list[Intake] = []
    results = grade_batch(
        a,
        subs,
        out,
        args.jobs,
        _options(args, "all"),
        progress,
        force=getattr(args, "force", False),
        only=set(args.only) if getattr(args, "only", None) else None,
        adjustments=Path(args.adjustments) if getattr(args, "adjustments", None) else None,
        on_intake=taken.append,
        sessions=_cluster_sessions(args),
    )
    errors = [r.student for r in results if r.harness_error or r.errors]
    print(f"Graded {len(results)} submissions into {out}/ (gradebook.csv, index.html).")
    refused = sorted((r.student, r.refused) for r in results if r.refused)
    if refused:
        print(f"Refused ({len(refused)}, in the gradebook with the reason):")
        for student, why in refused:
            print(f"  {student}: {why}")
    for got in taken:
        if got.merged:
            print(f"Merged ({len(got.merged)}; the first part graded, the rest kept as parts):")
            for student, parts in sorted(got.merged.items()):
                print(f"  {student}: {' + '.join(parts)}")
        for entry, sid in sorted(got.renamed.items()):
            print(f"Renamed: {entry} takes the id {sid} (its own is a name the batch writes in {out}/)")
    if errors:
        print(st(f"Grader errors (not zeros, re-run these): {', '.join(errors)}", "35"))
    return results


def _cluster_sessions(args: argparse.Namespace) -> Sessions | None:
    """Where `grade` runs its sessions: a cluster (--cluster), warm processes here (--warm),
    or None: this machine's cold pool."""
    if not getattr(args, "cluster", None):
        if getattr(args, "warm", False):
            from ._warm import WarmSessions

            return WarmSessions(args.jobs)
        return None
    from ._cluster import ClusterSessions

    certs = Path(args.cluster_certs) if args.cluster_certs else None
    return ClusterSessions(args.cluster, certs, wait_for_workers=args.wait_for_workers)


def _needs_dask() -> str:
    """'' if Dask distributed can be imported, else what to install."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        return "this needs Dask distributed: pip install 'wiregrade[cluster]'"
    return ""


def cmd_worker(args: argparse.Namespace) -> int:
    from ._cluster import INSTALL_HINT, missing_tools, run_worker

    if why := _needs_dask():
        print(f"wiregrade worker: {why}", file=sys.stderr)
        return ExitCode.USAGE
    if missing := missing_tools():
        print(
            f"wiregrade worker: this machine cannot grade: missing on PATH: {', '.join(missing)}.\n"
            f"Install them ({INSTALL_HINT}) and start the worker again.",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    slots = args.slots or os.cpu_count() or 1
    run_worker(args.address, Path(args.certs) if args.certs else None, slots, args.name, warm=args.warm)
    return ExitCode.OK


def cmd_cluster_certs(args: argparse.Namespace) -> int:
    from ._cluster_certs import make_cluster_certs

    folder = Path(args.dir)
    try:
        made = make_cluster_certs(folder, args.host or None)
    except FileExistsError as exc:
        print(f"wiregrade: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    print(f"Made {len(made)} files in {folder}/ (keys readable by you alone):")
    print("  scheduler machine: ca.pem scheduler.pem scheduler.key")
    print("  each worker:       ca.pem worker.pem worker.key")
    print("  grading machine:   ca.pem client.pem client.key")
    return ExitCode.OK


def cmd_report(args: argparse.Namespace) -> int:
    try:
        results = rerender(Path(args.out), Path(args.adjustments) if args.adjustments else None)
    except IntakeError as exc:
        print(f"wiregrade: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    print(f"Rendered {len(results)} results in {args.out} (nothing was run).")
    return ExitCode.OK


def cmd_samples(args: argparse.Namespace) -> int:
    a = load_assignment(args.id)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for s in samples_of(a):
        materialize(s, out / s.name)
        print(f"{s.name:<12} {s.description}")
    return ExitCode.OK


def cmd_demo(args: argparse.Namespace) -> int:
    """Make each exercise's reference and samples, grade them, and compare with sample.toml."""
    ids = args.ids or assignment_ids()
    code = ExitCode.OK
    for aid in ids:
        a = load_assignment(aid)
        out = Path(args.out) / aid
        subs = out / "submissions"
        subs.mkdir(parents=True, exist_ok=True)
        samples = samples_of(a)
        for s in samples:
            materialize(s, subs / s.name)
        print(f"== {aid}: {len(samples)} submissions", file=sys.stderr)
        results = _grade(a, subs, out / "reports", args)
        expected = {s.name: s.expect_failed for s in samples}
        for r in results:
            failed = {c.id for c in r.checks if c.outcome is not Outcome.PASSED}
            if failed != expected.get(r.student, failed):
                print(
                    f"UNEXPECTED {aid}/{r.student}: failed {sorted(failed)}, expected "
                    f"{sorted(expected[r.student])}",
                    file=sys.stderr,
                )
                code = ExitCode.HARNESS_ERROR
            if r.harness_error or r.errors:
                code = ExitCode.HARNESS_ERROR
        print(f"Class page: {out / 'reports' / 'index.html'}")
    return code


def cmd_capture(args: argparse.Namespace) -> int:
    """Make an exercise's capture with a seed, as grading does (the handout's practice one)."""
    load_assignment(args.id)
    seed = args.seed
    if args.student:
        secret = os.environ.get(SECRET_ENV, "")
        if args.graded and not secret:  # the secret the batch made for its OUT
            try:
                secret = graded_capture_secret(Path(args.graded)) or ""
            except IntakeError as exc:
                print(f"wiregrade: {exc}", file=sys.stderr)
                return ExitCode.USAGE
            if not secret:
                print(
                    f"wiregrade: {args.graded} was graded with no capture secret of its own", file=sys.stderr
                )
                return ExitCode.USAGE
        saved = os.environ.get(SECRET_ENV)
        os.environ[SECRET_ENV] = secret  # seed_for reads the environment, as a session does
        try:
            seed = seed_for(args.id, args.student)
        finally:
            if saved is None:
                del os.environ[SECRET_ENV]
            else:
                os.environ[SECRET_ENV] = saved
    cmd = [sys.executable, "-m", "harness._capture", "--assignment", args.id, "--seed", seed]
    cmd += ["--part", args.part, "--name", args.name, "--out", args.out]
    return subprocess.run(cmd, check=False).returncode


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wiregrade", description="Grade TLS and encryption exercises.")
    sub = p.add_subparsers(dest="command", required=True)

    def session_flags(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--wire",
            choices=("auto", "dumpcap", "relay"),
            default="auto",
            help="how to see the traffic (auto: capture if allowed, else a relay)",
        )
        sp.add_argument(
            "--student-user",
            choices=("auto", "off"),
            default="auto",
            help="as root, run student programs as an unprivileged uid (auto) or, if you must, as root (off)",
        )
        sp.add_argument(
            "--isolation",
            choices=("auto", "off"),
            default="auto",
            help="a private network namespace per submission (auto) or none",
        )
        sp.add_argument(
            "--sandbox",
            choices=("auto", "off"),
            default="auto",
            help="student programs in a bubblewrap sandbox (auto: required when grading, used where "
            "it runs in a self-check) or, if you must, outside one (off)",
        )

    sub.add_parser("list", help="the exercises").set_defaults(fn=cmd_list)

    c = sub.add_parser("check", help="self-check a folder with the public checks")
    c.add_argument("id")
    c.add_argument("dir", nargs="?", default=".")
    c.add_argument("--out", help="where to write the report (default DIR/.wiregrade)")
    c.add_argument("--all", action="store_true", help="hidden checks too (for an autograder, not students)")
    session_flags(c)
    c.set_defaults(fn=cmd_check)

    r = sub.add_parser("result", help="exit 0 if one check passed in a report folder (CI steps)")
    r.add_argument("report")
    r.add_argument("check")
    r.set_defaults(fn=cmd_result)

    b = sub.add_parser("bundle", help="the starter repository for students (public checks only)")
    b.add_argument("id")
    b.add_argument("--out", required=True)
    b.set_defaults(fn=cmd_bundle)

    gs = sub.add_parser("gradescope", help="the Gradescope autograder.zip (all checks)")
    gs.add_argument("id")
    gs.add_argument("--out", required=True)
    gs.set_defaults(fn=cmd_gradescope)

    g = sub.add_parser("grade", help="grade every submission in a folder with all checks")
    g.add_argument("id")
    g.add_argument("submissions")
    g.add_argument("--out", required=True)
    g.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2)))
    g.add_argument("--force", action="store_true", help="grade again even what the store has already")
    g.add_argument(
        "--only", action="append", metavar="STUDENT", help="regrade this student alone (repeatable)"
    )
    g.add_argument("--adjustments", help="CSV of student,points,reason applied in the gradebook")
    g.add_argument(
        "--cluster", metavar="ADDRESS", help="run the sessions on this Dask scheduler (tls://HOST:PORT)"
    )
    g.add_argument(
        "--cluster-certs",
        metavar="DIR",
        help="with --cluster: the client's certificates (`wiregrade cluster-certs`; default: Dask's config)",
    )
    g.add_argument(
        "--wait-for-workers",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="with --cluster: how long to wait for a grading worker to join (default 60)",
    )
    g.add_argument(
        "--warm",
        action="store_true",
        help="fork each session from one process with the engine imported (faster start, same grades)",
    )
    session_flags(g)
    g.set_defaults(fn=cmd_grade)

    wk = sub.add_parser("worker", help="a Dask worker that grades (one session per core) for a scheduler")
    wk.add_argument("address", help="the scheduler, tls://HOST:PORT")
    wk.add_argument(
        "--certs", help="the worker's certificates from `wiregrade cluster-certs` (default: Dask's config)"
    )
    wk.add_argument("--slots", type=int, default=0, help="sessions at once (default: one per core)")
    wk.add_argument("--name", help="the worker's name on the dashboard")
    wk.add_argument("--warm", action="store_true", help="fork each session from one warm process")
    wk.set_defaults(fn=cmd_worker)

    cc = sub.add_parser(
        "cluster-certs", help="a CA and scheduler, worker and client certificates (mutual TLS)"
    )
    cc.add_argument("dir")
    cc.add_argument(
        "--host", action="append", metavar="NAME", help="a name or address of the machines (repeatable)"
    )
    cc.set_defaults(fn=cmd_cluster_certs)

    rp = sub.add_parser(
        "report", help="render every report, the gradebook and class page again from OUT's store"
    )
    rp.add_argument("out")
    rp.add_argument("--adjustments", help="CSV of student,points,reason applied in the gradebook")
    rp.set_defaults(fn=cmd_report)

    s = sub.add_parser("samples", help="make the reference and sample submissions (with fresh keys)")
    s.add_argument("id")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_samples)

    cp = sub.add_parser("capture", help="make an exercise's capture from a seed (practice: --seed practice)")
    cp.add_argument("id")
    cp.add_argument("--seed", default="practice")
    cp.add_argument(
        "--student",
        help="make the capture this student was graded on (same WIREGRADE_CAPTURE_SECRET): for a dispute",
    )
    cp.add_argument(
        "--graded",
        metavar="OUT",
        help="with --student, when WIREGRADE_CAPTURE_SECRET is not set: the secret `grade` made for OUT",
    )
    cp.add_argument("--part", choices=("public", "hidden"), default="public")
    cp.add_argument("--name", default="practice", help="file names: NAME.pcap, NAME-answer.json")
    cp.add_argument("--out", default=".")
    cp.set_defaults(fn=cmd_capture)

    d = sub.add_parser("demo", help="make the samples and grade them (what the README's first command runs)")
    d.add_argument("ids", nargs="*", metavar="ID", help="exercises (default: all)")
    d.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "wiregrade-demo"))
    d.add_argument("--jobs", type=int, default=2)
    session_flags(d)
    d.set_defaults(fn=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return ExitCode.USAGE if exc.code else ExitCode.OK
    try:
        return int(args.fn(args))
    except KeyError as exc:
        print(f"wiregrade: {exc.args[0]}", file=sys.stderr)
        return ExitCode.USAGE
    except HarnessError as exc:
        print(f"wiregrade: grader error: {exc}", file=sys.stderr)
        return ExitCode.HARNESS_ERROR


if __name__ == "__main__":
    sys.exit(main())
