"""Hidden checks for `certificate`: run when the instructor grades; never in a student bundle."""

from __future__ import annotations

from support import (
    Made,
)

from harness import Shared, check, fail

# --- hidden checks ------------------------------------------------------------------------


@check(
    title="The private key files are readable by you only",
    points=3,
    visibility="hidden",
    expected="server.key and server.pem have no permissions for group or others (chmod 600).",
    hint="chmod 600 server.key server.pem, in your script after making them.",
    needs="script-runs",
)
def test_key_permissions(made: Shared[Made]) -> None:
    m = made.get()
    loose = []
    for name in ("server.key", "server.pem"):
        mode = m.modes[name]
        if mode & 0o077:
            loose.append(f"{name} has mode {mode:03o}")
    if loose:
        raise fail("Others on the machine can read your private key: " + ", ".join(loose) + ".")
