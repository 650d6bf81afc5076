"""Returning feedback: per student, only what a student may be sent, one zip each for an LMS.

A batch's OUT mixes what a student may get with what only instructors may read
(``instructor.html``, ``session.json``, ``session.log`` with hidden checks' tracebacks, and a
capture and key log holding the hidden checks' traffic too). Nothing is copied from OUT here:
every file in a zip is rendered again from the store's results, through
:meth:`SubmissionResult.for_student` and then :func:`feedback_view`, which also takes the id
and the title off each hidden check ("Hidden check 2", with its score). Before a zip is
written, its files are searched for every piece of hidden text the full result holds; a
student whose files would hold one gets no zip and the instructor is told (a bug of ours,
never sent).

The capture is left out: one capture covers the public and the hidden checks alike, and no
public-only capture exists. The zip's README says so and how to make one's own.
"""

from __future__ import annotations

import html
import json
import os
import re
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ._outputs import gradescope, render_report
from ._results import CheckResult, Outcome, SubmissionResult, blocked_words
from ._runner import STORE_NAME
from ._store import Store

MIN_PIECE = 8  # shorter hidden strings ("TLS", "2") are too common to search for
GRADER_ERROR = "The grading session failed on our side; it will be re-run. Not your fault."
_ZIP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class FeedbackError(Exception):
    """OUT cannot be exported (no store, nothing graded)."""


@dataclass
class Exported:
    """What one export wrote: student -> zip, and who got no zip, and why."""

    zips: dict[str, Path] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # refused at intake: their zip holds a note
    grader_errors: list[str] = field(default_factory=list)  # zipped, but re-run them before sending
    withheld: dict[str, str] = field(default_factory=dict)  # no zip: it would have leaked hidden text


def feedback_view(result: SubmissionResult) -> SubmissionResult:
    """The student's view with hidden checks reduced to an anonymous title, outcome and score,
    and no grader error text (it may quote a hidden check's traceback).

    A check blocked by a hidden one points at its anonymous name ("hidden-check-N"), and its
    seen and hint are said again with the anonymous title: the plugin wrote the hidden title
    into them."""
    r = result.for_student()
    anon = _anonymous_names(r)
    titles = {c.title: anon[c.id][1] for c in r.checks if c.hidden}
    checks: list[CheckResult] = []
    for c in r.checks:
        blocker = anon.get(c.blocked_by)
        if blocker is not None:
            c = replace(c, blocked_by=blocker[0])
            if not c.hidden and c.outcome is Outcome.BLOCKED:
                seen, hint = blocked_words(blocker[1])
                c = replace(c, seen=seen, hint=hint)
        if c.hidden:
            c = replace(c, id=anon[c.id][0], title=anon[c.id][1])
        else:  # a need the grader failed on is named in an ERROR's text, with no blocked_by
            c = replace(c, seen=_unquote(c.seen, titles), hint=_unquote(c.hint, titles))
        checks.append(c)
    return replace(
        r,
        checks=tuple(checks),
        harness_error=GRADER_ERROR if r.harness_error else "",
        timings={},
    )


def _anonymous_names(r: SubmissionResult) -> dict[str, tuple[str, str]]:
    """Hidden check id -> (its anonymous id, its anonymous title), numbered in order."""
    hidden = [c for c in r.checks if c.hidden]
    return {c.id: (f"hidden-check-{n}", f"Hidden check {n}") for n, c in enumerate(hidden, 1)}


def _unquote(text: str, titles: dict[str, str]) -> str:
    """``text`` with each quoted hidden title ('...') replaced by its anonymous one."""
    for title, anon in titles.items():
        if title:
            text = text.replace(f"'{title}'", f"'{anon}'")
    return text


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):  # a frame's values, not its field names
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def hidden_pieces(result: SubmissionResult) -> set[str]:
    """Every piece of text of the hidden checks (ids, titles, each line of their expected, seen,
    hint, traceback and evidence) and of a grader error, long enough to search for."""
    texts: list[str] = [result.harness_error]
    for c in result.checks:
        if c.hidden:
            texts += [c.id, c.title, c.expected, c.seen, c.hint, c.details]
            for e in c.evidence:
                texts += [e.title, *_strings(e.data)]
        else:
            texts.append(c.details)  # instructor-only on every check
    pieces = {line.strip() for t in texts for line in t.splitlines()}
    return {p for p in pieces if len(p) >= MIN_PIECE}


def _files(result: SubmissionResult) -> dict[str, str]:
    """A zip's files for one student (names and texts)."""
    if result.refused:
        return {"README.txt": _refused_note(result)}
    view = feedback_view(result)
    return {
        "report.html": render_report(view),
        "results.json": json.dumps(gradescope(view), indent=2),
        "README.txt": _readme(view),
    }


def _baseline(result: SubmissionResult) -> dict[str, str]:
    """The same files with the hidden checks left out whole: text also found there comes from
    the public checks or the page itself, not from a hidden check. A hidden check's id or title
    in a public check's text (a check blocked by it says its name) is left out too."""
    hidden = {c.id for c in result.checks if c.hidden}
    names = sorted(
        {n for c in result.checks if c.hidden for n in (c.id, c.title) if n}, key=len, reverse=True
    )

    def without_hidden_names(c: CheckResult) -> CheckResult:  # a public check may quote one
        texts = {f: getattr(c, f) for f in ("expected", "expected_here", "seen", "hint")}
        for f, text in texts.items():
            for name in names:
                text = text.replace(name, "")
            texts[f] = text
        return replace(c, blocked_by="" if c.blocked_by in hidden else c.blocked_by, **texts)

    public = tuple(without_hidden_names(c) for c in result.checks if not c.hidden)
    return _files(replace(result.for_student(), checks=public, harness_error=""))


def leaks(result: SubmissionResult, files: dict[str, str]) -> list[str]:
    """Hidden pieces of ``result`` that appear in ``files`` (as written, or HTML-escaped) and
    do not appear when the hidden checks are left out altogether."""
    base = "\n".join(_baseline(result).values()) + "\n" + "\n".join(files)
    text = "\n".join([*files.values(), *files])
    found = []
    for piece in sorted(hidden_pieces(result)):
        for form in {piece, html.escape(piece), json.dumps(piece)[1:-1]}:
            if form in text and form not in base:
                found.append(piece)
                break
    return found


def _readme(r: SubmissionResult) -> str:
    lines = [
        f"wiregrade feedback: {r.assignment}, {r.student}",
        "",
        f"Score: {r.score:g} / {r.max_score:g}",
        "",
        "report.html   your report: open it in a browser (it works offline).",
        "results.json  the same results, in Gradescope's format.",
    ]
    if hidden := sum(c.hidden for c in r.checks):
        lines += ["", f"{hidden} hidden check(s) show their outcome and score only, not what they test."]
    if r.harness_error or r.errors:
        lines += ["", "Part of this grading failed on our side (marked as grader error): it will be re-run."]
    if r.environment.wire != "not used":  # no traffic, no capture to speak of
        lines += [
            "",
            "The capture of your traffic and its key log are not included: the capture made while",
            "grading also holds the traffic of the hidden checks. To see your own traffic in",
            f"Wireshark, run `wiregrade check {r.assignment}` in your folder: it writes capture.pcap",
            "and keys.log of the public checks to .wiregrade-report/ (Wireshark: Preferences > Protocols >",
            "TLS > (Pre)-Master-Secret log filename = keys.log).",
        ]
    return "\n".join(lines) + "\n"


def _refused_note(r: SubmissionResult) -> str:
    return (
        f"wiregrade feedback: {r.assignment}, {r.student}\n\n"
        "Your submission could not be graded, so there is no report:\n\n"
        f"  {r.refused}\n\n"
        "What to try: hand in a plain folder or a .zip / .tar.gz of your files, with no links and\n"
        "no paths outside it, and ask your instructor to grade it again.\n"
    )


def zip_name(student: str) -> str:
    """The zip's file name: the student id, if it is a safe file name (intake makes it one)."""
    if not _ZIP_NAME.match(student) or len(student) > 200:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", student).strip("._")[:200] or "student"
        return safe + ".zip"
    return student + ".zip"


def write_zip(path: Path, files: dict[str, str]) -> None:
    """The zip at ``path``, written whole or not at all (a temporary file, then renamed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    stamp = time.localtime()[:6]
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, text in files.items():
                info = zipfile.ZipInfo(name, date_time=stamp)  # type: ignore[arg-type]
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, text.encode("utf-8"))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def stored_results(out: Path) -> list[SubmissionResult]:
    """Every result in OUT's store, or FeedbackError saying why there are none."""
    db = out / STORE_NAME
    if not db.is_file():
        raise FeedbackError(f"{out} holds no wiregrade store ({STORE_NAME}): grade into it first")
    store = Store(db)
    try:
        results = store.all()
    finally:
        store.close()
    if not results:
        raise FeedbackError(f"{out}'s store holds no graded submission")
    return results


def export_feedback(out: Path, dest: Path) -> Exported:
    """One zip per student of OUT's store in DEST (DEST/<assignment>/ when OUT holds several)."""
    results = stored_results(out)
    several = len({r.assignment for r in results}) > 1
    done = Exported()
    for r in results:
        folder = dest / zip_name(r.assignment)[: -len(".zip")] if several else dest
        folder.mkdir(parents=True, exist_ok=True)
        key = f"{r.assignment}/{r.student}" if several else r.student
        files = _files(r)
        path = folder / zip_name(r.student)
        if found := leaks(r, files):
            path.unlink(missing_ok=True)  # nor an earlier export's zip, which would pass for this one
            done.withheld[key] = f"its files would hold hidden text ({found[0][:60]!r}); not written"
            continue
        write_zip(path, files)
        done.zips[key] = path
        if r.refused:
            done.refused.append(key)
        elif r.harness_error or r.errors:
            done.grader_errors.append(key)
    return done
