"""wiregrade's engine: what graders use to state what a student's program must do.

A grader is a pytest module in ``graders/<id>/`` whose tests are declared with
:func:`check` and raise :class:`CheckFailed` (via :func:`fail`) when the student's program
misbehaves, or :class:`Blocked` when a check it ``needs`` did not pass. Fixtures from
:mod:`harness.plugin` provide the rest: ``grading`` (the session's context), ``student``
(launch the student's programs), ``wire`` (the capture) and ``evidence`` (attach what a
check saw to the report).
"""

from ._accounts import Account, add_accounts, server_account, student_account
from ._answers import differences, run_json, shape_error, show
from ._assignment import Assignment, load_assignment
from ._capture import PRACTICE, Scene, apart_from_practice, loopback, make_for_student, rng_for
from ._checks import check
from ._context import EvidenceRecorder, GradingContext, Launcher, Shared
from ._dissect import (
    ALERTS,
    HANDSHAKE_TYPES,
    VERSIONS,
    Transcript,
    WireFrame,
    dissect,
    frame_rows,
    not_tls_records,
    printable,
)
from ._errors import Blocked, CheckFailed, HarnessError, StudentTimeout, fail
from ._listeners import Ending, ask_to_end, is_loopback, listening_addresses, socket_owner
from ._packets import Connection, parse_segment
from ._process import Limits, StudentProcess
from ._results import CheckResult, Outcome, SubmissionResult, Visibility
from ._safefile import NotARegularFile, regular_files
from ._servers import VARIANTS, ClientVisit, EchoServer, GraderPKI, HTTPSTestServer, TLSTestServer
from ._sshd import SSHLog, SSHServer, sshd_unavailable
from ._sshkeys import SSHKeyPair, host_certificate
from ._tls import (
    VERIFY_NO_CHECK_TIME,
    HTTPReply,
    TLSSession,
    client_context,
    der_to_pem,
    drop_mid_handshake,
    http_get,
    legacy_tls_unavailable,
    memory_handshake,
    plain_exchange,
    tls_session,
)
from ._wire import Wire

__all__ = [
    "EchoServer",
    "socket_owner",
    "differences",
    "run_json",
    "shape_error",
    "show",
    "PRACTICE",
    "Scene",
    "apart_from_practice",
    "loopback",
    "make_for_student",
    "rng_for",
    "parse_segment",
    "HTTPReply",
    "Account",
    "Ending",
    "SSHKeyPair",
    "SSHLog",
    "SSHServer",
    "add_accounts",
    "ask_to_end",
    "host_certificate",
    "is_loopback",
    "listening_addresses",
    "server_account",
    "sshd_unavailable",
    "student_account",
    "ALERTS",
    "HANDSHAKE_TYPES",
    "VERSIONS",
    "VARIANTS",
    "Assignment",
    "Blocked",
    "ClientVisit",
    "GraderPKI",
    "HTTPSTestServer",
    "TLSTestServer",
    "CheckFailed",
    "CheckResult",
    "Connection",
    "EvidenceRecorder",
    "GradingContext",
    "HarnessError",
    "Launcher",
    "Limits",
    "Outcome",
    "Shared",
    "StudentProcess",
    "StudentTimeout",
    "SubmissionResult",
    "TLSSession",
    "Transcript",
    "Visibility",
    "Wire",
    "WireFrame",
    "check",
    "client_context",
    "der_to_pem",
    "dissect",
    "frame_rows",
    "drop_mid_handshake",
    "http_get",
    "fail",
    "VERIFY_NO_CHECK_TIME",
    "legacy_tls_unavailable",
    "memory_handshake",
    "load_assignment",
    "not_tls_records",
    "NotARegularFile",
    "regular_files",
    "plain_exchange",
    "printable",
    "tls_session",
]
