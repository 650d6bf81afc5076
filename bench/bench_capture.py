"""How long the grader takes to make one student's captures (public + hidden), per exercise.

    .venv/bin/python bench/bench_capture.py [--students 10]

Runs in one private network namespace with one dumpcap, as a grading session does, and times
`scenario.make()` for both parts of each student's seed (traffic, certificates, writing the
pcap). Target on the 2-core machine: a few seconds per student at most.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness._assignment import load_assignment  # noqa: E402
from harness._capture import capture_wire, load_scenario, seed_for  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--students", type=int, default=10)
    args = ap.parse_args()
    with capture_wire() as (wire, exact), tempfile.TemporaryDirectory() as tmp:
        for exercise in ("plaintext-http", "handshake-analysis"):
            scenario = load_scenario(load_assignment(exercise).grader_dir)
            times = []
            for i in range(args.students):
                folder = Path(tmp) / exercise / str(i)
                folder.mkdir(parents=True)
                seed = seed_for(exercise, f"student-{i}")
                start = time.monotonic()
                for part in ("public", "hidden"):
                    scenario.make(wire, seed, part, folder, part, exact=exact)
                times.append(time.monotonic() - start)
            print(
                f"{exercise:<20} one student's captures: median {statistics.median(times):.2f} s, "
                f"max {max(times):.2f} s over {len(times)} students"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
