"""Checks for `certificate`: what the student's openssl script makes, read with cryptography.

The script runs once, in a copy of the submission from which any server.crt/key/pem were
removed: what is graded is what the script makes. Each property is its own check, and the
TLS checks ignore the dates and the host name, so an expired certificate or a wrong name
costs exactly the check about it."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from support import (
    FIELDS,
    STRICT_FIX,
    Made,
    certificate,
    private_key,
    spki,
    tls_contexts,
)

import harness
from harness import GradingContext, Shared, check, fail

# --- public checks ------------------------------------------------------------------------


@check(
    title="The script makes server.crt, server.key and server.pem",
    points=2,
    expected="`bash make_cert.sh` exits 0 and leaves the three files.",
)
def test_script_runs(made: Shared[Made]) -> None:
    made.get(owner=True)


@check(
    title="server.crt is a self-signed certificate",
    points=2,
    expected="server.crt parses, its issuer is its subject, and its signature verifies with its own key.",
    hint="`openssl req -x509` makes a self-signed certificate; without -x509 it makes a request.",
    needs="script-runs",
)
def test_self_signed(made: Shared[Made], evidence: harness.EvidenceRecorder) -> None:
    cert = certificate(made.get())
    evidence.text(
        "server.crt", f"subject {cert.subject.rfc4514_string()}\nissuer {cert.issuer.rfc4514_string()}"
    )
    if cert.issuer != cert.subject:
        raise fail(f"Its issuer ({cert.issuer.rfc4514_string()}) is not its subject.")
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise fail(
            f"Its signature does not verify with its own public key ({exc or type(exc).__name__})."
        ) from None


@check(
    title="server.key is the certificate's private key",
    points=1,
    expected="server.key is an unencrypted private key whose public half is in server.crt.",
    needs="script-runs",
)
def test_key_matches(made: Shared[Made]) -> None:
    m = made.get()
    key = private_key(m.path("server.key").read_bytes(), "server.key")
    if spki(key.public_key()) != spki(certificate(m).public_key()):  # type: ignore[attr-defined]
        raise fail("server.key does not belong to server.crt: they were made separately.")


@check(
    title="server.pem holds the certificate and its key",
    points=2,
    expected="server.pem = server.crt followed by server.key (both, in one file).",
    hint="cat server.crt server.key > server.pem",
    needs="script-runs",
)
def test_pem_bundle(made: Shared[Made]) -> None:
    m = made.get()
    data = m.path("server.pem").read_bytes()
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise fail("server.pem holds no certificate.")
    if certs[0] != certificate(m):
        raise fail("The certificate in server.pem is not the one in server.crt.")
    key = private_key(data, "server.pem")
    if spki(key.public_key()) != spki(certs[0].public_key()):  # type: ignore[attr-defined]
        raise fail("The private key in server.pem does not belong to its certificate.")


@check(
    title="The subject names the organisation as the handout asks",
    points=2,
    expected="C, ST, L, O and OU as in the handout.",
    hint="Set them in the [ req_distinguished_name ] section of server.cnf.",
    needs="script-runs",
)
def test_subject(made: Shared[Made], grading: GradingContext, evidence: harness.EvidenceRecorder) -> None:
    cert = certificate(made.get())
    want = grading.assignment.settings["certificate"]["subject"]
    wrong = []
    for field, oid in FIELDS.items():
        got = [a.value for a in cert.subject.get_attributes_for_oid(oid)]
        if [str(g).casefold() for g in got] != [want[field].casefold()]:
            wrong.append(f"{field}: expected {want[field]!r}, found {', '.join(map(repr, got)) or 'nothing'}")
    evidence.text("Subject", cert.subject.rfc4514_string())
    if wrong:
        raise fail("Some subject fields are not as asked:\n" + "\n".join(wrong))


@check(
    title="commonName and subjectAltName name the host",
    points=2,
    expected="CN = the handout's host, and a subjectAltName DNS entry for it.",
    hint="Modern clients ignore the CN and look only at subjectAltName: add an x509_extensions "
    "section with subjectAltName = DNS:<host>.",
    needs="script-runs",
)
def test_host_names(made: Shared[Made], grading: GradingContext) -> None:
    cert = certificate(made.get())
    host = grading.assignment.host
    cn = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns = None
    problems = []
    if cn != [host]:
        problems.append(f"the commonName is {', '.join(map(repr, cn)) or 'missing'}, not {host!r}")
    if dns is None:
        version = (
            "a version 1 certificate, which has no extensions" if cert.version == x509.Version.v1 else ""
        )
        problems.append("there is no subjectAltName extension" + (f" ({version})" if version else ""))
    elif host not in dns:
        problems.append(f"the subjectAltName names {', '.join(dns) or 'no DNS name'}, not {host!r}")
    if problems:
        text = "; ".join(problems)
        raise fail(f"{text[0].upper()}{text[1:]}.")


@check(
    title="An RSA key of the size asked",
    points=2,
    expected="An RSA key of at least 4096 bits.",
    hint="-newkey rsa:4096",
    needs="script-runs",
)
def test_key_size(made: Shared[Made], grading: GradingContext) -> None:
    want = int(grading.assignment.settings["certificate"]["key_bits"])
    key = certificate(made.get()).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise fail(f"The key is a {type(key).__name__.replace('PublicKey', '')} key, not RSA.")
    if key.key_size < want:
        raise fail(f"The RSA key has {key.key_size} bits.", expected=f"at least {want} bits")


@check(
    title="Valid now, for the period asked",
    points=2,
    expected="Valid for 1095 days (a day's slack), starting no later than now.",
    hint="-days 1095",
    needs="script-runs",
)
def test_validity(made: Shared[Made], grading: GradingContext, evidence: harness.EvidenceRecorder) -> None:
    cert = certificate(made.get())
    days = int(grading.assignment.settings["certificate"]["days"])
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    now = dt.datetime.now(dt.timezone.utc)
    length = (end - start).total_seconds() / 86400
    evidence.text("Validity", f"from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC ({length:.1f} days)")
    if end < now:
        raise fail(f"It expired on {end:%Y-%m-%d %H:%M} UTC: every client refuses it.")
    if start > now + dt.timedelta(minutes=5):
        raise fail(f"It is not valid until {start:%Y-%m-%d %H:%M} UTC.")
    if abs(length - days) > 1:
        raise fail(f"It is valid for {length:.1f} days.", expected=f"{days} days")


@check(
    title="A TLS server can use it",
    points=3,
    expected="A Python TLS server loads server.crt and server.key; a client trusting server.crt "
    "completes a handshake with it.",
    needs="script-runs",
)
def test_tls_works(made: Shared[Made]) -> None:
    server, client = tls_contexts(made.get(), strict=False)
    version, error = harness.memory_handshake(server, client, None)
    if error:
        raise fail(f"The handshake failed: {error}.")


@check(
    title="It passes strict X.509 verification (Python 3.13's default)",
    points=3,
    expected="The handshake also succeeds with ssl.VERIFY_X509_STRICT.",
    needs=("script-runs", "tls-works"),
)
def test_strict_verification(made: Shared[Made], grading: GradingContext) -> None:
    m = made.get()
    server, client = tls_contexts(m, strict=False)
    if harness.memory_handshake(server, client, None)[1]:
        raise harness.Blocked("It does not work in a TLS handshake at all (see 'A TLS server can use it').")
    server, client = tls_contexts(m, strict=True)
    _version, error = harness.memory_handshake(server, client, None)
    if not error:
        return
    cert = certificate(m)
    cause = (
        "Your certificate is X.509 version 1: `openssl req -x509` makes one when the config file "
        "names no x509_extensions section, as the lecture's server.cnf does. A v1 certificate has "
        "no extensions at all (no basicConstraints, no subjectAltName), and strict verification, "
        "which Python 3.13 turns on by default, refuses it."
        if cert.version == x509.Version.v1
        else "Strict verification refuses one of its extensions."
    )
    raise fail(
        f"Under strict verification the handshake fails: {error}.\n{cause}",
        hint="Add an extensions section to server.cnf and make the certificate again:\n"
        + STRICT_FIX.format(host=grading.assignment.host),
    )


@check(
    title="Hands in no private key",
    points=1,
    expected="The key is made by your script, never handed in (keys do not belong in a repository).",
    hint="Delete server.key and server.pem from your folder (and from git: `git rm --cached`).",
    needs="script-runs",
)
def test_no_key_handed_in(made: Shared[Made]) -> None:
    m = made.get()
    if m.handed_in_keys:
        raise fail(f"Your submission contains a private key: {', '.join(m.handed_in_keys)}.")
