"""Grading on a Dask cluster: a real `dask scheduler` and `wiregrade worker` processes on loopback,
mutual TLS, started here. The gradebook equals a local batch's; a worker killed mid-batch loses
nobody and grades nobody twice; a worker with another grader refuses with a grader ERROR."""

from __future__ import annotations

import collections
import csv
import os
import queue
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from harness._assignment import load_assignment  # noqa: E402
from harness._cluster import ClusterSessions, Task, cluster_address, engine_of, pack, unpack  # noqa: E402
from harness._cluster_certs import make_cluster_certs  # noqa: E402
from harness._errors import HarnessError  # noqa: E402
from harness._proc import _proc_stat, register_harness_pid, unregister_harness_pid  # noqa: E402
from harness._results import SubmissionResult  # noqa: E402
from harness._runner import Batch, IntakeError, SessionOptions, grade_batch, student_dir  # noqa: E402
from harness._store import fingerprint_grader  # noqa: E402
from harness.cli import main  # noqa: E402
from tests.conftest import ROOT, Exercises, descends_from, needs_tshark, own_session_processes  # noqa: E402

MIXED = [
    "reference",
    "good",
    "lecture",
    "plaintext",
    "allows-tls10",
    "wrong-certificate",
    "crashes-on-junk",
    "tls12-only",
]


# --- processes started by these tests ----------------------------------------------------------


class Started:
    """A process of ours whose output is drained by a thread, so a line can be waited for."""

    def __init__(self, cmd: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        register_harness_pid(self.proc.pid)  # a local batch's reaping of orphans leaves it be
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")  # its end

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if text in line:
                return line
            if line == "":
                break
        raise AssertionError(f"no {text!r} from {self.proc.args!r}; it said:\n{''.join(self.seen)[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        unregister_harness_pid(self.proc.pid)


class Cluster:
    """A TLS scheduler on loopback and the workers started for it."""

    def __init__(self, certs: Path) -> None:
        self.certs = certs
        self.scheduler = Started(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--protocol",
                "tls",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                "127.0.0.1:0",
                "--no-show",
                "--tls-ca-file",
                str(certs / "ca.pem"),
                "--tls-cert",
                str(certs / "scheduler.pem"),
                "--tls-key",
                str(certs / "scheduler.key"),
            ]
        )
        line = self.scheduler.wait_for("Scheduler at:")
        self.address = line.split("Scheduler at:")[1].strip()
        self.workers: list[Started] = []

    def worker(self, name: str, env: dict[str, str] | None = None, *, warm: bool = False) -> Started:
        w = Started(
            [sys.executable, "-m", "harness", "worker", self.address, "--certs", str(self.certs)]
            + ["--slots", "1", "--name", name]
            + (["--warm"] if warm else []),
            env,
        )
        self.workers.append(w)
        w.wait_for("sessions at once")
        return w

    def sessions(self) -> ClusterSessions:
        return ClusterSessions(self.address, self.certs, wait_for_workers=30)

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        self.scheduler.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cluster") / "certs"
    make_cluster_certs(folder, ["localhost", "127.0.0.1"])
    return folder


@pytest.fixture
def cluster(certs: Path) -> Iterator[Cluster]:
    c = Cluster(certs)
    try:
        yield c
    finally:
        c.stop()


def mixed_batch(exercises: Exercises, folder: Path, names: list[str] = MIXED) -> Path:
    for name in names:
        shutil.copytree(exercises.submissions("tls-server") / name, folder / name)
    return folder


def gradebook(path: Path) -> list[dict[str, str]]:
    """The gradebook without the one column that measures this run (its durations)."""
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k != "duration_s"} for row in csv.DictReader(f)]


def descendants(root: int) -> set[int]:
    return {
        int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != root and descends_from(int(p), root)
    }


def alive(pids: set[int]) -> set[int]:
    """Those still running (a zombie is dead: it only awaits its reaper)."""
    return {p for p in pids if _proc_stat(p) is not None}


def session_processes() -> list[str]:
    return own_session_processes(also=("stunnel4", "nginx"))


# --- the cluster, for real ---------------------------------------------------------------------


@pytest.mark.slow
@needs_tshark
def test_a_cluster_batch_equals_the_local_batch(
    exercises: Exercises, cluster: Cluster, tmp_path: Path
) -> None:
    cluster.worker("one")
    cluster.worker("two", warm=True)  # a warm worker grades as a cold one does
    subs = mixed_batch(exercises, tmp_path / "subs")
    a = load_assignment("tls-server")
    local = grade_batch(a, subs, tmp_path / "local", jobs=2)
    seen: list[str] = []
    remote = grade_batch(
        a,
        subs,
        tmp_path / "remote",
        sessions=cluster.sessions(),
        progress=lambda d, t, r: seen.append(r.student),
    )
    assert sorted(seen) == sorted(MIXED)
    assert not [r.student for r in remote if r.harness_error or r.errors]
    assert gradebook(tmp_path / "remote" / "gradebook.csv") == gradebook(tmp_path / "local" / "gradebook.csv")
    assert len(gradebook(tmp_path / "remote" / "gradebook.csv")) == len(MIXED)
    for name in MIXED:  # what a report and a dispute need came back from the worker
        folder = student_dir(tmp_path / "remote", name)
        assert (folder / "report.html").is_file() and (folder / "session.json").is_file()
        assert SubmissionResult.load(folder / "session.json").score == next(
            r.score for r in local if r.student == name
        )
    assert (student_dir(tmp_path / "remote", "reference") / "capture.pcap").stat().st_size > 0
    # resume: nothing is sent again when nothing changed
    again: list[str] = []
    grade_batch(
        a, subs, tmp_path / "remote", sessions=cluster.sessions(), progress=lambda d, t, r: again.append("")
    )
    assert again == []


@pytest.mark.slow
@needs_tshark
@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_a_worker_killed_mid_batch_loses_nobody(
    exercises: Exercises, cluster: Cluster, tmp_path: Path, warm: bool
) -> None:
    workers = [cluster.worker("one", warm=warm), cluster.worker("two", warm=warm)]
    names = ["reference", "lecture", "plaintext", "good", "allows-tls10", "tls12-only"]
    subs = mixed_batch(exercises, tmp_path / "subs", names)
    killed: list[int] = []
    below: set[int] = set()

    def grading(w: Started) -> bool:  # a worker with a session running under it
        return any(descends_from(int(p.split()[0]), w.proc.pid) for p in own_session_processes())

    def kill_one(done: int, total: int, r: SubmissionResult) -> None:
        if killed:
            return
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            busy = [w for w in workers if grading(w)]
            if busy:
                below.update(descendants(busy[0].proc.pid))  # its sessions and their students
                busy[0].proc.send_signal(signal.SIGKILL)
                busy[0].proc.wait()
                killed.append(busy[0].proc.pid)
                return
            time.sleep(0.05)  # a bounded wait for a session to be running
        raise AssertionError("no worker was grading")

    seen: list[str] = []

    def progress(done: int, total: int, r: SubmissionResult) -> None:
        seen.append(r.student)
        kill_one(done, total, r)

    results = grade_batch(
        load_assignment("tls-server"), subs, tmp_path / "out", sessions=cluster.sessions(), progress=progress
    )
    assert killed, "no worker was killed"
    assert collections.Counter(seen) == collections.Counter(names), "each student graded exactly once"
    assert sorted(r.student for r in results) == sorted(names)
    assert not [r.student for r in results if r.harness_error or r.errors]
    assert len(gradebook(tmp_path / "out" / "gradebook.csv")) == len(names)
    assert below, "the killed worker had no session running"
    deadline = time.monotonic() + 15
    while (session_processes() or alive(below)) and time.monotonic() < deadline:
        time.sleep(0.1)  # the killed worker's session dies with it (PDEATHSIG)
    assert session_processes() == []
    assert alive(below) == set(), "a process of the killed worker outlived it"


@pytest.mark.slow
def test_a_worker_with_another_grader_refuses_naming_both(
    exercises: Exercises, cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other-checkout"
    for part in ("graders", "assignments", "harness", "reports"):
        shutil.copytree(ROOT / part, other / part, ignore=shutil.ignore_patterns("__pycache__"))
    grader = sorted((other / "graders" / "tls-server").glob("*.py"))[0]
    grader.write_text(grader.read_text() + "\n# a fix the grading machine does not have\n")
    cluster.worker("stale", env={"WIREGRADE_HOME": str(other)})
    with monkeypatch.context() as m:
        m.setenv("WIREGRADE_HOME", str(other))
        theirs = fingerprint_grader(load_assignment("tls-server"))
    ours = fingerprint_grader(load_assignment("tls-server"))
    assert theirs != ours
    subs = mixed_batch(exercises, tmp_path / "subs", ["reference"])
    [r] = grade_batch(load_assignment("tls-server"), subs, tmp_path / "out", sessions=cluster.sessions())
    assert r.harness_error and not r.checks
    assert theirs[:12] in r.harness_error and ours[:12] in r.harness_error
    assert "refused" in r.harness_error
    with open(tmp_path / "out" / "gradebook.csv", newline="") as f:
        assert [row["status"] for row in csv.DictReader(f)] == ["harness error"]


# --- units: what travels, and the commands -----------------------------------------------------


def test_pack_and_unpack_round_trip_within_bounds(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "server.py").write_text("print('hi')\n")
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    (src / "pkg" / "x.py").write_bytes(b"\x00\x01")
    (src / ".git").mkdir()
    (src / ".git" / "config").write_text("[core]\n")
    files = pack(src)
    assert {p for p, _m, _d in files} == {"pkg/", "pkg/x.py", "server.py", "run.sh"}
    unpack(files, tmp_path / "dst")
    assert (tmp_path / "dst" / "pkg" / "x.py").read_bytes() == b"\x00\x01"
    assert (tmp_path / "dst" / "run.sh").stat().st_mode & 0o111
    os.symlink("/etc/passwd", src / "link")
    with pytest.raises(IntakeError, match="not a regular file"):
        pack(src)


@pytest.mark.parametrize("bad", ["../escape.py", "/etc/escape.py", "a/../../escape.py", "a//b", ""])
def test_unpack_refuses_a_path_leaving_the_folder(tmp_path: Path, bad: str) -> None:
    with pytest.raises(IntakeError, match="unsafe path"):
        unpack((("ok.py", 0o644, b"x"), (bad, 0o644, b"x")), tmp_path / "dst")
    assert not (tmp_path / "escape.py").exists()


def test_pack_refuses_past_intakes_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harness._cluster.MAX_UNPACKED", 100)
    (tmp_path / "big.bin").write_bytes(b"x" * 101)
    with pytest.raises(IntakeError, match="more than 100 bytes"):
        pack(tmp_path)


def test_a_task_to_a_worker_with_another_grader_is_refused_in_process(tmp_path: Path) -> None:
    from harness._cluster import grade_task

    mine = engine_of("tls-server")
    stale = type(mine)(grader="f" * 64, harness=mine.harness, version="0.0.1")
    reply = grade_task(Task("tls-server", "alice", (), SessionOptions(), "", stale))
    r = SubmissionResult.from_json(reply["result"])
    assert "f" * 12 in r.harness_error and mine.grader[:12] in r.harness_error
    assert "0.0.1" in r.harness_error and not r.checks


class FakeFuture:
    """A finished task as `_collect` sees it: a key, a reply, and a release."""

    def __init__(self, key: str, reply: object) -> None:
        self.key, self.reply, self.released = key, reply, False

    def result(self) -> object:
        return self.reply

    def release(self) -> None:
        self.released = True


@pytest.mark.parametrize(
    "reply",
    [
        {"result": "GOOD", "files": ["session.log"]},
        {"result": "GOOD", "files": "session.log"},
        {"result": "GOOD"},
        ["not", "a", "reply"],
        None,
    ],
)
def test_a_malformed_worker_reply_is_that_students_grader_error(tmp_path: Path, reply: object) -> None:
    a = load_assignment("tls-server")
    batch = Batch(a, tmp_path / "out", SessionOptions(), "", "g")
    good = SubmissionResult(assignment=a.id, student="alice", checks=()).to_json()
    if isinstance(reply, dict):
        reply = {k: good if v == "GOOD" else v for k, v in reply.items()}
    fut = FakeFuture("wiregrade-x-alice", reply)
    out = {fut.key: ("alice", 10), "wiregrade-x-bob": ("bob", 10)}
    name, r = ClusterSessions("sched:8786")._collect(batch, fut, out)
    assert name == "alice" and fut.released and list(out) == ["wiregrade-x-bob"]
    assert "the cluster could not run this session" in r.harness_error
    assert (r.assignment, r.student, r.checks, r.score) == (a.id, "alice", (), 0)


def test_a_well_formed_worker_reply_is_kept_with_its_files(tmp_path: Path) -> None:
    a = load_assignment("tls-server")
    batch = Batch(a, tmp_path / "out", SessionOptions(), "", "g")
    good = SubmissionResult(assignment=a.id, student="alice", checks=())
    files = {"session.log": b"log", "../escape": b"x", "capture.pcap": "not bytes"}
    fut = FakeFuture("k", {"result": good.to_json(), "files": files})
    name, r = ClusterSessions("sched:8786")._collect(batch, fut, {"k": ("alice", 1)})
    assert (name, r.harness_error) == ("alice", "")
    folder = student_dir(batch.out, "alice")
    assert (folder / "session.log").read_bytes() == b"log"
    assert not (folder / "capture.pcap").exists() and not (batch.out / "escape").exists()


def test_cluster_addresses() -> None:
    assert cluster_address("sched:8786", Path("certs")) == "tls://sched:8786"
    assert cluster_address("sched:8786", None) == "sched:8786"
    with pytest.raises(HarnessError, match="tls://"):
        cluster_address("tcp://sched:8786", Path("certs"))


def test_cluster_certs_make_a_mutual_tls_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "certs"
    assert main(["cluster-certs", str(folder)]) == 0
    for role in ("scheduler", "worker", "client"):
        assert (folder / f"{role}.key").stat().st_mode & 0o077 == 0
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(folder / "ca.pem"))
        ctx.load_cert_chain(folder / f"{role}.pem", folder / f"{role}.key")  # the key matches
    from cryptography import x509

    ca = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    leaf = x509.load_pem_x509_certificate((folder / "worker.pem").read_bytes())
    leaf.verify_directly_issued_by(ca)
    assert main(["cluster-certs", str(folder)]) == 2  # never overwrites a set
    assert "already holds" in capsys.readouterr().err


def test_worker_says_what_is_missing_and_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    assert main(["worker", "tls://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    for tool in ("tshark", "dumpcap", "bwrap", "openssl", "stunnel4", "nginx"):
        assert tool in err
    assert "apt-get install" in err


def test_grade_says_when_the_scheduler_cannot_be_reached(
    exercises: Exercises, certs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subs = mixed_batch(exercises, tmp_path / "subs", ["reference"])
    sessions = ClusterSessions("127.0.0.1:9", certs, connect_timeout=2)
    with pytest.raises(HarnessError, match="could not reach the Dask scheduler at tls://127.0.0.1:9"):
        grade_batch(load_assignment("tls-server"), subs, tmp_path / "out", sessions=sessions)


def test_a_batch_with_nothing_to_grade_needs_no_cluster(tmp_path: Path) -> None:
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "notes.txt").write_text("not a submission\n")  # refused: nothing to send
    sessions = ClusterSessions("127.0.0.1:9", None, connect_timeout=1, wait_for_workers=1)
    [r] = grade_batch(load_assignment("tls-server"), tmp_path / "subs", tmp_path / "out", sessions=sessions)
    assert r.refused
