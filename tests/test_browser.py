"""The reports as people open them: Debian's headless chromium, driven by Selenium.

A demo-like batch (tls-server's samples, graded once for this module) and one submission with
every outcome are opened from file:// at 1280 px and 390 px: the class page, a student's
report and the instructor's copy. Nothing may overflow the page sideways, every failed check
is linked from the summary, hidden checks' texts stay off student pages, no request leaves the
page and the console stays clean; headings, ``<th scope>`` and AA contrast are checked in the
browser from computed styles. Screenshots are kept in out/browser/ (git-ignored).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from harness._assignment import load_assignment
from harness._outputs import write_index, write_outputs
from harness._results import CheckResult, Environment, Evidence, Outcome, SubmissionResult, Visibility
from harness._runner import grade_batch, student_dir
from harness._samples import materialize, samples_of
from tests.conftest import ROOT, needs_tshark

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOTS = ROOT / "out" / "browser"
WIDTHS = (1280, 390)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra)")
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    if os.environ.get("CI"):  # CI installs them (scripts/setup): their absence is a failure there
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium chromium-driver)")
    pytest.skip("Debian's chromium and chromium-driver are not installed", allow_module_level=True)

pytestmark = [pytest.mark.slow, needs_tshark]


# --- the pages ---------------------------------------------------------------------------------


@dataclass
class Batch:
    out: Path
    results: dict[str, SubmissionResult]
    outcomes: Path  # OUT of one synthetic submission with every outcome, and its class page

    def page(self, name: str) -> Path:
        """class | student | instructor | outcomes-student | outcomes-instructor | outcomes-class"""
        if name == "class":
            return self.out / "index.html"
        if name == "student":
            return student_dir(self.out, "lecture") / "report.html"
        if name == "instructor":
            return student_dir(self.out, "lecture") / "instructor.html"
        if name == "outcomes-class":
            return self.outcomes / "index.html"
        kind = name.removeprefix("outcomes-")
        return student_dir(self.outcomes, "every-outcome") / f"{'report' if kind == 'student' else kind}.html"


def every_outcome() -> SubmissionResult:
    """One submission whose checks end in every outcome there is (BLOCKED where it exists)."""
    outcomes = [Outcome.PASSED, Outcome.FAILED, Outcome.TIMEOUT, Outcome.ERROR]
    outcomes += [o for o in Outcome if o not in outcomes]
    checks = []
    for i, o in enumerate(outcomes):
        for vis in Visibility:
            checks.append(
                CheckResult(
                    id=f"{o.value}-{vis.value}-{i}",
                    title=f"A {vis.value} check that ends {o.value}",
                    points=2,
                    score=2 if o is Outcome.PASSED else 0,
                    outcome=o,
                    visibility=vis,
                    expected=f"expected text of the {vis.value} {o.value} check",
                    seen=f"seen text of the {vis.value} {o.value} check",
                    hint=f"hint text of the {vis.value} {o.value} check",
                    details="Traceback (most recent call last):\n  instructor only",
                    evidence=(Evidence("text", "What the grader saw", f"evidence of {vis.value} {o.value}"),),
                )
            )
    env = Environment(isolation="netns", isolation_detail="a private network", wire="dumpcap", python="3")
    return SubmissionResult("tls-server", "every-outcome", tuple(checks), environment=env, duration=1.0)


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Batch:
    """tls-server's samples graded once, as the demo grades them, and the every-outcome pages."""
    a = load_assignment("tls-server")
    root = tmp_path_factory.mktemp("browser")
    subs = root / "submissions"
    for s in samples_of(a):
        materialize(s, subs / s.name)
    out = root / "reports"
    results = {r.student: r for r in grade_batch(a, subs, out, jobs=2)}
    assert "lecture" in results and not any(r.harness_error or r.errors for r in results.values())
    outcomes = root / "outcomes"
    r = every_outcome()
    write_outputs(r, student_dir(outcomes, r.student))
    write_index([r], outcomes / "index.html", r.assignment)
    return Batch(out, results, outcomes)


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for flag in FLAGS:
        opts.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="wiregrade-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # the driver's own path: Selenium Manager never runs, nothing is downloaded
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(30)
    try:
        yield d
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)


@dataclass
class Opened:
    path: Path
    width: int
    console: list[dict[str, Any]]
    requests: list[str]


def open_page(driver: Any, path: Path, width: int, shot: str) -> Opened:
    """Load ``path`` at ``width`` px, keep a full-page screenshot, and what the page logged
    and requested while loading."""
    driver.get_log("browser")  # drop what earlier pages left
    driver.get_log("performance")
    driver.set_window_size(width, 900)
    driver.get(path.as_uri())
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(height, 900), 6000))
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{shot}-{width}.png"))
    requests = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            requests.append(msg["params"]["request"]["url"])
    return Opened(path, width, driver.get_log("browser"), requests)


PAGES = ("class", "student", "instructor", "outcomes-class", "outcomes-student", "outcomes-instructor")
REPORTS = ("student", "instructor", "outcomes-student", "outcomes-instructor")


@pytest.fixture(params=[(p, w) for p in PAGES for w in WIDTHS], ids=lambda pw: f"{pw[0]}-{pw[1]}")
def opened(request: pytest.FixtureRequest, batch: Batch, driver: Any) -> Opened:
    name, width = request.param
    return open_page(driver, batch.page(name), width, name)


# --- in the page -------------------------------------------------------------------------------

OVERFLOW_JS = """
const vw = document.documentElement.clientWidth;
const clipped = (el) => {
  for (let p = el.parentElement; p && p !== document.documentElement; p = p.parentElement) {
    if (getComputedStyle(p).overflowX !== "visible") return true;
  }
  return false;
};
const bad = [];
for (const el of document.body.querySelectorAll("*")) {
  const r = el.getBoundingClientRect();
  if (r.width === 0 && r.height === 0) continue;
  if ((r.right > vw + 1 || r.left < -1) && !clipped(el)) {
    bad.push(`${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}.${el.className} ` +
             `[${Math.round(r.left)}..${Math.round(r.right)}] ${el.textContent.trim().slice(0, 40)}`);
  }
}
return {vw: vw, scroll: document.documentElement.scrollWidth, bad: bad};
"""

CONTRAST_JS = """
const parse = (c) => {
  const m = c.match(/rgba?\\(([^)]+)\\)/);
  if (!m) return null;
  const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
  return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
};
const over = (top, base) => ({
  r: top.r * top.a + base.r * (1 - top.a), g: top.g * top.a + base.g * (1 - top.a),
  b: top.b * top.a + base.b * (1 - top.a), a: 1});
const background = (el) => {
  const layers = [];
  for (let e = el; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor);
    if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
  }
  let base = {r: 255, g: 255, b: 255, a: 1};
  for (const layer of layers.reverse()) base = over(layer, base);
  return base;
};
const lum = (c) => {
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
};
const found = [];
for (const el of document.querySelectorAll(arguments[0])) {
  const r = el.getBoundingClientRect();
  if (r.width === 0 || !el.textContent.trim()) continue;
  const bg = background(el);
  const fg = over(parse(getComputedStyle(el).color), bg);
  const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
  found.push({what: `${el.className}: ${el.textContent.trim().slice(0, 30)}`,
              ratio: (hi + 0.05) / (lo + 0.05)});
}
return found;
"""

# What colour speaks for: outcome badges and tags, the class page's cells and statuses, muted text.
COLOURED = ".badge, .tag, td.cell, .status, .muted"


def test_nothing_overflows_the_page_sideways(opened: Opened, driver: Any) -> None:
    got = driver.execute_script(OVERFLOW_JS)
    assert got["scroll"] <= got["vw"], f"{opened.path.name} at {opened.width}px scrolls sideways"
    assert not got["bad"], f"{opened.path.name} at {opened.width}px: these stick out: {got['bad'][:8]}"


def test_no_request_leaves_the_page_and_no_console_error(opened: Opened, driver: Any) -> None:
    outside = [u for u in opened.requests if urlsplit(u).scheme not in ("file", "data")]
    assert not outside, f"{opened.path.name} requested {outside}"
    resources = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => !n.startsWith('data:') && !n.startsWith('file:'))"
    )
    assert resources == []
    errors = [e["message"] for e in opened.console if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, f"{opened.path.name}: console errors {errors}"


@pytest.mark.parametrize("name", PAGES)
def test_coloured_text_meets_aa_contrast(name: str, batch: Batch, driver: Any) -> None:
    open_page(driver, batch.page(name), 1280, name)
    found = driver.execute_script(CONTRAST_JS, COLOURED)
    assert found, f"nothing coloured found on {name}"
    poor = [f"{f['what']} {f['ratio']:.2f}:1" for f in found if f["ratio"] < 4.5]
    assert not poor, f"{name}: below AA (4.5:1): {sorted(set(poor))}"


@pytest.mark.parametrize("name", PAGES)
def test_every_table_heading_has_a_scope(name: str, batch: Batch, driver: Any) -> None:
    open_page(driver, batch.page(name), 1280, name)
    bare = driver.execute_script(
        "return [...document.querySelectorAll('th')].filter(th => !['col', 'row', 'colgroup', 'rowgroup']"
        ".includes(th.getAttribute('scope'))).map(th => th.textContent.trim())"
    )
    assert not bare, f"{name}: <th> without scope: {bare[:8]}"


def result_of(batch: Batch, name: str) -> SubmissionResult:
    return every_outcome() if name.startswith("outcomes-") else batch.results["lecture"]


@pytest.mark.parametrize("name", REPORTS)
def test_each_check_has_a_heading(name: str, batch: Batch, driver: Any) -> None:
    """A screen reader's user jumps from check to check by heading: each check's title is one."""
    open_page(driver, batch.page(name), 1280, name)
    headings = driver.execute_script(
        "const h = {}; for (const c of document.querySelectorAll('.check[id]'))"
        " h[c.id] = [...c.querySelectorAll('h2, h3, h4, h5, h6, [role=heading]')].map(e => e.textContent);"
        " return h;"
    )
    checks = result_of(batch, name).checks
    missing = [c.id for c in checks if not any(c.title in h for h in headings.get(c.id, []))]
    assert not missing, f"{name}: checks whose title is not a heading: {missing}"


SUMMARY_LINKS_JS = """
const checks = [...document.querySelectorAll(".check[id]")];
const first = checks[0];
const failed = checks.filter(c => c.classList.contains("failed") || c.classList.contains("timeout"));
const linked = new Set([...document.querySelectorAll("a[href^='#']")]
  .filter(a => !a.closest(".check") && first
               && (a.compareDocumentPosition(first) & Node.DOCUMENT_POSITION_FOLLOWING))
  .map(a => decodeURIComponent(a.getAttribute("href").slice(1))));
return {failed: failed.map(c => c.id), linked: [...linked]};
"""


@pytest.mark.parametrize("name", REPORTS)
def test_every_failed_check_is_linked_from_the_summary(name: str, batch: Batch, driver: Any) -> None:
    open_page(driver, batch.page(name), 1280, name)
    got = driver.execute_script(SUMMARY_LINKS_JS)
    assert got["failed"], f"{name} shows no failed check (the sample changed?)"
    unlinked = sorted(set(got["failed"]) - set(got["linked"]))
    assert not unlinked, f"{name}: failed checks not linked from a summary above the checks: {unlinked}"


def hidden_texts(r: SubmissionResult) -> list[str]:
    """Hidden checks' texts a student page must not show (their title and score it may)."""
    texts = []
    for c in r.checks:
        if c.hidden:
            texts += [c.expected, c.seen, c.hint, c.details]
            texts += [json.dumps(e.data) if not isinstance(e.data, str) else e.data for e in c.evidence]
    lines = {line.strip() for t in texts for line in t.splitlines()}
    return sorted(x for x in lines if len(x) >= 8)


def visible_text(driver: Any) -> str:
    return str(
        driver.execute_script(
            "return document.documentElement.innerText + document.documentElement.outerHTML"
        )
    )


@pytest.mark.parametrize("width", WIDTHS)
def test_hidden_checks_texts_are_absent_from_student_pages(width: int, batch: Batch, driver: Any) -> None:
    lecture = batch.results["lecture"]
    texts = hidden_texts(lecture)
    assert any(c.hidden and c.outcome is Outcome.FAILED for c in lecture.checks), (
        "lecture fails no hidden check"
    )
    open_page(driver, batch.page("instructor"), width, "instructor")
    assert any(t in visible_text(driver) for t in texts), "the instructor copy shows no hidden text: vacuous"
    for name, r in (("student", lecture), ("outcomes-student", every_outcome())):
        open_page(driver, batch.page(name), width, name)
        shown = visible_text(driver)
        leaked = [t for t in hidden_texts(r) if t in shown]
        assert not leaked, f"{name} at {width}px shows hidden text: {leaked[:5]}"


# --- the class page ----------------------------------------------------------------------------


def test_the_student_table_sorts_and_reads_without_script(batch: Batch, driver: Any) -> None:
    page = batch.page("class")
    html = page.read_text()
    students = sorted(batch.results)
    order = [m for m in re.findall(r'<tr><th scope="row">([^<]+)</th><td data-key', html)]
    assert order == students  # with scripts off: every student, in id order, with their status
    open_page(driver, page, 1280, "class-sorted")

    def column(n: int) -> list[str]:
        return list(
            driver.execute_script(
                f"return [...document.querySelectorAll('table.students tbody tr')]"
                f".map(r => r.cells[{n}].textContent.trim())"
            )
        )

    score_button = driver.find_element("css selector", "table.students thead th:nth-child(2) button")
    score_button.click()
    scores = [float(s.split("/")[0]) for s in column(1)]
    assert scores == sorted(scores)
    score_button.click()
    assert [float(s.split("/")[0]) for s in column(1)] == sorted(scores, reverse=True)
    sort_state = driver.execute_script(
        "return document.querySelector('table.students thead th:nth-child(2)').getAttribute('aria-sort')"
    )
    assert sort_state == "descending"


def test_the_class_page_shows_status_failed_checks_and_hidden_marks(batch: Batch) -> None:
    html = batch.page("class").read_text()
    assert 'href="gradebook.csv"' in html and (batch.out / "gradebook.csv").is_file()
    lecture = batch.results["lecture"]
    for c in lecture.checks:
        if c.outcome is Outcome.FAILED:
            assert f'instructor.html#{c.id}"' in html
    hidden = [c for c in lecture.checks if c.hidden]
    assert hidden and all(
        re.search(re.escape(c.id) + r"</a><span class=\"tag\">hidden", html) for c in hidden
    )
    # each cell: colour and the outcome in words
    assert '<td class="cell failed"' in html and ">FAIL</td>" in html and ">pass</td>" in html


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.hrefs.append(str(a["href"]))
        if a.get("id"):
            self.ids.add(str(a["id"]))


def parse_links(path: Path) -> _Links:
    p = _Links()
    p.feed(path.read_text())
    return p


def test_every_link_on_the_class_page_resolves(batch: Batch) -> None:
    page = batch.page("class")
    links = parse_links(page)
    assert links.hrefs
    for href in links.hrefs:
        parts = urlsplit(href)
        assert not parts.scheme and not parts.netloc, f"the class page links outside: {href}"
        target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
        assert target.is_file(), f"{href}: no such file"
        if parts.fragment and target.suffix == ".html":
            assert unquote(parts.fragment) in parse_links(target).ids, f"{href}: no such anchor"
