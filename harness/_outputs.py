"""Rendering results: Gradescope results.json, JUnit XML, HTML reports, the gradebook.

Everything a student may see goes through :meth:`SubmissionResult.for_student` first: that
is the one place where hidden checks lose their details.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import statistics
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from ._assignment import project_root
from ._classpage import SORT_SCRIPT, class_matrix, script_hash
from ._markup import hint_html, inline
from ._results import CheckResult, Outcome, SubmissionResult
from ._store import Arrival

GRADESCOPE_HIDDEN = "after_published"

# Characters XML 1.0 forbids (C0 controls but tab, newline and carriage return; lone surrogates;
# U+FFFE/U+FFFF). A student's output may hold any of them; shown as \xNN, never written raw.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """``text`` with every character XML 1.0 forbids written as a visible escape (ESC as \\x1b)."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else "\ufffd", text)


def _finalize(value: object) -> object:
    if isinstance(value, Markup):  # already escaped markup: stays markup (\xNN adds no tag)
        return Markup(xml_safe(value))
    return xml_safe(value) if isinstance(value, str) else value


def plaintext_frames(result: SubmissionResult) -> tuple[bool, int]:
    """(whether any check looked for the student's message on the wire, how many frames held it)."""
    looked, found = False, 0
    for c in result.checks:
        for e in c.evidence:
            if e.kind == "frames" and e.data and e.data[0].get("searched", True):
                looked = True
                found += sum(bool(f.get("plaintext")) for f in e.data)
    return looked, found


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(project_root() / "reports")),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,  # every value a page shows: no character XML/HTML forbids
    )


def feedback_text(c: CheckResult) -> str:
    parts = []
    if c.outcome is Outcome.ERROR:
        parts.append("GRADER ERROR (not your fault; these points are not lost, the check will be re-run).")
    if c.outcome is Outcome.BLOCKED:  # one line: the cause is told where it happened
        return f"BLOCKED by {c.blocked_by}: " + (c.seen or "not run, because that check did not pass.")
    if c.seen:
        parts.append(c.seen)
    if c.expected and c.outcome not in (Outcome.PASSED, Outcome.BLOCKED):
        parts.append(f"Expected: {c.expected}" + (f" (here: {c.expected_here})" if c.expected_here else ""))
    if c.hint:
        parts.append(f"Hint: {c.hint}")
    return "\n".join(parts)


# --- Gradescope ------------------------------------------------------------------------------


GRADESCOPE_ROWS = 40  # frames of one table in a test's output
GRADESCOPE_TEXT = 8000  # characters of one piece of evidence in a test's output


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "\n… (the rest is in the report)"


def gradescope_test_html(c: CheckResult) -> str:
    """One public check as Gradescope shows it (``output_format: html``): its status in its own
    word, the feedback, and what it saw (texts, output, the frames an eavesdropper read)."""
    esc = html.escape
    parts = [f"<p><strong>{esc(c.outcome.value)}</strong> ({c.score:g}/{c.points:g})</p>"]
    if text := feedback_text(c):
        parts.append(f"<pre>{esc(_cut(text, GRADESCOPE_TEXT))}</pre>")
    for e in c.evidence if c.outcome is not Outcome.BLOCKED else ():  # an echo: its cause shows
        parts.append(f"<h4>{esc(e.title)}</h4>")
        if e.kind == "frames" and isinstance(e.data, list):
            head = ("No.", "Time", "From", "Protocol", "Length", "Info", "Bytes an eavesdropper reads")
            rows = ["<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
            keys = ("no", "time", "src", "protocol", "length", "info", "payload")
            for f in e.data[:GRADESCOPE_ROWS]:
                if isinstance(f, dict):
                    style = ' style="color:#b00"' if f.get("plaintext") else ""
                    cells = "".join(f"<td>{esc(str(f.get(k, '')))}</td>" for k in keys)
                    rows.append(f"<tr{style}>{cells}</tr>")
            if len(e.data) > GRADESCOPE_ROWS:
                rows.append(f"<tr><td colspan=7>… {len(e.data) - GRADESCOPE_ROWS} more frames</td></tr>")
            parts.append("<table>" + "".join(rows) + "</table>")
            parts.append("<p>Rows in red carry your message in clear.</p>")
        elif e.kind == "pair" and isinstance(e.data, dict):
            for heading, text in (e.data.get("left", ("", "")), e.data.get("right", ("", ""))):
                parts.append(
                    f"<p><em>{esc(str(heading))}</em></p><pre>{esc(_cut(str(text), GRADESCOPE_TEXT))}</pre>"
                )
        else:
            parts.append(f"<pre>{esc(_cut(str(e.data), GRADESCOPE_TEXT))}</pre>")
    return xml_safe("\n".join(parts))


def gradescope(result: SubmissionResult) -> dict[str, Any]:
    """results.json as Gradescope reads it.

    Each check is a test numbered "1", "2", ... with its id in ``tags``. Hidden checks are
    ``after_published`` (title and score only): students cannot probe them by resubmitting, and
    Gradescope then hides the total until grades are published, so the top-level output states
    the public subtotal. A grader ERROR is named as one and said at the top; ``run_autograder``
    hands no results.json to Gradescope at all in that case (exit 3), so it is never a silent 0.
    """
    r = result.for_student()
    tests = []
    for number, c in enumerate(r.checks, 1):
        error = c.outcome is Outcome.ERROR
        test: dict[str, Any] = {
            "name": f"[grader error] {c.title}" if error else c.title,
            "name_format": "text",
            "number": str(number),
            "tags": [c.id],
            "score": c.score,
            "max_score": c.points,
            "status": "passed" if c.outcome is Outcome.PASSED else "failed",
            "visibility": GRADESCOPE_HIDDEN if c.hidden else "visible",
            "output": "" if c.hidden else gradescope_test_html(c),
            "output_format": "html",
        }
        if error:
            test["extra_data"] = {"grader_error": True}
        tests.append(test)
    public = [c for c in r.checks if not c.hidden]
    hidden = [c for c in r.checks if c.hidden]
    lines = []
    if r.refused:
        lines.append(f"Your submission could not be graded: {r.refused}")
    elif r.harness_error or r.errors:
        lines.append(
            "GRADER ERROR: re-run. The grader itself failed on part of this submission; those checks "
            "are marked [grader error]. Not your work: they are not counted against you once re-run."
        )
    if public:
        lines.append(
            f"Public checks: {sum(c.score for c in public):g}/{sum(c.points for c in public):g} "
            f"on {len(public)} checks."
        )
    if hidden:
        lines.append(
            f"Hidden checks: {len(hidden)} worth {sum(c.points for c in hidden):g} points, shown when "
            "grades are published (your total is shown then too)."
        )
    out: dict[str, Any] = {
        "score": r.score,
        "execution_time": round(r.duration, 2),
        "output": "\n".join(lines),
        "output_format": "text",
        "tests": tests,
    }
    if r.harness_error or r.errors:
        out["extra_data"] = {"grader_error": True}
    return out


def write_gradescope(result: SubmissionResult, path: Path) -> None:
    path.write_text(json.dumps(gradescope(result), indent=2))


# --- JUnit -----------------------------------------------------------------------------------


def junit(result: SubmissionResult) -> ET.ElementTree:
    r = result.for_student()
    suite = ET.Element(
        "testsuite",
        name=f"wiregrade.{r.assignment}",
        tests=str(len(r.checks)),
        failures=str(sum(c.outcome in (Outcome.FAILED, Outcome.TIMEOUT) for c in r.checks)),
        errors=str(sum(c.outcome is Outcome.ERROR for c in r.checks)),
        skipped=str(sum(c.outcome is Outcome.BLOCKED for c in r.checks)),
        time=f"{r.duration:.3f}",
    )
    for c in r.checks:
        case = ET.SubElement(
            suite, "testcase", classname=r.assignment, name=f"{c.id}: {c.title}", time=f"{c.duration:.3f}"
        )
        ET.SubElement(case, "properties").extend(
            [
                ET.Element("property", name="points", value=f"{c.points:g}"),
                ET.Element("property", name="score", value=f"{c.score:g}"),
                ET.Element("property", name="visibility", value=c.visibility.value),
            ]
        )
        if c.outcome in (Outcome.FAILED, Outcome.TIMEOUT):
            el = ET.SubElement(case, "failure", type=c.outcome.value, message=c.title)
            el.text = feedback_text(c)
        elif c.outcome is Outcome.ERROR:
            el = ET.SubElement(case, "error", type="harness", message="grader error")
            el.text = feedback_text(c)
        elif c.outcome is Outcome.BLOCKED:  # not run: skipped, with the check that kept it from running
            el = ET.SubElement(case, "skipped", type="blocked", message=f"blocked by {c.blocked_by}")
            el.text = feedback_text(c)
    if r.harness_error:
        case = ET.SubElement(suite, "testcase", classname=r.assignment, name="session")
        ET.SubElement(case, "error", type="harness", message="grading session failed").text = r.harness_error
    return ET.ElementTree(suite)


def write_junit(result: SubmissionResult, path: Path) -> None:
    tree = junit(result)
    for el in tree.iter():  # a student's output or file names may hold controls: well-formed always
        el.text = xml_safe(el.text) if el.text else el.text
        el.tail = xml_safe(el.tail) if el.tail else el.tail
        for key, value in el.attrib.items():
            el.attrib[key] = xml_safe(value)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)


# --- HTML ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Nav:
    """Where an instructor report links: the class page and the neighbouring students' reports
    (relative links, from the report's own folder)."""

    index: str
    prev: str = ""
    prev_name: str = ""
    next: str = ""
    next_name: str = ""


def render_report(
    result: SubmissionResult,
    *,
    instructor: bool = False,
    files: dict[str, bool] | None = None,
    nav: Nav | None = None,
) -> str:
    """One report page; ``files`` says which of capture.pcap and keys.log lie beside it."""
    r = result if instructor else result.for_student()
    return (
        _env()
        .get_template("report.html.j2")
        .render(
            r=r,
            instructor=instructor,
            Outcome=Outcome,
            inline=inline,
            hint_html=hint_html,
            files={k: v for k, v in (files or {}).items() if v},
            nav=nav if instructor else None,
            wire_search=plaintext_frames(r),
        )
    )


def report_navs(folders: dict[str, Path], index: Path) -> dict[str, Nav]:
    """For each student (name -> the folder of their reports): the links of their
    instructor report to the class page and to the previous and next student, by name."""
    names = sorted(folders)
    navs = {}
    for i, name in enumerate(names):
        here = folders[name]

        def link(other: str, here: Path = here) -> str:
            return os.path.relpath(folders[other] / "instructor.html", here)

        prev = names[i - 1] if i > 0 else ""
        nxt = names[i + 1] if i + 1 < len(names) else ""
        navs[name] = Nav(
            index=os.path.relpath(index, here),
            prev=link(prev) if prev else "",
            prev_name=prev,
            next=link(nxt) if nxt else "",
            next_name=nxt,
        )
    return navs


def write_report(
    result: SubmissionResult, path: Path, *, instructor: bool = False, nav: Nav | None = None
) -> None:
    files = {
        "capture": (path.parent / "capture.pcap").is_file(),
        "keys": (path.parent / "keys.log").is_file(),
    }
    path.write_text(render_report(result, instructor=instructor, files=files, nav=nav))


def write_outputs(result: SubmissionResult, out: Path, nav: Nav | None = None) -> None:
    """Everything for one submission: results.json, junit.xml, report.html (+ instructor.html)."""
    out.mkdir(parents=True, exist_ok=True)
    write_gradescope(result, out / "results.json")
    write_junit(result, out / "junit.xml")
    write_report(result, out / "report.html")
    if result.visibility == "all":
        write_report(result, out / "instructor.html", instructor=True, nav=nav)


# --- the class -------------------------------------------------------------------------------


def check_columns(results: Sequence[SubmissionResult]) -> list[tuple[str, str, float]]:
    cols: dict[str, tuple[str, str, float]] = {}
    for r in results:
        for c in r.checks:
            cols.setdefault(c.id, (c.id, c.title, c.points))
    return list(cols.values())


def read_adjustments(path: Path) -> dict[str, list[tuple[float, str]]]:
    """The instructor's manual adjustments: a CSV of student, points, reason (several per student
    allowed). Kept apart from the store, so a regrade never loses them."""
    adj: dict[str, list[tuple[float, str]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                adj.setdefault(row["student"].strip(), []).append(
                    (float(row["points"]), row.get("reason", "").strip())
                )
            except (KeyError, ValueError) as exc:
                raise ValueError(f"{path}: each row needs student, points, reason ({exc}: {row})") from exc
    return adj


def write_gradebook(
    results: Sequence[SubmissionResult],
    path: Path,
    adjustments: dict[str, list[tuple[float, str]]] | None = None,
    arrivals: dict[str, Arrival] | None = None,
) -> None:
    """One row per student; ``submitted`` and ``late`` as the export named them (issue 14)."""
    cols = check_columns(results)
    adjustments = adjustments or {}
    arrivals = arrivals or {}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "student",
                "score",
                "max",
                *[c[0] for c in cols],
                "adjustment",
                "adjustment_reason",
                "final",
                "status",
                "duration_s",
                "submitted",
                "late",
            ]
        )
        for r in sorted(results, key=lambda r: r.student):
            by_id = {c.id: c for c in r.checks}
            cells = []
            for cid, _t, _p in cols:
                c = by_id.get(cid)
                cells.append("" if c is None else ("ERROR" if c.outcome is Outcome.ERROR else f"{c.score:g}"))
            adj = adjustments.get(r.student, [])
            delta = sum(p for p, _ in adj)
            reasons = "; ".join(f"{p:+g} {why}".strip() for p, why in adj)
            w.writerow(
                [
                    r.student,
                    f"{r.score:g}",
                    f"{r.max_score:g}",
                    *cells,
                    f"{delta:+g}" if adj else "",
                    reasons,
                    f"{r.score + delta:g}",
                    r.status,
                    f"{r.duration:.1f}",
                    arrivals[r.student].submitted if r.student in arrivals else "",
                    "late" if r.student in arrivals and arrivals[r.student].late else "",
                ]
            )


def class_summary(results: Sequence[SubmissionResult]) -> dict[str, Any]:
    graded = [r for r in results if not r.harness_error and not r.refused]
    cols = check_columns(results)
    rates = []
    for cid, title, points in cols:
        # Neither the grader's errors nor the checks blocked by another are a missed idea.
        mine = [c for r in graded for c in r.checks if c.id == cid]
        outs = [c for c in mine if c.outcome not in (Outcome.ERROR, Outcome.BLOCKED)]
        passed = sum(c.outcome is Outcome.PASSED for c in outs)
        rates.append(
            {
                "id": cid,
                "title": title,
                "points": points,
                "passed": passed,
                "of": len(outs),
                "blocked": sum(c.outcome is Outcome.BLOCKED for c in mine),
                "rate": passed / len(outs) if outs else 0.0,
            }
        )
    rates.sort(key=lambda x: (x["rate"], x["id"]))
    max_score = max((r.max_score for r in graded), default=0.0)
    scores = [r.score for r in graded]
    bins = 10
    hist = [0] * bins
    for s in scores:
        i = min(bins - 1, int(bins * s / max_score)) if max_score else 0
        hist[i] += 1
    return {
        "count": len(results),
        "graded": len(graded),
        "errors": [r for r in results if r.harness_error or r.errors],
        "refused": [r for r in results if r.refused],
        "mean": statistics.mean(scores) if scores else 0.0,
        "median": statistics.median(scores) if scores else 0.0,
        "max_score": max_score,
        "histogram": [
            {"lo": max_score * i / bins, "hi": max_score * (i + 1) / bins, "n": n} for i, n in enumerate(hist)
        ],
        "rates": rates,
    }


def write_index(
    results: Sequence[SubmissionResult],
    path: Path,
    assignment: str,
    arrivals: dict[str, Arrival] | None = None,
    student_href: Callable[[str], str] = lambda student: student,
) -> None:
    """The class page. ``student_href``: a student's folder relative to the page."""
    cols, rows = class_matrix(results)
    path.write_text(
        _env()
        .get_template("index.html.j2")
        .render(
            assignment=assignment,
            arrivals=arrivals or {},
            s=class_summary(results),
            results=sorted(results, key=lambda r: r.student),
            cols=cols,
            rows=rows,
            href=lambda student: urllib.parse.quote(student_href(student)),
            script=SORT_SCRIPT,
            script_hash=script_hash(SORT_SCRIPT),
            escape=html.escape,
        )
    )
