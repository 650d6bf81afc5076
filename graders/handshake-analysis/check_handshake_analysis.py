"""Checks for `handshake-analysis`: reading TLS handshakes in a capture the grader made.

The capture is the student's own: TLS 1.2 and 1.3 connections between the grader's endpoints,
with cipher suites, names, certificates and endings chosen from their seed, and the key log of
those endpoints. The truth is what the endpoints did (their OpenSSL's own message log), not a
re-dissection. Each check reads one field of each connection."""

from __future__ import annotations

from typing import Any

from support import Answer, Capture, compare, tls12, tls13

from harness import CheckFailed, EvidenceRecorder, Shared, check, fail, show


@check(
    title="Reads the capture and the key log, and prints the report as JSON",  # = support.RUNS
    points=2,
    expected='`python3 analyze.py capture.pcap capture.keys` exits 0 and prints {"connections": [...]}.',
    hint="Try it on the handout's practice capture and compare with practice-answer-keylog.json.",
)
def test_runs(keyed: Shared[Answer]) -> None:
    keyed.get(owner=True)


@check(
    title="Lists every TLS connection",
    points=1,
    expected="One entry per TLS connection, with its client and server address (IP:port).",
    needs="runs",
)
def test_connections(keyed: Shared[Answer], capture: Capture, evidence: EvidenceRecorder) -> None:
    want = sorted((c["client"], c["server"]) for c in capture.keyed)
    got = sorted(keyed.get())
    if got != want:
        evidence.side_by_side("Connections", ("Expected", show(want)), ("Your report", show(got)))
        raise fail(
            f"Your report lists {len(got)} connection(s); the capture holds {len(want)} TLS connections."
        )


@check(
    title="The TLS version each connection negotiated",
    points=3,
    expected='"TLS 1.2" or "TLS 1.3": what the ServerHello chose.',
    hint="Not the record version (a ClientHello's record says 0x0301 for compatibility), nor the "
    "ClientHello's legacy_version: in TLS 1.3 the ServerHello's supported_versions extension says it.",
    needs="runs",
)
def test_version(keyed: Shared[Answer], capture: Capture, evidence: EvidenceRecorder) -> None:
    compare(keyed.get(), capture, ("version",), evidence)


@check(
    title="The cipher suite, by its IANA name",
    points=2,
    expected="The suite the ServerHello chose, named as IANA does (TLS_ECDHE_..._WITH_..., TLS_AES_...).",
    hint="tshark's field tls.handshake.ciphersuite is the number; a custom column gives its name: "
    '-o \'gui.column.format:"suite","%Cus:tls.handshake.ciphersuite"\' -e _ws.col.suite.',
    needs="runs",
)
def test_cipher(keyed: Shared[Answer], capture: Capture, evidence: EvidenceRecorder) -> None:
    compare(keyed.get(), capture, ("cipher_suite",), evidence)


@check(
    title="The server name (SNI) from the ClientHello",
    points=2,
    expected="The ClientHello's server_name, or null when the client sent none.",
    needs="runs",
)
def test_sni(keyed: Shared[Answer], capture: Capture, evidence: EvidenceRecorder) -> None:
    compare(keyed.get(), capture, ("sni",), evidence)


@check(
    title="The handshake messages each side sent, in order (with the key log)",
    points=3,
    expected="client_handshake and server_handshake: every handshake message, decrypted ones included.",
    hint="One TCP segment (and one record) can carry several handshake messages: list them all.",
    needs="runs",
)
def test_handshake(keyed: Shared[Answer], capture: Capture, evidence: EvidenceRecorder) -> None:
    compare(keyed.get(), capture, ("client_handshake", "server_handshake"), evidence)


@check(
    title="The server certificate in TLS 1.2: subject, issuer, expiry",
    points=2,
    expected="subject_cn, issuer_cn and not_after (UTC, 2027-01-31T12:00:00Z) of the server's certificate.",
    hint="tls.handshake.certificate is the DER: cryptography.x509.load_der_x509_certificate reads it.",
    needs="runs",
)
def test_certificate_tls12(keyed: Shared[Answer], capture: Capture, evidence: EvidenceRecorder) -> None:
    compare(keyed.get(), capture, ("certificate",), evidence, tls12)


@check(
    title="The server certificate in TLS 1.3, decrypted with the key log",
    points=2,
    expected="In TLS 1.3 the certificate is encrypted; with the key log tshark decrypts it: report it.",
    hint="Pass the key log to tshark (-o tls.keylog_file:PATH); the Certificate message then appears.",
    needs="runs",
)
def test_certificate_tls13(keyed: Shared[Answer], capture: Capture, evidence: EvidenceRecorder) -> None:
    compare(keyed.get(), capture, ("certificate",), evidence, tls13)


@check(
    title="Which side sent close_notify",
    points=2,
    expected='close_notify: {"client": true|false, "server": true|false} (with the key log).',
    hint="A close_notify is an alert of level 1, description 0. Not every connection ends with one: "
    "a side that just closes the socket sends none.",
    needs="runs",
)
def test_close_notify(keyed: Shared[Answer], capture: Capture, evidence: EvidenceRecorder) -> None:
    compare(keyed.get(), capture, ("close_notify",), evidence)


@check(
    title="Application data bytes each way",
    points=2,
    expected='application_data: {"client": N, "server": M}, the decrypted bytes each side sent.',
    hint="Count the decrypted application data (tshark: data.len), not the records' lengths: those "
    "include the authentication tag and more.",
    needs="runs",
)
def test_app_data(keyed: Shared[Answer], capture: Capture, evidence: EvidenceRecorder) -> None:
    compare(keyed.get(), capture, ("application_data",), evidence)


# In clear, so the same with the key log and without it: the hellos' fields and (the encrypted
# messages left out) the handshake lists.
IN_CLEAR = ("version", "cipher_suite", "sni", "resumed", "client_handshake", "server_handshake")


@check(
    title="Without the key log: only what travels in clear",
    points=2,
    expected="Without a key log: version, cipher suite, SNI and resumed as with it (they travel in "
    "clear); the handshake messages sent in clear only (TLS 1.3: ClientHello and ServerHello; TLS 1.2: "
    "no Finished, it is encrypted); no certificate in TLS 1.3; null for close_notify and "
    "application_data.",
    hint="An eavesdropper has no keys: report what it can see, and null where it would be guessing. "
    "An encrypted handshake message has no type an eavesdropper can read.",
    needs="runs",
)
def test_without_keys(
    clear: Shared[Answer], keyed: Shared[Answer], capture: Capture, evidence: EvidenceRecorder
) -> None:
    ans = clear.get()
    try:
        with_keys = keyed.get()
    except CheckFailed:  # a timeout too: that run's own check tells why
        with_keys = {}
    truth = {(c["client"], c["server"]): c for c in capture.keyed}

    def wrong_with_keys(want: dict[str, Any], k: str) -> bool:
        """A field in clear that the program gets wrong with the key log too is the failure of
        that field's own check, not of this one (one mistake, one penalty)."""
        where = (want["client"], want["server"])
        got = with_keys.get(where)
        return k in IN_CLEAR and got is not None and got.get(k) != truth[where][k]

    compare(
        ans,
        capture,
        (*IN_CLEAR, "certificate", "close_notify", "application_data"),
        evidence,
        with_keys=False,
        skip=wrong_with_keys,
    )
