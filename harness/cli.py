"""The ``wiregrade`` command: a thin layer over the runner and the renderers."""

from __future__ import annotations

import argparse
import contextlib
import enum
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from ._assignment import Assignment, assignment_ids, load_assignment
from ._bundle import make_bundle, make_gradescope
from ._capture import SECRET_ENV, seed_for
from ._classroom import REPORT_DIR, bundled_engine, markdown_summary
from ._errors import HarnessError
from ._exports import classroom_prefix_problem
from ._feedback import FeedbackError, export_feedback
from ._outputs import feedback_text, write_outputs
from ._proc import stop_harness_processes
from ._results import Outcome, SubmissionResult
from ._runner import (
    Intake,
    IntakeError,
    SessionOptions,
    Sessions,
    deadline_of,
    grade_batch,
    graded_capture_secret,
    rerender,
    run_session,
)
from ._samples import materialize, samples_of
from ._terminal import LiveCheck, Style, print_summary


class ExitCode(enum.IntEnum):
    OK = 0  # check: all public checks passed; grade: every submission graded
    CHECKS_FAILED = 1  # check: some public check failed
    USAGE = 2
    HARNESS_ERROR = 3  # the grader itself failed somewhere: results are incomplete


INTERRUPTED = 130  # as a shell reports a command ended by Ctrl-C


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


def submission_files(a: Assignment) -> list[str]:
    """The files a student writes, as the exercise's settings name them (programs, configs)."""
    names = []
    for section in ("program", "tunnel"):
        for value in a.settings.get(section, {}).values():
            if isinstance(value, str) and value.endswith((".py", ".sh", ".conf", ".cnf")):
                names.append(value)
    return names


def _not_a_submission(a: Assignment, folder: Path) -> str:
    """Why ``folder`` is plainly not this exercise's submission folder, or ""."""
    files = submission_files(a)
    if not files or any((folder / f).is_file() for f in files):
        return ""
    wanted = files[0] if len(files) == 1 else ", ".join(files[:-1]) + " or " + files[-1]
    return f"no {wanted} in {folder}: is this your submission folder?"


def cmd_check(args: argparse.Namespace) -> int:
    folder = Path(args.dir).resolve()
    # A student's repository carries its exercise's checks: those first, whatever the venv's
    # engine holds. Never with --all (an autograder): there the folder is the student's.
    engine = None if args.all else bundled_engine(folder, args.id)
    with _engine_home(engine):
        a = load_assignment(args.id)
        if not folder.is_dir():
            print(f"wiregrade: {folder} is not a folder", file=sys.stderr)
            return ExitCode.USAGE
        # A student at a prompt in the wrong folder: say so. An autograder (--all) or CI grades
        # what it was handed, and the checks tell the student which file is missing.
        automated = args.all or os.environ.get("CI")
        if not automated and (why := _not_a_submission(a, folder)):
            print(f"wiregrade: {why}", file=sys.stderr)
            return ExitCode.USAGE
        out = Path(args.out).resolve() if args.out else folder / REPORT_DIR
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(
                f"wiregrade: cannot write the report in {out}: {exc.strerror} (--out another folder?)",
                file=sys.stderr,
            )
            return ExitCode.USAGE
        live = LiveCheck(a, folder)
        options = _options(args, "all" if args.all else "public")
        result = run_session(a, folder, out, folder.name, options, on_event=live.event)
        write_outputs(result, out)
    print_summary(result, out / "report.html", streamed=live.streamed)
    if summary := os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(summary, "a") as f:
            f.write(markdown_summary(result))
    return _exit_for_check(result)


@contextlib.contextmanager
def _engine_home(engine: Path | None) -> Iterator[None]:
    """WIREGRADE_HOME set to ``engine`` for one command (the session it starts inherits it)."""
    if engine is None:
        yield
        return
    saved = os.environ.get("WIREGRADE_HOME")
    os.environ["WIREGRADE_HOME"] = str(engine)
    try:
        yield
    finally:
        if saved is None:
            del os.environ["WIREGRADE_HOME"]
        else:
            os.environ["WIREGRADE_HOME"] = saved


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
    if check.outcome is Outcome.ERROR:
        return ExitCode.HARNESS_ERROR
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
    try:
        deadline_of(a, args.deadline)
    except HarnessError as exc:
        print(f"wiregrade: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    if args.classroom_prefix and (why := classroom_prefix_problem(subs, args.classroom_prefix)):
        print(f"wiregrade: --classroom-prefix: {why}", file=sys.stderr)
        return ExitCode.USAGE
    if args.cluster and (why := _needs_dask()):
        print(f"wiregrade: --cluster: {why}", file=sys.stderr)
        return ExitCode.USAGE
    results, problem = _grade(a, subs, out, args)
    if problem:
        return ExitCode.USAGE
    return ExitCode.HARNESS_ERROR if any(r.harness_error or r.errors for r in results) else ExitCode.OK


def _skipped(subs: Path) -> list[str]:
    """Children of SUBMISSIONS that intake passes over by design (never a student's)."""
    return sorted(
        c.name for c in subs.iterdir() if c.name.startswith(".") or c.name == "submission_metadata.yml"
    )


def _batch_problem(subs: Path, got: Intake, only: list[str] | None) -> str:
    """What makes this batch a usage mistake (nothing in it to grade, --only naming nobody), or ""."""
    if not got.ready and not got.refused:
        skipped = _skipped(subs)
        if skipped:
            return f"{subs} holds no submissions, only entries that are never graded: {', '.join(skipped)}"
        return f"{subs} is empty: no submissions to grade. Is it the folder that holds them?"
    if not got.ready:
        return (
            f"nothing in {subs} can be graded: each of its {len(got.refused)} entries was refused (see "
            "below). Is it the folder of submissions (one folder or archive per student)?"
        )
    if only and not set(only) & set(got.ready):
        known = ", ".join(sorted(got.ready)[:10]) + (", ..." if len(got.ready) > 10 else "")
        return f"--only {', '.join(only)}: no such student in {subs} (students there: {known})"
    return ""


def _grade(
    a: Assignment, subs: Path, out: Path, args: argparse.Namespace
) -> tuple[list[SubmissionResult], str]:
    """Grade a batch and tell what happened; returns the results and the usage mistake, if any."""
    st = Style(sys.stderr)
    started = time.monotonic()
    trouble = 0
    graded_now = 0

    def progress(done: int, total: int, r: SubmissionResult) -> None:
        nonlocal trouble, graded_now
        graded_now = done
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

    def interrupted(signum: int, frame: object) -> None:
        stop_harness_processes()  # else the pool waits for every running session to end
        raise KeyboardInterrupt

    taken: list[Intake] = []
    main_thread = threading.current_thread() is threading.main_thread()  # where signals are handled
    previous = signal.signal(signal.SIGINT, interrupted) if main_thread else None
    try:
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
            deadline=deadline_of(a, args.deadline) if getattr(args, "deadline", None) else None,
            sessions=_cluster_sessions(args),
            classroom_prefix=getattr(args, "classroom_prefix", None) or "",
        )
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
    errors = [r.student for r in results if r.harness_error or r.errors]
    only: list[str] | None = getattr(args, "only", None)
    problem = _batch_problem(subs, taken[0], only) if taken else ""
    if problem:
        print(f"wiregrade: {problem}", file=sys.stderr)
    elif graded_now == 0:
        print(
            f"Nothing to do: the {len(results)} submissions in {subs} were all graded before, with the "
            f"same files and the same grader (kept in {out}/). --force grades them all again; "
            "--only STUDENT regrades one."
        )
    else:
        kept = len(results) - graded_now
        print(
            f"Graded {graded_now} submissions"
            + (f" ({kept} more unchanged since the last run)" if kept else "")
            + f" into {out}/ (gradebook.csv, index.html)."
        )
    if only and taken and (unknown := sorted(set(only) - set(taken[0].ready))) and not problem:
        print(f"--only named no such student: {', '.join(unknown)} (not graded)")
    if skipped := _skipped(subs):
        print(f"Skipped ({len(skipped)}; hidden files and Gradescope's metadata are never submissions):")
        for name in skipped:
            print(f"  {name}")
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
        if got.export_files:
            print(f"Read as the export's own (not students'): {', '.join(got.export_files)}")
        if late := sorted(s for s, a in got.arrivals.items() if a.late):
            print(f"Late ({len(late)}, marked in the gradebook, no penalty): {', '.join(late)}")
        for entry, sid in sorted(got.renamed.items()):
            print(f"Renamed: {entry} takes the id {sid} (its own is a name the batch writes in {out}/)")
    if errors:
        print(st(f"Grader errors (not zeros, re-run these): {', '.join(errors)}", "35"))
    return results, problem


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


def cmd_feedback(args: argparse.Namespace) -> int:
    """One zip per student of student-safe files only, ready to upload to an LMS."""
    dest = Path(args.dest)
    try:
        done = export_feedback(Path(args.out), dest)
    except FeedbackError as exc:
        print(f"wiregrade: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except OSError as exc:
        print(f"wiregrade: could not write the feedback in {dest}: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    print(
        f"Wrote {len(done.zips)} feedback zips to {dest}/ (report.html, results.json, README.txt each; "
        "hidden checks show outcome and score only; the capture is left out: it holds the hidden "
        "checks' traffic too)."
    )
    if done.refused:
        print(
            f"Refused at intake ({len(done.refused)}; their zip holds a note saying why): "
            + ", ".join(done.refused)
        )
    st = Style(sys.stderr)
    if done.grader_errors:
        print(st(f"Grader errors (re-run these before sending): {', '.join(done.grader_errors)}", "35"))
    for student, why in done.withheld.items():
        print(st(f"NOT WRITTEN {student}: {why} (a wiregrade bug: please report it)", "35"), file=sys.stderr)
    return ExitCode.HARNESS_ERROR if done.withheld or done.grader_errors else ExitCode.OK


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
        results, _ = _grade(a, subs, out / "reports", args)
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


def capture_name(what: str) -> str:
    """File names for a capture made from ``what`` (a seed or a student): its own characters
    where they are safe in a file name, so seed S gives S.pcap and practice gives practice.pcap."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", what).strip(".-")
    return name[:64] or "capture"


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
    name = args.name or capture_name(args.student or args.seed)
    cmd = [sys.executable, "-m", "harness._capture", "--assignment", args.id, "--seed", seed]
    cmd += ["--part", args.part, "--name", name, "--out", args.out]
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
    c.add_argument("--out", help=f"where to write the report and all it made (default DIR/{REPORT_DIR})")
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
        "--deadline",
        help="ISO 8601 date-time (e.g. 2026-03-01T23:59:00+00:00): work an export names as submitted "
        "after it is marked late, without penalty (default: deadline in assignment.toml)",
    )
    g.add_argument(
        "--classroom-prefix",
        metavar="PREFIX",
        help="GitHub Classroom clones are named PREFIX<login> (e.g. hw1-): graded as <login> "
        "(default: read from a SUBMISSIONS folder named <assignment>-submissions, never guessed)",
    )
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

    fb = sub.add_parser(
        "feedback", help="one zip per student of what a student may be sent (for an LMS), from OUT's store"
    )
    fb.add_argument("out", help="a folder `wiregrade grade` wrote")
    fb.add_argument("--out", dest="dest", required=True, metavar="DIR", help="where to write the zips")
    fb.set_defaults(fn=cmd_feedback)

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
    cp.add_argument(
        "--name", help="file names: NAME.pcap, NAME-answer.json (default: the seed, or the student)"
    )
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
    except KeyboardInterrupt:  # the session and its programs were stopped on the way out
        print("\nwiregrade: interrupted (Ctrl-C); everything it started was stopped.", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
