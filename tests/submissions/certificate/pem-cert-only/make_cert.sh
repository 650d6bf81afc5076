#!/usr/bin/env bash
# Make server.crt, server.key and server.pem from server.cnf (reference solution).
set -euo pipefail
openssl req -x509 -nodes -days 1095 -newkey rsa:4096 -config server.cnf \
    -out server.crt -keyout server.key
cp server.crt server.pem   # forgot the key
chmod 600 server.key server.pem   # the private key: readable by you only
