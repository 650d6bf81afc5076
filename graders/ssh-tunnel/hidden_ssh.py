"""Hidden checks for `ssh-tunnel`: run when the instructor grades; never in a student bundle."""

from __future__ import annotations

from support import Trip, require_ready

from harness import Shared, check, fail


@check(
    title="The tunnel ends cleanly when asked",
    needs="ssh-round-trip",
    points=2,
    visibility="hidden",
    expected="One SIGTERM to tunnel.sh (what `kill PID` or a service manager sends) ends the tunnel: "
    "within 5 s no process of it is left and the forwarded port is closed.",
    hint="`exec ssh ...` in tunnel.sh, so the signal reaches ssh itself; no `ssh -f` (it leaves a "
    "background ssh behind) and no `&`.",
)
def test_ssh_ends_cleanly(trip: Shared[Trip]) -> None:
    t = trip.get()
    require_ready(t)
    assert t.ending is not None
    if t.ending.left:
        left = "; ".join(t.ending.left[:4])
        if not t.ending.asked:
            raise fail(
                "tunnel.sh had already exited when the grader came to stop it, and left this running, "
                f"with nothing that would ever stop it: {left}.",
                expected="tunnel.sh in the foreground until asked; then no process left",
            )
        raise fail(
            f"{t.ending.seconds:g} s after tunnel.sh was asked to end (SIGTERM), this was still running: "
            f"{left}.",
            expected="no process left: the tunnel and its port closed",
        )
