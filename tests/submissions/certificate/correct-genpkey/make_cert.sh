#!/usr/bin/env bash
set -euo pipefail
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out server.key 2>/dev/null
chmod 600 server.key
openssl req -new -x509 -key server.key -config server.cnf -days 1095 -out server.crt
cat server.crt server.key > server.pem
chmod 600 server.pem
ls -l server.*   # harmless output
