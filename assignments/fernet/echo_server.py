#!/usr/bin/env python3
"""Starter for echo_server.py KEYFILE [PORT]: answer each token line with a fresh token of its plaintext."""

import sys

print('echo_server: not written yet', file=sys.stderr)
sys.exit(1)
