"""The grader's own TLS client, and the misbehaving clients used to test robustness.

Every grader connection writes its secrets to the session's key log (SSLKEYLOGFILE format)
so tshark can decrypt TLS 1.3 and show the certificate, the data and the alerts.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ._timing import timed


@dataclass(frozen=True)
class TLSSession:
    """What the grader's client saw of one connection."""

    client_port: int = 0
    connected: bool = False
    connect_error: str = ""
    handshake_ok: bool = False
    handshake_error: str = ""
    version: str = ""  # "TLSv1.3"
    cipher: str = ""
    peer_cert_der: bytes = b""
    data: bytes = b""
    # how the server ended it: "close_notify", "eof" (TCP FIN without close_notify),
    # "reset", "timeout" (still open when we gave up), or "" if the handshake failed
    ending: str = ""
    ending_detail: str = ""

    @property
    def peer_cert(self) -> x509.Certificate | None:
        return x509.load_der_x509_certificate(self.peer_cert_der) if self.peer_cert_der else None


def client_context(
    *,
    trust_pem: str | None = None,
    hostname_check: bool = False,
    keylog: Path | None = None,
    legacy_only: bool = False,
) -> ssl.SSLContext:
    """A client context.

    Without ``trust_pem`` it verifies nothing: checks that are not about certificates must
    not fail because of one (one mistake, one penalty). With it, the given certificate is a
    trust anchor (PARTIAL_CHAIN: trusting exactly that certificate is enough) and strict
    X.509 checking is off: strictness is the certificate exercise's business.
    ``legacy_only`` offers TLS 1.0 and 1.1 and nothing newer.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if trust_pem is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cadata=trust_pem)
        ctx.check_hostname = hostname_check
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        ctx.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
    if legacy_only:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        # OpenSSL 3 refuses TLS < 1.2 below security level 0 (SHA-1 signatures).
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if keylog is not None:
        ctx.keylog_filename = str(keylog)
    return ctx


def der_to_pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()


def tls_session(
    address: tuple[str, int],
    context: ssl.SSLContext,
    *,
    server_hostname: str | None,
    timeout: float = 5.0,
    max_bytes: int = 1 << 20,
) -> TLSSession:
    """Connect, handshake, read until the server ends the session, and say how it ended.

    ``suppress_ragged_eofs=False`` tells a close_notify (recv returns b"") from a bare TCP
    close (SSLEOFError). When the server sends close_notify we answer with ours, as a
    polite client does, so a server that waits for it (``unwrap()``) finishes cleanly.
    """
    with timed("grader TLS sessions"):
        return _tls_session(address, context, server_hostname, timeout, max_bytes)


def _tls_session(
    address: tuple[str, int],
    context: ssl.SSLContext,
    server_hostname: str | None,
    timeout: float,
    max_bytes: int,
) -> TLSSession:
    deadline = time.monotonic() + timeout
    try:
        raw = socket.create_connection(address, timeout=timeout)
    except OSError as exc:
        return TLSSession(connect_error=_describe(exc))
    port = raw.getsockname()[1]
    fields: dict[str, object] = {"client_port": port, "connected": True}
    try:
        try:
            tls = context.wrap_socket(raw, server_hostname=server_hostname, suppress_ragged_eofs=False)
        except (ssl.SSLError, OSError) as exc:
            return TLSSession(handshake_error=_describe(exc), **fields)  # type: ignore[arg-type]
        fields.update(
            handshake_ok=True,
            version=tls.version() or "",
            cipher=(tls.cipher() or ("",))[0],
            peer_cert_der=tls.getpeercert(binary_form=True) or b"",
        )
        data = bytearray()
        ending, detail = "", ""
        try:
            while len(data) < max_bytes:
                tls.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = tls.recv(1 << 16)
                if not chunk:
                    ending = "close_notify"
                    with contextlib.suppress(OSError, ssl.SSLError, ValueError):
                        tls.settimeout(1.0)
                        tls.unwrap()
                    break
                data += chunk
            else:
                ending, detail = "timeout", f"stopped reading after {max_bytes} bytes"
        except ssl.SSLEOFError as exc:
            ending, detail = "eof", _describe(exc)
        except TimeoutError:
            ending, detail = "timeout", f"the connection was still open after {timeout:g} s"
        except ConnectionResetError as exc:
            ending, detail = "reset", _describe(exc)
        except (ssl.SSLError, OSError) as exc:
            ending, detail = "reset", _describe(exc)
        fields.update(data=bytes(data), ending=ending, ending_detail=detail)
        return TLSSession(**fields)  # type: ignore[arg-type]
    finally:
        raw.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"{exc.reason} ({exc.library or 'SSL'})".replace("_", " ").lower()
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listening)"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the server"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    return str(exc) or type(exc).__name__


# --- misbehaving clients ------------------------------------------------------------------


def plain_exchange(address: tuple[str, int], payload: bytes, timeout: float = 3.0) -> tuple[int, bytes]:
    """Send ``payload`` in clear, read whatever comes back until close or timeout."""
    with socket.create_connection(address, timeout=timeout) as s:
        port = s.getsockname()[1]
        with contextlib.suppress(OSError):
            s.sendall(payload)
        reply = bytearray()
        deadline = time.monotonic() + timeout
        with contextlib.suppress(OSError):
            while len(reply) < 65536 and (left := deadline - time.monotonic()) > 0:
                s.settimeout(left)
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
        return port, bytes(reply)


def client_hello(server_hostname: str | None) -> bytes:
    """The bytes of a real ClientHello, made with a memory BIO (nothing is sent)."""
    ctx = client_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def drop_mid_handshake(address: tuple[str, int], server_hostname: str | None) -> int:
    """Send half a ClientHello, then hang up. Returns the client port."""
    hello = client_hello(server_hostname)
    with socket.create_connection(address, timeout=3) as s:
        port = s.getsockname()[1]
        with contextlib.suppress(OSError):
            s.sendall(hello[: len(hello) // 2])
        return port


@functools.lru_cache(maxsize=1)
def legacy_tls_unavailable() -> str | None:
    """Why the grader's legacy client cannot speak TLS 1.0/1.1 here, or None if it can.

    "Refuses TLS 1.0" is a pass only if our client really offered it: on an OpenSSL built
    without TLS 1.0 every server would "refuse" it. Proved in memory, no sockets.
    """
    import trustme

    ca = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("legacy.test").configure_cert(server_ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server_ctx.minimum_version = ssl.TLSVersion.TLSv1
    server_ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    version, error = memory_handshake(server_ctx, client_context(legacy_only=True), "legacy.test")
    if error:
        return error
    if version not in ("TLSv1", "TLSv1.1"):
        return f"a TLS 1.0/1.1-only handshake with ourselves gave {version or 'nothing'}"
    return None


# OpenSSL's X509_V_FLAG_NO_CHECK_TIME: verify everything but the dates (Python has no name for it).
VERIFY_NO_CHECK_TIME = 0x200000


def memory_handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str | None
) -> tuple[str, str]:
    """A complete TLS handshake between two contexts in memory: (version, "") or ("", error).

    For checks about certificates and protocol support that need no student process.
    """
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    try:
        for _ in range(10):
            for obj in (client, server):
                with contextlib.suppress(ssl.SSLWantReadError):
                    obj.do_handshake()
            s_in.write(c_out.read())
            c_in.write(s_out.read())
            if client.version() and server.version():
                return client.version() or "", ""
    except ssl.SSLError as exc:
        return "", _describe(exc)
    return "", "the handshake did not complete"


@dataclass(frozen=True)
class HTTPReply:
    client_port: int
    status: int
    headers: dict[str, str]
    body: bytes


def http_get(
    address: tuple[str, int], host: str, path: str, context: ssl.SSLContext | None, timeout: float = 5.0
) -> HTTPReply:
    """One HTTP/1.1 GET to ``address``, over TLS if ``context`` is given (SNI and Host: ``host``).

    Raises OSError / ssl.SSLError when there is no answer.
    """
    import http.client

    raw = socket.create_connection(address, timeout=timeout)
    port = raw.getsockname()[1]
    sock: socket.socket = context.wrap_socket(raw, server_hostname=host) if context else raw
    with sock:
        request = f"GET {path} HTTP/1.1\r\nHost: {host}:{address[1]}\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        body = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        return HTTPReply(port, resp.status, headers, body)
