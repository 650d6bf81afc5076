"""Shared fixtures for wiregrade's own tests."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from harness import SubmissionResult
from harness._assignment import load_assignment, project_root
from harness._proc import become_subreaper
from harness._runner import grade_batch
from harness._samples import Sample, materialize, samples_of

ROOT = project_root()
TEST_SUBMISSIONS = ROOT / "tests" / "submissions"

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")


@pytest.fixture(autouse=True)
def _clean_tls_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Like httpx's tests: nothing of the developer's TLS set-up leaks into ours.
    for var in ("SSLKEYLOGFILE", "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session", autouse=True)
def _subreaper() -> None:
    become_subreaper()


def descends_from(pid: int, ancestor: int) -> bool:
    for _ in range(64):
        if pid == ancestor:
            return True
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(raw[raw.rfind(")") + 2 :].split()[1])
        if pid <= 1:
            return False
    return False


def own_session_processes(also: tuple[str, ...] = ()) -> list[str]:
    """Processes of grading sessions that this test run started (it is a subreaper, so what
    its sessions left behind is re-parented to it): never another batch's on this machine.
    ``also`` names commands (e.g. stunnel4) that count wherever they run."""
    me, found = os.getpid(), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        ours = "wiregrade-session-" in cwd or b"harness._session" in cmd or comm in also
        if ours and int(pid) != me and descends_from(int(pid), me):
            found.append(f"{pid} {comm} in {cwd}")
    return found


def all_samples(assignment_id: str) -> list[Sample]:
    a = load_assignment(assignment_id)
    return samples_of(a, TEST_SUBMISSIONS / assignment_id)


class Exercises:
    """Every exercise's samples made into submissions, and graded as a batch, once a session."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self._folders: dict[str, Path] = {}
        self._graded: dict[str, dict[str, SubmissionResult]] = {}

    def submissions(self, assignment_id: str) -> Path:
        if assignment_id not in self._folders:
            folder = self.factory.mktemp(f"{assignment_id}-submissions")
            os.chmod(folder, 0o755)
            for s in all_samples(assignment_id):
                materialize(s, folder / s.name)
            self._folders[assignment_id] = folder
        return self._folders[assignment_id]

    def graded(self, assignment_id: str) -> dict[str, SubmissionResult]:
        if assignment_id not in self._graded:
            out = self.factory.mktemp(f"{assignment_id}-graded")
            results = grade_batch(
                load_assignment(assignment_id), self.submissions(assignment_id), out, jobs=2
            )
            self._graded[assignment_id] = {r.student: r for r in results}
        return self._graded[assignment_id]


@pytest.fixture(scope="session")
def exercises(tmp_path_factory: pytest.TempPathFactory) -> Exercises:
    return Exercises(tmp_path_factory)


@pytest.fixture(scope="session")
def tls_server_submissions(exercises: Exercises) -> Path:
    """Every tls-server sample (reference, bundled, broken) made into a real submission."""
    return exercises.submissions("tls-server")


needs_openssh = pytest.mark.skipif(
    shutil.which("sshd", path="/usr/sbin:/usr/bin") is None or shutil.which("ssh") is None,
    reason="OpenSSH is not installed",
)


def check_as_nobody(
    request: pytest.FixtureRequest, submission: Path, exercise: str, *options: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`wiregrade check EXERCISE` as the user nobody (a student without root) on a copy of
    ``submission`` in a folder nobody owns, with this checkout's harness: (the run, the copy).
    Skips where no Python is reachable by another user."""
    exe, why = interpreter_for_nobody()
    if exe is None:
        pytest.skip(why)
    nobody = pwd.getpwnam("nobody")
    home = Path(tempfile.mkdtemp(prefix="wiregrade-nobody-"))  # pytest's tmp is root-only
    request.addfinalizer(lambda: shutil.rmtree(home, ignore_errors=True))
    work = home / "student"
    shutil.copytree(submission, work)
    for p in [home, *work.rglob("*"), work]:
        os.chown(p, nobody.pw_uid, nobody.pw_gid)
    site = sysconfig.get_paths()["purelib"]
    run = subprocess.run(
        ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
        + [exe, "-m", "harness", "check", exercise, str(work), *options],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
        env={"PATH": os.environ["PATH"], "HOME": str(home), "PYTHONPATH": f"{ROOT}:{site}"},
    )
    return run, work


def interpreter_for_nobody() -> tuple[str | None, str]:
    """A Python of this version that another user can run (a pyenv under /root is not)."""
    if os.geteuid() != 0:
        return None, "needs root to switch to another user"
    if shutil.which("setpriv") is None:
        return None, "setpriv is not installed"
    want = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = [Path(sys.executable).resolve(), Path("/usr/bin") / want, Path("/usr/local/bin") / want]
    site = Path(sysconfig.get_paths()["purelib"])
    for exe in candidates:
        paths = [exe, ROOT, site]
        if exe.exists() and all(
            not p.exists() or os.stat(p).st_mode & 0o001 for q in paths for p in [q, *q.parents]
        ):
            return str(exe), ""
    return None, f"no {want} reachable by other users, or {ROOT} / {site} is not reachable"
