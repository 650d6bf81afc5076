"""One grading session: one submission, one pytest run, in its own process.

Run as ``python -m harness._session``. It enters a private network namespace first (it
must still be single-threaded to do so), becomes a child subreaper, then runs pytest over
``graders/<id>`` with only wiregrade's plugin loaded. Its only output is OUT/session.json
(plus the capture): the parent reads that file, so a crash here never takes a batch along.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness._session")
    ap.add_argument("--assignment", required=True)
    ap.add_argument("--submission", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--student", default="")
    ap.add_argument("--visibility", default="all", choices=("all", "public"))
    ap.add_argument("--wire", default="auto", choices=("auto", "dumpcap", "relay"))
    ap.add_argument("--isolation", default="auto", choices=("auto", "off"))
    ap.add_argument(
        "--student-user",
        default="auto",
        choices=("auto", "off"),
        help="as root: run student programs as an unprivileged uid (auto) or as root (off)",
    )
    ap.add_argument(
        "--sandbox",
        default="auto",
        choices=("auto", "off"),
        help="student programs in a bubblewrap sandbox (auto; required when grading for marks) or not (off)",
    )
    ap.add_argument("-k", dest="keyword", default=None, help="only checks matching (debugging)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)

    from ._proc import die_with_parent

    parent, owner = os.getppid(), os.getuid()
    die_with_parent()
    # Before anything starts a thread: unshare(CLONE_NEWUSER) needs a single-threaded process.
    from ._isolation import enter_private_network

    iso = enter_private_network(args.isolation)
    die_with_parent(parent)  # entering a user namespace changed our credentials: arm it again
    names_note = ""
    private_tmp = None
    import tempfile

    if iso.private_network:
        from ._assignment import load_assignment as _load
        from ._isolation import map_host_names, private_mounts, private_session_tmp

        try:
            private_mounts()
            private_tmp = private_session_tmp(owner)
            names_note = map_host_names(
                [_load(args.assignment).host], tempfile.mkdtemp(prefix="wiregrade-ns-")
            )
        except OSError as exc:
            names_note = f"could not map the handout's host name to 127.0.0.1 ({exc})"
    if private_tmp is None:  # our folders outlive a kill -9 here: remove those of dead sessions
        from ._context import sweep_stale_sessions

        sweep_stale_sessions()
    from ._proc import become_subreaper

    become_subreaper()
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    for var in (
        "SSLKEYLOGFILE",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
        "PYTEST_ADDOPTS",
    ):
        os.environ.pop(var, None)

    import pytest

    from ._assignment import load_assignment
    from ._context import set_isolation, set_sandbox_mode, set_student_user
    from ._user import choose_student_user

    user = choose_student_user(args.student_user)
    set_student_user(user)
    set_sandbox_mode(args.sandbox)
    notes = [n for n in (names_note, user.note if user else "") if n]
    if notes:
        iso = replace(iso, detail="; ".join([iso.detail, *notes]))
    set_isolation(iso)
    assignment = load_assignment(args.assignment)
    pytest_args = [
        str(assignment.grader_dir),
        "-p",
        "harness.plugin",
        "-p",
        "pytest_timeout",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:stepwise",
        f"--rootdir={assignment.grader_dir}",
        "-c",
        str(assignment.grader_dir / "pytest.ini"),
        "--wiregrade-assignment",
        args.assignment,
        "--wiregrade-submission",
        args.submission,
        "--wiregrade-out",
        args.out,
        "--wiregrade-visibility",
        args.visibility,
        "--wiregrade-wire",
        args.wire,
        "--wiregrade-student",
        args.student,
        "-q" if not args.verbose else "-v",
        "--no-header",
        "-W",
        "ignore::DeprecationWarning",
    ]
    if args.keyword:
        pytest_args += ["-k", args.keyword]
    sys.stdout.flush()
    return int(pytest.main(pytest_args))


if __name__ == "__main__":
    sys.exit(main())
