"""Where a grading session's time goes (reported in session.json, read by bench/)."""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator

_TOTALS: dict[str, float] = defaultdict(float)
_COUNTS: dict[str, int] = defaultdict(int)


@contextlib.contextmanager
def timed(category: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        _TOTALS[category] += time.perf_counter() - start
        _COUNTS[category] += 1


def snapshot() -> dict[str, dict[str, float]]:
    return {k: {"seconds": round(v, 4), "count": _COUNTS[k]} for k, v in sorted(_TOTALS.items())}
