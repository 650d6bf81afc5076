"""Programs that answer in JSON: run one, read its answer, and show a difference kindly.

For exercises where the student's program reads something the grader made (a capture) and
prints what it found. Whatever goes wrong is said in the student's terms: the exit code and
the traceback, the JSON error with the line it is on, the part of the answer that is missing.
"""

from __future__ import annotations

import json
from typing import Any

from ._context import Launcher
from ._errors import fail
from ._process import StudentProcess


def run_json(launcher: Launcher, program: str, *args: str, timeout: float) -> tuple[StudentProcess, Any]:
    """Run ``program`` to its end and return its stdout as JSON (a CheckFailed if it is not)."""
    proc = launcher.run(program, *args, timeout=timeout)
    shown = " ".join([program, *args])
    if proc.returncode != 0:
        raise fail(
            f"`python3 {shown}` exited with code {proc.returncode}.\n{proc.output_tail(12)}",
            expected="exit code 0 and one JSON document on stdout",
            hint="Run the same command on the practice capture in the handout and read the traceback.",
        )
    text = proc.stdout.text()
    if proc.stdout.truncated:
        raise fail(
            f"`python3 {shown}` printed more than {len(proc.stdout.data()):,} bytes; the answer is cut off."
        )
    try:
        return proc, json.loads(text)
    except json.JSONDecodeError as exc:
        lines = text.splitlines()
        near = lines[exc.lineno - 1][:160] if 0 < exc.lineno <= len(lines) else ""
        raise fail(
            f"What `python3 {shown}` printed is not JSON: {exc.msg} at line {exc.lineno}, column "
            f"{exc.colno}:\n  {near}\n(first bytes: {text[:200]!r})",
            expected="one JSON document on stdout, and nothing else there",
            hint="Print with json.dump(report, sys.stdout); send any debugging output to sys.stderr.",
        ) from None


def shape_error(answer: Any, lists: tuple[str, ...]) -> str | None:
    """Why ``answer`` is not an object whose ``lists`` are lists of objects, or None."""
    if not isinstance(answer, dict):
        return f"the answer is a JSON {type(answer).__name__}, not an object"
    for key in lists:
        if not isinstance(answer.get(key), list):
            return f'the answer has no list "{key}" (its keys: {", ".join(map(str, answer)) or "none"})'
        bad = [i for i, x in enumerate(answer[key]) if not isinstance(x, dict)]
        if bad:
            return f'"{key}"[{bad[0]}] is not an object: {json.dumps(answer[key][bad[0]])[:120]}'
    return None


def show(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def differences(expected: dict[str, Any], seen: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    """``key: expected X, seen Y`` for each of ``keys`` that differs."""
    out = []
    for k in keys:
        if seen.get(k) != expected.get(k):
            got = json.dumps(seen[k], ensure_ascii=False) if k in seen else "(missing)"
            out.append(f"{k}: expected {json.dumps(expected.get(k), ensure_ascii=False)}, seen {got}")
    return out
