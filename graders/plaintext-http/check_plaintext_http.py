"""Checks for `plaintext-http`: a sniffer that finds what HTTP gives away in a capture.

The capture is the student's own (made by the grader's endpoints from their seed): the
lecture's story of a search, a session cookie and a login over HTTP, and two HTTPS
connections whose content never reaches an eavesdropper. Each check reads one part of the
same answer; a request the program misses costs 'Finds every HTTP request', and the field
checks then say so without guessing."""

from __future__ import annotations

from support import Answer, Capture, compare, dumps, https_clients, one

from harness import EvidenceRecorder, Shared, check, fail, show

# --- public checks ------------------------------------------------------------------------


@check(
    title="Reads the capture and prints the report as JSON",  # = support.RUNS, which names it as the owner
    points=2,
    expected='`python3 sniff.py capture.pcap` exits 0 and prints {"requests": [...], "https": [...]}.',
    hint="Try it on the handout's practice.pcap and compare with practice-answer.json.",
)
def test_runs(answer: Shared[Answer]) -> None:
    answer.get(owner=True)


@check(
    title="Finds every HTTP request, on the right connection",
    points=3,
    expected="Each request the grader's client sent in clear, with its client and server address, "
    "method and path, in the order sent; no request that was not sent.",
    hint="Group the packets by TCP connection and read each client's bytes from the start: "
    "a connection may carry several requests.",
    needs="runs",
)
def test_requests(answer: Shared[Answer], capture: Capture, evidence: EvidenceRecorder) -> None:
    ans = answer.get()
    tls = https_clients(capture.truth)
    keys = ("client", "server", "method", "path")
    want = [{k: r[k] for k in keys} for r in capture.truth["requests"]]
    got = [
        {k: r.get(k) for k in keys}
        for r in ans.data["requests"]
        if (r.get("client"), r.get("server")) not in tls
    ]
    if got != want:
        missing = [w for w in want if w not in got]
        extra = [g for g in got if g not in want]
        evidence.side_by_side(
            "The HTTP requests", ("Expected (what was sent)", show(want)), ("Your report", show(got))
        )
        lines = [f"missing: {dumps(m)}" for m in missing] + [f"not in the capture: {dumps(e)}" for e in extra]
        raise fail(
            f"Your report lists {len(got)} HTTP request(s); the capture holds {len(want)}.\n"
            + "\n".join(lines)
            if lines
            else "Your report has the right requests in a different order.",
        )


@check(
    title="The search phrase, decoded from the query string",
    points=3,
    expected="The /search request's query as {name: [values]} (urllib.parse.parse_qs).",
    hint="The phrase is escaped in the request ('&' is %26): split the request target at '?', then "
    "parse_qs(query, keep_blank_values=True).",
    needs="runs",
)
def test_search(answer: Shared[Answer], capture: Capture, evidence: EvidenceRecorder) -> None:
    compare(answer.get(), one(capture.truth, path="/search"), ("query",), "the search", evidence)


@check(
    title="The session cookie",
    points=3,
    expected="Every request's cookies as {name: value}, from its Cookie header.",
    hint="The Cookie header is 'name=value; name2=value2': split at ';', strip, then at the first '='.",
    needs="runs",
)
def test_cookies(answer: Shared[Answer], capture: Capture, evidence: EvidenceRecorder) -> None:
    ans = answer.get()
    for want in capture.truth["requests"]:
        compare(ans, want, ("cookies",), "the cookies", evidence)


@check(
    title="The login form's username and password",
    points=3,
    expected="The POST's form fields as {name: [values]}, from its body (Content-Length bytes after "
    "the headers).",
    hint="The body starts after the blank line; read Content-Length bytes and parse_qs them. It may "
    "arrive in a later packet than the headers.",
    needs="runs",
)
def test_form(answer: Shared[Answer], capture: Capture, evidence: EvidenceRecorder) -> None:
    compare(answer.get(), one(capture.truth, method="POST"), ("form",), "the login form", evidence)


@check(
    title="Host and User-Agent of each request",
    points=2,
    expected="host and user_agent as sent in the Host and User-Agent headers (null if absent).",
    hint="Header names are case-insensitive; the value starts after the colon and its spaces.",
    needs="runs",
)
def test_headers(answer: Shared[Answer], capture: Capture, evidence: EvidenceRecorder) -> None:
    ans = answer.get()
    for want in capture.truth["requests"]:
        compare(ans, want, ("host", "user_agent"), "the headers", evidence)


@check(
    title="HTTPS: the server name and address, and nothing from inside",
    points=3,
    expected='One "https" entry per TLS connection, on any port: {"client", "server", "sni"} only, sni '
    "null when the ClientHello names no server. Nothing about the requests inside (they are "
    "encrypted), and no HTTP request on those connections.",
    hint="A TLS connection's first client bytes are a handshake record (0x16). The server name is "
    "in the ClientHello's server_name extension (tshark: tls.handshake.extensions_server_name).",
    needs="runs",
)
def test_https(answer: Shared[Answer], capture: Capture, evidence: EvidenceRecorder) -> None:
    ans = answer.get()
    tls = https_clients(capture.truth)
    for want in capture.truth["https"]:
        got = [
            h
            for h in ans.data["https"]
            if (h.get("client"), h.get("server")) == (want["client"], want["server"])
        ]
        if not got:
            raise fail(
                f"Your report has no HTTPS entry for the connection {want['client']} -> {want['server']}.",
                expected=show(want),
            )
        if got[0].get("sni") != want["sni"]:
            raise fail(
                f"For the HTTPS connection to {want['server']}: sni {dumps(got[0].get('sni'))}, "
                f"expected {dumps(want['sni'])} (from the ClientHello)."
            )
        claimed = {
            k: v
            for k, v in got[0].items()
            if k not in ("client", "server", "sni") and v not in (None, {}, [], "")
        }
        if claimed:
            evidence.text("Your HTTPS entry", show(got[0]))
            raise fail(
                f"For the HTTPS connection to {want['sni']} your report claims {dumps(claimed)[:300]}: an "
                "eavesdropper cannot see that, it is encrypted.",
                hint="Report only what travels in clear: addresses and the SNI.",
            )
    inside = [r for r in ans.data["requests"] if (r.get("client"), r.get("server")) in tls]
    if inside:
        raise fail(
            f"Your report lists HTTP request(s) on an HTTPS connection: {dumps(inside[0])[:300]}. "
            "Their bytes are TLS records, not HTTP.",
        )
    text = dumps(ans.data)
    leaked = [s for s in capture.secrets if s in text]
    if leaked:
        raise fail(f"Your report contains {leaked[0]!r}, which only ever travelled inside TLS.")
