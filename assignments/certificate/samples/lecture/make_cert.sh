#!/usr/bin/env bash
# Exactly the lecture's commands.
openssl req -x509 -nodes -days 1095 -newkey rsa:4096 -config server.cnf -out server.crt -keyout server.key
cat server.crt server.key > server.pem
