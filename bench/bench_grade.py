"""How fast wiregrade grades tls-server: one submission, and a class batch.

    .venv/bin/python bench/bench_grade.py [--runs 5] [--batch 20] [--jobs 2] [--warm]

One submission: wall time of `run_session` on the reference (the whole subprocess: Python and
pytest start, namespace, dumpcap, the checks), and where the session spent it (from the
timings each session records). Batch: `grade_batch` over N copies of the reference, in
submissions per minute. Targets on the 2-core machine: <= 3 s for one, >= 40 per minute.
``--warm``: each session forked from a warm process (harness._warm), started before the timing
as a warm worker is; targets <= 1.3 s for one, >= 85 per minute.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness._assignment import load_assignment  # noqa: E402
from harness._proc import become_subreaper  # noqa: E402
from harness._runner import SessionOptions, grade_batch, run_session, session_env  # noqa: E402
from harness._samples import materialize, samples_of  # noqa: E402
from harness._warm import WarmSessions, Zygote, run_warm_session  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", help="also write the numbers here")
    ap.add_argument("--warm", action="store_true", help="fork sessions from a warm process")
    args = ap.parse_args()
    become_subreaper()
    zygote = Zygote(*session_env()) if args.warm else None

    a = load_assignment("tls-server")
    ref = next(s for s in samples_of(a) if s.name == "reference")
    work = Path(tempfile.mkdtemp(prefix="wiregrade-bench-"))
    sub = materialize(ref, work / "reference")

    walls: list[float] = []
    inside: list[float] = []
    where: dict[str, list[float]] = defaultdict(list)
    for i in range(args.runs):
        t = time.perf_counter()
        if zygote is not None:
            r = run_warm_session(zygote, a, sub, work / f"one-{i}", "reference", SessionOptions())
        else:
            r = run_session(a, sub, work / f"one-{i}", "reference")
        walls.append(time.perf_counter() - t)
        assert r.score == r.max_score, f"reference scored {r.score}/{r.max_score}"
        inside.append(r.duration)
        for k, v in r.timings.items():
            where[k].append(v["seconds"])

    print(
        f"one submission (reference, {args.runs} runs): wall median {statistics.median(walls):.2f} s "
        f"(min {min(walls):.2f}, max {max(walls):.2f}); pytest session {statistics.median(inside):.2f} s"
    )
    for k, v in sorted(where.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"  {k:<50} {statistics.median(v):.3f} s")
    print(
        f"  {'python + pytest start-up, collection, outputs':<50} "
        f"{statistics.median(walls) - statistics.median(inside):.3f} s"
    )

    subs = work / "batch"
    subs.mkdir()
    for i in range(args.batch):
        shutil.copytree(sub, subs / f"student{i:03d}")
    t = time.perf_counter()
    if zygote is not None:
        zygote.close()
    sessions = WarmSessions(args.jobs) if args.warm else None
    results = grade_batch(a, subs, work / "batch-out", jobs=args.jobs, sessions=sessions)
    batch_wall = time.perf_counter() - t
    assert all(r.score == r.max_score for r in results), "a copy of the reference lost points"
    rate = 60 * len(results) / batch_wall
    how = f"--jobs {args.jobs}" + (" --warm" if args.warm else "")
    print(f"batch: {len(results)} submissions, {how}: {batch_wall:.1f} s, {rate:.0f} per minute")

    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "one_wall_median_s": statistics.median(walls),
                    "one_session_median_s": statistics.median(inside),
                    "where_s": {k: statistics.median(v) for k, v in where.items()},
                    "batch": {"n": len(results), "jobs": args.jobs, "wall_s": batch_wall, "per_minute": rate},
                },
                indent=2,
            )
        )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
