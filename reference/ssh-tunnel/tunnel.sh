#!/usr/bin/env bash
# The ssh tunnel (reference solution): 127.0.0.1:7000 here -> the echo server, localhost:9000 on
# horiem.ca, over SSH. -N: forward only, run no command. exec: ssh replaces this shell, so the
# SIGTERM that stops tunnel.sh reaches ssh itself and nothing is left running.
cd "$(dirname "$0")"
exec ssh -F ssh_config -N horiem-tunnel
