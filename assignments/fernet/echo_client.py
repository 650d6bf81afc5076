#!/usr/bin/env python3
"""Starter for echo_client.py KEYFILE HOST PORT: send each stdin line as a token, print each answer."""

import sys

print('echo_client: not written yet', file=sys.stderr)
sys.exit(1)
