"""The whole command a user types, on one submission: start-up, intake, store and reports.

    .venv/bin/python bench/bench_command.py [--runs 5]

Times `wiregrade grade tls-server SUBS --out OUT --force` on one copy of the reference, cold and
with --warm. Target on the 2-core machine: <= 1.5 s.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness._assignment import load_assignment  # noqa: E402
from harness._samples import materialize, samples_of  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    a = load_assignment("tls-server")
    work = Path(tempfile.mkdtemp(prefix="wiregrade-bench-command-"))
    materialize(next(s for s in samples_of(a) if s.name == "reference"), work / "subs" / "reference")
    for label, extra in (("cold", []), ("--warm", ["--warm"])):
        walls = []
        for _ in range(args.runs):
            cmd = [sys.executable, "-m", "harness", "grade", "tls-server", str(work / "subs")]
            cmd += ["--out", str(work / "out"), "--force", "--jobs", "1", *extra]
            t = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
            walls.append(time.perf_counter() - t)
        print(
            f"wiregrade grade, one submission, {label}: median {statistics.median(walls):.2f} s "
            f"(min {min(walls):.2f}, max {max(walls):.2f})"
        )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
