"""The report page a student (or instructor) opens: failures first, readable on a phone,
the capture beside it, and the words said once, the same way.

Most tests render a result made here; the ones about what the session records (paths,
expected wording, when and by what it was graded) go through a real session.
"""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness._assignment import load_assignment
from harness._outputs import feedback_text, render_report, report_navs, write_outputs
from harness._results import CheckResult, Environment, Evidence, Outcome, SubmissionResult, Visibility
from harness._runner import run_session
from tests.conftest import ROOT
from tests.test_plugin import make_project

STRICT_FIX = "[ v3_server ]\nbasicConstraints = critical, CA:FALSE  # a comment\nsubjectAltName = DNS:x"


def frames(plain: bool, searched: bool = True) -> Evidence:
    row = {"no": 4, "time": "0.1", "src": "your server", "protocol": "TCP", "length": 78, "info": "PSH"}
    return Evidence(
        "frames",
        "What an eavesdropper saw (no keys)",
        [{**row, "payload": "Hello World!", "plaintext": plain, "searched": searched}],
    )


def result(**kw: object) -> SubmissionResult:
    def c(cid: str, outcome: Outcome, **more: object) -> CheckResult:
        return CheckResult(
            id=cid,
            title=f"Title of {cid}",
            points=2,
            score=2 if outcome is Outcome.PASSED else 0,
            outcome=outcome,
            visibility=Visibility.PUBLIC,
            expected=f"what {cid} expects",
            **more,  # type: ignore[arg-type]
        )

    checks = (
        c("handshake", Outcome.FAILED, seen="no handshake", hint="Wrap it:\n" + STRICT_FIX),
        c("message", Outcome.BLOCKED, blocked_by="handshake", seen="could not run"),
        c("slow", Outcome.TIMEOUT, seen="too slow", hint="Call `ssl_sock.unwrap()` first."),
        c("clear", Outcome.PASSED, evidence=(frames(False),)),
        CheckResult(
            id="secret",
            title="Hidden one",
            points=1,
            score=0,
            outcome=Outcome.FAILED,
            visibility=Visibility.HIDDEN,
            seen="HIDDEN-SEEN",
        ),
    )
    base = SubmissionResult(
        assignment="tls-server",
        student="alice",
        checks=checks,
        environment=Environment(isolation="netns", wire="dumpcap"),
        graded_at="2026-11-28T04:00:00Z",
        wiregrade_version="9.9.9",
        grader_fingerprint="abcdef123456",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()
        self.meta: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"] or "")
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"] or "")
        if tag == "meta" and a.get("name"):
            self.meta[a["name"] or ""] = a.get("content") or ""


def parse(page: str) -> Links:
    p = Links()
    p.feed(page)
    return p


def summary(page: str) -> str:
    return page.split('id="summary"')[1].split("</section>")[0]


def test_every_failed_check_is_linked_from_the_summary_on_top() -> None:
    page = render_report(result())
    top = summary(page)
    assert 'href="#handshake"' in top and 'href="#slow"' in top
    assert 'href="#message"' not in top  # blocked: counted, not listed as a failure
    assert "1 other check could not run without it" in top
    assert page.index('id="summary"') < page.index('id="handshake"')
    links = parse(page)
    assert all(h[1:] in links.ids for h in links.hrefs if h.startswith("#"))  # no dead anchor


def test_a_full_marks_report_says_so_and_that_no_frame_carries_the_message() -> None:
    r = result()
    good = replace(r, checks=tuple(replace(c, outcome=Outcome.PASSED, score=c.points) for c in r.checks[3:4]))
    top = summary(render_report(good))
    assert "Every check passed" in top
    assert "No frame an eavesdropper captured carries your message in clear" in top


def test_the_legend_of_a_frame_table_says_what_it_looked_for() -> None:
    r = result()
    leak = replace(r.checks[3], outcome=Outcome.FAILED, score=0, evidence=(frames(True),))
    page = render_report(replace(r, checks=(leak,)))
    assert "Rows in red carry your message in clear" in page
    assert "1 frame an eavesdropper captured carries your message in clear" in summary(page)
    unsearched = replace(leak, evidence=(frames(False, searched=False),))
    page = render_report(replace(r, checks=(unsearched,)))
    assert "your message" not in page  # handshake-analysis's capture: nobody's message to find


def test_passed_evidence_is_collapsed_and_a_blocked_check_is_collapsed_and_linked() -> None:
    page = render_report(result())
    clear = page.split('id="clear"')[1].split("</section>")[0]
    assert clear.index("<details>") < clear.index("<table>")
    blocked = page.split('id="message"')[1].split("</section>")[0]
    assert "<details>" in blocked and 'href="#handshake"' in blocked and "Title of handshake" in blocked
    assert 'class="badge blocked"' in blocked


def test_hints_keep_code_as_code() -> None:
    page = render_report(result())
    hs = page.split('id="handshake"')[1].split("</section>")[0]
    assert (
        "<pre><code>[ v3_server ]\nbasicConstraints = critical, CA:FALSE  # a comment\nsubjectAltName" in hs
    )
    assert "<code>ssl_sock.unwrap()</code>" in page and "`ssl_sock" not in page
    r = result()
    said = replace(r.checks[0], seen="`openssl req -x509` makes a v1 <certificate>")
    page = render_report(replace(r, checks=(said,)))
    assert "<code>openssl req -x509</code> makes a v1 &lt;certificate&gt;" in page  # escaped, then code


def test_seen_is_labelled_and_expected_worded_once() -> None:
    page = render_report(result())
    hs = page.split('id="handshake"')[1].split("</section>")[0]
    assert "What the grader saw:" in hs and "Expected:</span> what handshake expects" in hs
    clear = page.split('id="clear"')[1].split("</section>")[0]
    assert "Expected:</span> what clear expects" in clear


def test_a_phone_gets_a_viewport_and_tables_that_scroll_in_their_card() -> None:
    r = result()
    page = render_report(replace(r, checks=(replace(r.checks[3], outcome=Outcome.FAILED, score=0),)))
    assert parse(page).meta.get("viewport") == "width=device-width, initial-scale=1"
    assert '<div class="scroll"><table>' in page
    assert re.search(r"\.scroll \{[^}]*overflow-x: auto", page)
    assert re.search(r"@media \(max-width: 600px\)[^@]*\.narrow-hide \{ display: none; \}", page)


def test_how_it_was_run_is_collapsed_for_students_open_for_instructors() -> None:
    r = result()
    assert '<details class="env">' in render_report(r)
    assert '<details class="env" open>' in render_report(r, instructor=True)


def test_each_report_says_when_and_by_what_it_was_graded() -> None:
    for page in (render_report(result()), render_report(result(), instructor=True)):
        assert "Graded 2026-11-28 04:00:00 UTC · wiregrade 9.9.9 · grader abcdef123456" in page


def test_the_relay_is_named_where_packets_are_shown() -> None:
    r = result(environment=Environment(wire="relay"))
    r = replace(r, checks=(replace(r.checks[3], outcome=Outcome.FAILED, score=0),))
    assert "Reconstructed from a relay" in render_report(r)
    assert "Reconstructed from a relay" not in render_report(
        replace(r, environment=Environment(wire="dumpcap"))
    )


def test_the_capture_and_key_log_beside_the_report_are_linked_with_wireshark_steps(tmp_path: Path) -> None:
    write_outputs(result(), tmp_path)
    assert "capture.pcap" not in (tmp_path / "report.html").read_text()  # none there: no dead link
    (tmp_path / "capture.pcap").write_bytes(b"x")
    (tmp_path / "keys.log").write_text("x")
    write_outputs(result(), tmp_path)
    for name in ("report.html", "instructor.html"):
        links = parse((tmp_path / name).read_text())
        assert "capture.pcap" in links.hrefs and "keys.log" in links.hrefs, name
        assert "Protocols → TLS → (Pre)-Master-Secret log filename" in (tmp_path / name).read_text()


def test_the_instructor_copy_is_marked_and_links_the_class_and_neighbours(tmp_path: Path) -> None:
    folders = {n: tmp_path / n for n in ("bob", "alice", "carol")}
    navs = report_navs(folders, tmp_path / "index.html")
    write_outputs(result(student="bob"), folders["bob"], navs["bob"])
    page = (folders["bob"] / "instructor.html").read_text()
    assert "Instructor copy — do not send" in page
    links = parse(page).hrefs
    assert {"../index.html", "../alice/instructor.html", "../carol/instructor.html"} <= set(links)
    assert "do not send" not in (folders["bob"] / "report.html").read_text()
    assert navs["alice"].prev == "" and navs["carol"].next == ""
    assert "HIDDEN-SEEN" in page and "HIDDEN-SEEN" not in (folders["bob"] / "report.html").read_text()


def test_results_json_text_says_blocked_once_without_expected() -> None:
    text = feedback_text(result().checks[1])
    assert text.startswith("BLOCKED by handshake") and "Expected" not in text


BADGE = re.compile(r"\.badge\.(\w+) \{ background: (#[0-9a-f]{6}); color: (#[0-9a-f]{6}); \}")


def contrast(a: str, b: str) -> float:
    def lum(h: str) -> float:
        c = [int(h[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        c = [x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_contrast_is_what_wcag_says() -> None:
    assert contrast("#ffffff", "#000000") == pytest.approx(21)
    assert contrast("#bf8700", "#ffffff") == pytest.approx(3.14, abs=0.01)  # the old TIMEOUT badge


def test_every_badge_reads_at_wcag_aa_contrast() -> None:
    css = (ROOT / "reports/_style.css.j2").read_text()
    badges = {name: (bg, fg) for name, bg, fg in BADGE.findall(css)}
    assert set(badges) >= {o.value for o in Outcome} | {"hidden"}
    low = {n: round(contrast(bg, fg), 2) for n, (bg, fg) in badges.items() if contrast(bg, fg) < 4.5}
    assert low == {}


TRACEBACK_GRADER = """
from harness import check, fail

@check(title="Crashes", points=1, expected="It runs.")
def test_crashes(grading):
    raise fail(f'Traceback:\\n  File "{grading.submission}/server.py", line 3', expected="exit code 0")

@check(title="Runs", points=1, expected="It runs.")
def test_runs():
    pass
"""


def test_a_session_records_relative_paths_one_expected_and_its_stamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "p"
    make_project(root, TRACEBACK_GRADER, total=2)
    monkeypatch.setenv("WIREGRADE_HOME", str(root))
    (tmp_path / "s").mkdir()
    r = run_session(load_assignment("boom"), tmp_path / "s", tmp_path / "out", "s")
    crash, runs = r.checks
    assert 'File "server.py", line 3' in crash.seen
    assert crash.expected == runs.expected == "It runs."  # the check's words, passed or failed
    assert crash.expected_here == "exit code 0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r.graded_at)
    assert r.wiregrade_version and re.fullmatch(r"[0-9a-f]{12}", r.grader_fingerprint)
