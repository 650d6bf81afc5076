"""OpenSSH keys for a grading run, made in memory: key pairs and host certificates.

The ``ssh-tunnel`` grader makes a fresh ed25519 key pair for the student and a fresh host key
for each sshd it starts, and certifies the real server's host key with the course's host CA
(``ssh-keygen -s CA -h`` without the subprocess), so a student's fixed ``@cert-authority`` line
trusts host keys that change every run.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import (
    SSHCertificateBuilder,
    SSHCertificateType,
    load_ssh_private_key,
)


@dataclass(frozen=True)
class SSHKeyPair:
    """An ed25519 key pair in OpenSSH's formats (``private`` as ssh-keygen writes it)."""

    private: bytes
    public: str  # "ssh-ed25519 AAAA... comment"

    @classmethod
    def generate(cls, comment: str) -> SSHKeyPair:
        key = ed25519.Ed25519PrivateKey.generate()
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        return cls(private, f"{public.decode()} {comment}")

    @property
    def fingerprint(self) -> str:
        """``SHA256:...`` as sshd logs it."""
        import base64
        import hashlib

        blob = base64.b64decode(self.public.split()[1])
        return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def host_certificate(ca_private: bytes, host: SSHKeyPair, names: Sequence[str], hours: float = 2) -> str:
    """A host certificate for ``host``'s key, for ``names``, signed by the CA key (OpenSSH format),
    valid from a few minutes ago: what ``ssh-keygen -s CA -h -n NAMES`` makes."""
    ca = load_ssh_private_key(ca_private, None)
    now = datetime.datetime.now(datetime.timezone.utc).timestamp()
    cert = (
        SSHCertificateBuilder()
        .public_key(serialization.load_ssh_public_key(host.public.encode()))  # type: ignore[arg-type]
        .serial(int.from_bytes(os.urandom(8), "big"))
        .type(SSHCertificateType.HOST)
        .key_id(b"wiregrade per-run host key")
        .valid_principals([n.encode() for n in names])
        .valid_after(int(now - 300))
        .valid_before(int(now + hours * 3600))
        .sign(ca)  # type: ignore[arg-type]
    )
    return cert.public_bytes().decode()
