"""Make an exercise's captures for many seeds in one private network namespace with one dumpcap,
run the reference on each, and print what differs from the answers (JSON on stdout).

python tests/helpers/seeds.py EXERCISE PROGRAM SEED...   (run as root or where user namespaces work)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness._capture import capture_wire, load_scenario


def main() -> int:
    exercise, program, *seeds = sys.argv[1:]
    from harness._assignment import load_assignment

    out: dict[str, object] = {"mismatches": [], "seconds": []}
    with capture_wire() as (wire, exact), tempfile.TemporaryDirectory() as tmp:
        scenario = load_scenario(load_assignment(exercise).grader_dir)
        jobs = []
        for seed in seeds:
            folder = Path(tmp) / seed
            folder.mkdir()
            start = time.monotonic()
            for part in ("public", "hidden"):
                made = scenario.make(wire, seed, part, folder, part, exact=exact)
                for suffix, answer in made["answers"].items():
                    args = [str(folder / f"{part}.pcap")]
                    if suffix == "-keylog":
                        args.append(str(folder / f"{part}.keys"))
                    jobs.append((f"{seed}/{part}{suffix}", args, answer))
            out["seconds"].append(time.monotonic() - start)  # type: ignore[union-attr]

        def run(job: tuple[str, list[str], object]) -> str | None:
            name, args, answer = job
            got = subprocess.run(
                [sys.executable, program, *args], capture_output=True, text=True, check=False
            )
            if got.returncode != 0:
                return f"{name}: exit {got.returncode}: {got.stderr[-300:]}"
            return None if json.loads(got.stdout) == answer else f"{name}: differs"

        with ThreadPoolExecutor(2) as pool:
            out["mismatches"] = [m for m in pool.map(run, jobs) if m]
        out["runs"] = len(jobs)
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
