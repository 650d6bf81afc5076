#!/usr/bin/env bash
# Make server.crt, server.key and server.pem from server.cnf (reference solution).
set -euo pipefail
openssl req -x509 -nodes -days 1095 -newkey rsa:4096 -config server.cnf \
    -out server.crt -keyout server.key
# re-sign so that it expired yesterday
openssl req -new -key server.key -config server.cnf -out server.csr
openssl x509 -req -in server.csr -signkey server.key -days -1 \
    -extfile server.cnf -extensions v3_server -out server.crt
cat server.crt server.key > server.pem
chmod 600 server.key server.pem   # the private key: readable by you only
