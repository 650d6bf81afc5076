#!/bin/sh
# Everything on the command line: no server.cnf needed.
set -e
umask 077
openssl req -x509 -newkey rsa:4096 -noenc -days 1095 \
  -keyout server.key -out server.crt \
  -subj "/C=CA/ST=British Columbia/L=Victoria/O=Camosun College/OU=Department of Computer Science/CN=horiem.ca" \
  -addext "subjectAltName=DNS:horiem.ca" \
  -addext "basicConstraints=critical,CA:FALSE" \
  -addext "keyUsage=critical,digitalSignature,keyEncipherment" \
  -addext "extendedKeyUsage=serverAuth"
cat server.crt server.key > server.pem
