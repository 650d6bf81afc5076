"""The self-check on every Python this machine has, 3.10 to 3.13 (students bring their own)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.cli import ExitCode
from tests.conftest import ROOT, Exercises, needs_tshark


def interpreter(version: str) -> str | None:
    """python3.X on PATH, or in a pyenv (whose shims refuse versions not selected)."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [
        shutil.which(f"python{version}"),
        *map(str, sorted(pyenv.glob(f"{version}*/bin/python{version}"))),
    ]
    for exe in filter(None, candidates):
        ok = subprocess.run([exe, "-c", "import venv, ssl"], capture_output=True, check=False)
        if ok.returncode == 0:
            return exe
    return None


@needs_tshark
@pytest.mark.slow
@pytest.mark.parametrize("version", ["3.10", "3.11", "3.12", "3.13"])
def test_self_check_runs_on(version: str, exercises: Exercises, tmp_path: Path) -> None:
    exe = interpreter(version)
    if exe is None:
        pytest.skip(f"no python{version} on this machine")
    subprocess.run([exe, "-m", "venv", str(tmp_path / "v")], check=True, timeout=120)
    py = tmp_path / "v" / "bin" / "python"
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    env = {"PATH": f"{py.parent}:{os.environ['PATH']}", "HOME": str(tmp_path), "WIREGRADE_HOME": str(ROOT)}
    for name, want in (("reference", ExitCode.OK), ("lecture", ExitCode.CHECKS_FAILED)):
        run = subprocess.run(
            [
                "wiregrade",
                "check",
                "tls-server",
                str(exercises.submissions("tls-server") / name),
                "--out",
                str(tmp_path / name),
                # about the interpreter, not privileges: a throwaway venv of another Python
                # version has no copy another user could run
                "--student-user",
                "off",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert run.returncode == want, run.stdout + run.stderr
        assert f"Python {version}" in (tmp_path / name / "report.html").read_text()
