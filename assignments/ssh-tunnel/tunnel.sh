#!/usr/bin/env bash
# Open the ssh tunnel here (see README.md): 127.0.0.1:7000 on this side -> the echo server,
# localhost:9000 on horiem.ca, through tunnel@horiem.ca port 2222. It must stay in the
# foreground (the grader stops it with one SIGTERM, as `kill PID` does).
echo "tunnel.sh: not written yet" >&2
exit 1
