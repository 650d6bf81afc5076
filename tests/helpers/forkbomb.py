"""Run as an unprivileged user: a fork bomb under the runner's limits must stop, then die."""

import sys
import tempfile
from pathlib import Path

from harness._proc import _children_of_ours, become_subreaper, process_tree
from harness._process import Limits, StudentProcess, clean_environment

become_subreaper()  # as the grading session is
work = Path(tempfile.mkdtemp())
(work / "bomb.py").write_text(
    "import os, time\n"
    "n = 0\n"
    "try:\n"
    "    while True:\n"
    "        if os.fork() == 0:\n"
    "            time.sleep(60); os._exit(0)\n"
    "        n += 1\n"
    "except OSError as e:\n"
    "    print('stopped at', n, e, flush=True)\n"
    "time.sleep(60)\n"
)
with StudentProcess(
    [sys.executable, "bomb.py"], work, clean_environment(work), Limits(processes=40)
).start() as p:
    p.wait_line(r"stopped at \d+ .*\n", 30)  # the whole line: print() writes it in pieces
    print(p.stdout.text().strip(), "tree", len(p.pids()))
print("left", len(process_tree(p.pid, p.pid) - {p.pid}), "zombies", len(_children_of_ours()))
