"""The Dask engine's own overhead: two local workers of one slot each against `--jobs 2`.

    .venv/bin/python bench/bench_cluster.py [--copies 20]

Starts a TLS scheduler and two `wiregrade worker --slots 1` on loopback, grades N copies of the
tls-server reference through them and then locally with --jobs 2, and prints both rates.
Each runs twice, A B B A. Target: within 15% of each other on the 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness._assignment import load_assignment  # noqa: E402
from harness._cluster import ClusterSessions  # noqa: E402
from harness._cluster_certs import make_cluster_certs  # noqa: E402
from harness._proc import become_subreaper, register_harness_pid  # noqa: E402
from harness._runner import grade_batch  # noqa: E402
from harness._samples import materialize, samples_of  # noqa: E402


def start(cmd: list[str], log: Path, ready: str, timeout: float = 60) -> subprocess.Popen[bytes]:
    f = open(log, "wb")  # noqa: SIM115 - the process keeps it
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    register_harness_pid(proc.pid)  # a local batch's reaping leaves it be
    deadline = time.monotonic() + timeout
    while ready not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{cmd[2]} did not start:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)  # a bounded wait for its line
    return proc


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=20)
    args = ap.parse_args()
    become_subreaper()
    a = load_assignment("tls-server")
    work = Path(tempfile.mkdtemp(prefix="wiregrade-bench-cluster-"))
    ref = materialize(next(s for s in samples_of(a) if s.name == "reference"), work / "reference")
    subs = work / "subs"
    for i in range(args.copies):
        shutil.copytree(ref, subs / f"student{i:03d}")
    certs = work / "certs"
    make_cluster_certs(certs, ["localhost", "127.0.0.1"])
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sched_log = work / "scheduler.log"
        procs.append(
            start(
                [sys.executable, "-m", "distributed.cli.dask_scheduler", "--protocol", "tls"]
                + ["--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0", "--no-show"]
                + ["--tls-ca-file", str(certs / "ca.pem"), "--tls-cert", str(certs / "scheduler.pem")]
                + ["--tls-key", str(certs / "scheduler.key")],
                sched_log,
                "Scheduler at:",
            )
        )
        text = sched_log.read_text()
        address = text.split("Scheduler at:")[1].split()[0]
        for n in ("one", "two"):
            procs.append(
                start(
                    [
                        sys.executable,
                        "-m",
                        "harness",
                        "worker",
                        address,
                        "--certs",
                        str(certs),
                        "--slots",
                        "1",
                    ],
                    work / f"worker-{n}.log",
                    "sessions at once",
                )
            )
        runs = {"dask, 2 workers x 1 slot": ClusterSessions(address, certs), "local, --jobs 2": None}
        walls: dict[str, float] = dict.fromkeys(runs, 0.0)
        inside: dict[str, float] = dict.fromkeys(runs, 0.0)  # the sessions' own time, summed
        order = [*runs, *reversed(runs)]  # A B B A: a machine whose load drifts favours neither
        for i, label in enumerate(order):
            t = time.perf_counter()
            results = grade_batch(a, subs, work / f"out-{i}", jobs=2, sessions=runs[label])
            walls[label] += time.perf_counter() - t
            inside[label] += sum(r.duration for r in results)
            lost = {
                r.student: r.harness_error[:300]
                or [(c.id, c.outcome.value, c.seen[:200]) for c in r.checks if c.score < c.points]
                for r in results
                if r.score < r.max_score
            }
            assert not lost, f"{label}: a copy of the reference lost points: {lost}"
        rates = {label: 60 * 2 * args.copies / wall for label, wall in walls.items()}
        for label, rate in rates.items():
            print(
                f"{label}: {2 * args.copies} submissions in {walls[label]:.1f} s = {rate:.0f} per minute "
                f"(a session's pytest run: {inside[label] / (2 * args.copies):.2f} s on average)"
            )
        d, loc = rates["dask, 2 workers x 1 slot"], rates["local, --jobs 2"]
        print(f"dask / local: {d / loc:.2f} (target: within 15%)")
    finally:
        for p in procs:
            p.terminate()
            p.wait(20)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
