#!/usr/bin/env bash
# A different correct way: the extensions on the command line (-addext), no config section.
set -euo pipefail
umask 077
openssl req -x509 -nodes -days 1095 -newkey rsa:4096 \
    -subj "/C=CA/ST=British Columbia/L=Victoria/O=Camosun College/OU=Department of Computer Science/CN=horiem.ca" \
    -addext "subjectAltName=DNS:horiem.ca,DNS:www.horiem.ca" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -out server.crt -keyout server.key
cat server.crt server.key > server.pem
