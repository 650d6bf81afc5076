"""Shared by the public and hidden checks of `certificate`: helpers and fixtures (no check lives here)."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

import harness
from harness import GradingContext, Shared, fail

MADE = ("server.crt", "server.key", "server.pem")
PEM_KEY = re.compile(rb"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----.*?-----END \1-----", re.S)
FIELDS = {
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
}
STRICT_FIX = """\
[ req ]
x509_extensions = v3_server        # in the [ req ] section you have

[ v3_server ]
basicConstraints = critical, CA:FALSE
subjectAltName = DNS:{host}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid"""


@dataclass
class Made:
    """What the script made, and what the student handed in."""

    folder: Path  # the grader's own copies of what the script made (read without following links)
    run: harness.StudentProcess
    handed_in_keys: list[str]
    modes: dict[str, int]  # the permissions the script gave each file

    def path(self, name: str) -> Path:
        return self.folder / name


def handed_in_keys(grading: GradingContext) -> list[str]:
    found = []
    for name in harness.regular_files(grading.submission):
        try:
            if PEM_KEY.search(grading.read_made(name, limit=16 << 20) or b""):
                found.append(name)
        except (OSError, harness.CheckFailed):
            continue
    return found


@pytest.fixture(scope="session")
def made(grading: GradingContext) -> Shared[Made]:
    def run() -> Made:
        keys = handed_in_keys(grading)
        for name in MADE:
            (grading.submission / name).unlink(missing_ok=True)
        script = grading.assignment.settings["program"]["script"]
        with grading.launcher() as launcher:
            proc = launcher.run(script, timeout=grading.assignment.check_seconds - 5)
        code = proc.returncode
        copies = {n: grading.copy_made(n) for n in MADE}
        missing = [n for n, copy in copies.items() if copy is None]
        if code != 0 or missing:
            what = f"{script} exited with code {code}" if code else f"{script} ran"
            gone = f" and did not make {', '.join(missing)}" if missing else ""
            raise fail(
                f"{what}{gone}.\n{proc.output_tail()}",
                expected=f"{script} makes {', '.join(MADE)} and exits with code 0",
                hint=f"Run `bash {script}` in an empty copy of your folder and read openssl's message.",
            )
        modes = {n: st.st_mode & 0o777 for n in MADE if (st := grading.stat_made(n)) is not None}
        return Made(grading.workdir / "made", proc, keys, modes)

    return Shared(run, owner="The script makes server.crt, server.key and server.pem")


def certificate(m: Made) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(m.path("server.crt").read_bytes())
    except ValueError as exc:
        raise fail(f"server.crt is not a PEM certificate: {exc}") from None


def private_key(data: bytes, where: str) -> rsa.RSAPrivateKey | object:
    block = PEM_KEY.search(data)
    if block is None:
        raise fail(f"{where} holds no PEM private key.", expected="-----BEGIN PRIVATE KEY----- ...")
    try:
        return serialization.load_pem_private_key(block.group(0), password=None)
    except TypeError:
        raise fail(
            f"The private key in {where} is encrypted with a passphrase: a server would stop and "
            "ask for it at every start.",
            hint="Add -nodes (no DES) to the openssl command.",
        ) from None
    except ValueError as exc:
        raise fail(f"The private key in {where} cannot be read: {exc}") from None


def spki(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def tls_contexts(m: Made, strict: bool) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server using the files, and a client trusting server.crt (no dates, no name)."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)

    def no_passphrase() -> str:
        raise ValueError("the key is encrypted")  # never let OpenSSL prompt on a terminal

    try:
        server.load_cert_chain(m.path("server.crt"), m.path("server.key"), password=no_passphrase)
    except (ssl.SSLError, ValueError) as exc:
        raise fail(f"A Python TLS server cannot load server.crt with server.key: {exc}") from None
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.load_verify_locations(cadata=m.path("server.crt").read_text())
    client.verify_flags |= harness.VERIFY_NO_CHECK_TIME
    if strict:
        client.verify_flags |= ssl.VERIFY_X509_STRICT
    return server, client
