#!/usr/bin/env bash
# Goes around the tunnel: a relay of its own (one connection, then it exits), and an ssh login
# that forwards nothing.
cd "$(dirname "$0")"
python3 relay.py &
exec ssh -F ssh_config -N -o ClearAllForwardings=yes horiem-tunnel
