#!/bin/sh
cd "$(dirname "$0")" || exit 1
exec ssh -N -T \
    -L localhost:7000:127.0.0.1:9000 \
    -p 2222 -l tunnel -i ./id_ed25519 -o IdentitiesOnly=yes \
    -o UserKnownHostsFile=./known_hosts -o StrictHostKeyChecking=yes \
    -o BatchMode=yes -o ExitOnForwardFailure=yes \
    horiem.ca
