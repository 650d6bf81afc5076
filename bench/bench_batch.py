"""A class-sized batch: N copies of the tls-server reference and N broken submissions.

    .venv/bin/python bench/bench_batch.py [--copies 50] [--jobs 2 1]

Prints submissions per minute for each --jobs value, and the peak memory (largest resident
set of any process the batch ran, and of the grader itself). Target: 40 per minute or better
on the 2-core machine with --jobs 2.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness._assignment import load_assignment  # noqa: E402
from harness._runner import grade_batch  # noqa: E402
from harness._samples import materialize, samples_of  # noqa: E402

BROKEN = [
    "lecture",
    "plaintext",
    "allows-tls10",
    "wrong-certificate",
    "crashes-on-junk",
    "one-client-robust",
    "floods-stdout",
    "forks-daemon",
    "tls12-only",
]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=50)
    ap.add_argument("--jobs", type=int, nargs="+", default=[2, 1])
    args = ap.parse_args()
    a = load_assignment("tls-server")
    root = Path(__file__).resolve().parent.parent
    samples = {s.name: s for s in samples_of(a, root / "tests" / "submissions" / "tls-server")}
    work = Path(tempfile.mkdtemp(prefix="wiregrade-bench-batch-"))
    made = {name: materialize(samples[name], work / "made" / name) for name in ["reference", *BROKEN]}
    subs = work / "subs"
    subs.mkdir()
    broken = itertools.cycle(BROKEN)
    for i in range(args.copies):
        shutil.copytree(made["reference"], subs / f"ref{i:03d}")
        name = next(broken)
        shutil.copytree(made[name], subs / f"bad{i:03d}-{name}")
    for jobs in args.jobs:
        out = work / f"out-{jobs}"
        t = time.perf_counter()
        results = grade_batch(a, subs, out, jobs=jobs)
        wall = time.perf_counter() - t
        errors = sum(bool(r.harness_error or r.errors) for r in results)
        full = sum(r.score == r.max_score for r in results if r.student.startswith("ref"))
        print(
            f"--jobs {jobs}: {len(results)} submissions in {wall:.0f} s = "
            f"{60 * len(results) / wall:.0f} per minute; "
            f"references at full marks {full}/{args.copies}; grader errors {errors}"
        )
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: largest process the batch ran {child:.0f} MiB; the grader itself {own:.0f} MiB")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
