"""Fixtures for `ssh-tunnel`'s checks, from support.py (pytest finds fixtures here)."""

from support import *  # noqa: F403
