#!/usr/bin/env bash
set -e
openssl req -x509 -nodes -days 1095 -config server.cnf -newkey rsa:4096 -keyout server.key -out server.crt
cat server.crt server.key > server.pem
chmod go-rwx server.key server.pem
echo "made server.crt, server.key, server.pem"
