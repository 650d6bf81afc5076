"""A session's live progress: one JSON line per event, on a pipe from the session to ``check``.

The session's results travel in session.json at its end; a student at a terminal also wants
to see each check as it finishes (as pytest prints them). The session writes small events
to the file descriptor named in ``WIREGRADE_PROGRESS_FD``; the parent reads them in a thread.
A lost or broken pipe costs only the live view: the results never depend on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable
from typing import IO, Any

PROGRESS_ENV = "WIREGRADE_PROGRESS_FD"
_LINE_CAP = 1 << 16  # our own events; a longer line is cut, never read without bound

Event = dict[str, Any]


class ProgressWriter:
    """The session's end: does nothing when no one listens."""

    def __init__(self, stream: IO[str] | None) -> None:
        self._stream = stream

    @classmethod
    def from_environment(cls) -> ProgressWriter:
        fd = os.environ.pop(PROGRESS_ENV, "")  # popped: no child of ours inherits the name
        if not fd.isdigit():
            return cls(None)
        try:
            return cls(os.fdopen(int(fd), "w", buffering=1))
        except OSError:
            return cls(None)

    def emit(self, event: str, **fields: Any) -> None:
        if self._stream is None:
            return
        try:
            self._stream.write(json.dumps({"event": event, **fields}) + "\n")
        except (OSError, ValueError):
            self._stream = None  # the reader went away: grading goes on


def listen(on_event: Callable[[Event], None]) -> tuple[int, Callable[[], None]]:
    """A pipe for one session: returns the write end (to pass to it) and ``finish``, which
    waits for the reader after the session ended (call it once the child has exited)."""
    r, w = os.pipe()

    def read() -> None:
        with os.fdopen(r, "rb") as f:
            for raw in iter(lambda: f.readline(_LINE_CAP), b""):
                with contextlib.suppress(ValueError):
                    event = json.loads(raw)
                    if isinstance(event, dict):
                        on_event(event)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def finish() -> None:
        with contextlib.suppress(OSError):
            os.close(w)
        reader.join(5)

    return w, finish
