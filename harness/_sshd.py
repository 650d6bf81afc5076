"""A real OpenSSH server for a grading session, and what it saw.

The ``ssh-tunnel`` exercise grades a student's ``ssh -L`` client against Debian's sshd. The
grader runs sshd itself, never as root. In a root session it runs as an unprivileged uid of
the session's own (so killing the student's uid never takes the server, and nothing the
student runs can read its host key); in an ordinary user's self-check, as that user inside the
bubblewrap sandbox (in a user namespace it would otherwise believe itself root). It has
per-run host keys, one authorised key (the student's, made per run) that may do nothing but
forward to the ports the grader names, and its log on stderr.

Both ends need password-file entries for their uids: :mod:`._accounts` gives them. Keys and
the host certificate come from :mod:`._sshkeys`.

A non-root sshd needs no privilege-separation directory and can log in only its own user: the
account it runs as is the login name of the handout. It cannot read /etc/shadow, so a password
can never succeed; a password *attempt* still shows in its log, which is what the grader reads.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._accounts import Account, really_root
from ._errors import HarnessError
from ._isolation import in_private_mounts
from ._proc import PR_SET_PDEATHSIG, kill_user, reap_orphans, register_harness_pid, unregister_harness_pid
from ._process import CappedOutput
from ._sandbox import Sandbox
from ._sshkeys import SSHKeyPair
from ._user import outside_ids

LOG_BYTES = 256 << 10  # sshd's log grows with what the student's client does: capped


def sshd_path() -> str | None:
    return shutil.which("sshd") or next(
        (p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.access(p, os.X_OK)), None
    )


def sshd_unavailable(sandbox: Sandbox | None) -> str:
    """Why this session cannot run sshd for a student ("" if it can).

    As root, sshd runs as a uid of the session's own. As an ordinary user (root of a user
    namespace, where no other uid exists) it runs in the bubblewrap sandbox as that user, which
    makes it an unprivileged sshd too: without the sandbox it would believe itself root."""
    if sshd_path() is None or shutil.which("ssh", path="/usr/bin:/bin:/usr/local/bin") is None:
        return "OpenSSH is not installed (Debian: apt-get install openssh-server openssh-client)"
    if not in_private_mounts():
        return (
            "the ssh part needs the session's private namespaces (root, or user namespaces for an "
            "ordinary user), and this session has none"
        )
    if not really_root() and (outside_ids() is None or sandbox is None):
        return (
            "as an ordinary user the ssh part runs sshd in the bubblewrap sandbox, which is not "
            "available here (Debian: apt-get install bubblewrap, and allow user namespaces)"
        )
    return ""


# --- the server ----------------------------------------------------------------------------

CONFIG = """\
# wiregrade's sshd for one grading run: key logins only for {user}, forwarding to {permit} only
Port {port}
ListenAddress 127.0.0.1
HostKey {folder}/host_key
{certificate}PidFile none
AuthorizedKeysFile {folder}/authorized_keys
AllowUsers {user}
PubkeyAuthentication yes
# offered so that a client that tries a password shows in the log: it can never succeed (this
# server runs unprivileged and cannot read /etc/shadow; the account has no password anyway)
PasswordAuthentication yes
PermitEmptyPasswords no
KbdInteractiveAuthentication no
HostbasedAuthentication no
UsePAM no
PermitRootLogin no
AllowTcpForwarding local
PermitOpen {permit}
AllowStreamLocalForwarding no
GatewayPorts no
PermitTunnel no
X11Forwarding no
AllowAgentForwarding no
PermitTTY no
PermitUserRC no
ForceCommand /bin/false
MaxAuthTries 6
LoginGraceTime 20
# DEBUG1: the forwards a client asks for, and those PermitOpen refuses, are logged at this level
LogLevel DEBUG1
"""


@dataclass
class SSHLog:
    """What sshd logged about logins and forwards (LogLevel DEBUG1)."""

    text: str

    def lines(self, pattern: str) -> list[str]:
        return [ln for ln in self.text.splitlines() if re.search(pattern, ln)]

    @property
    def accepted(self) -> list[str]:
        """``Accepted <method> for <user> ...``: the logins that succeeded."""
        return self.lines(r"^Accepted \S+ for ")

    def accepted_key(self, fingerprint: str) -> bool:
        return any(ln.startswith("Accepted publickey") and fingerprint in ln for ln in self.accepted)

    @property
    def password_attempts(self) -> list[str]:
        """Password and keyboard-interactive (password prompt) attempts, failed or not."""
        return self.lines(r"^(Failed|Accepted) (password|keyboard-interactive\S*) for ")

    @property
    def refused_forwards(self) -> list[str]:
        """The targets (``host port N``) of forwards sshd refused to open (PermitOpen)."""
        return [
            m.group(1)
            for ln in self.text.splitlines()
            if (m := re.search(r"to connect to host (\S+ port \d+), but the request was denied", ln))
        ]

    @property
    def forwards(self) -> list[tuple[str, int]]:
        """The targets (host, port) of the forwards clients asked sshd to open (direct-tcpip)."""
        return [
            (m.group(1), int(m.group(2)))
            for ln in self.text.splitlines()
            if (m := re.search(r"server_request_direct_tcpip: originator .*, target (\S+) port (\d+)$", ln))
        ]

    @property
    def connections(self) -> list[str]:
        return self.lines(r"^Connection from ")


@dataclass
class SSHServer:
    """One run of sshd (``with`` it: started on enter, stopped and its log kept on exit)."""

    folder: Path
    account: Account
    port: int
    host_key: SSHKeyPair
    authorized: str  # the one public key allowed in (a line of authorized_keys)
    permit_open: Sequence[str]  # host:port targets it will forward to
    host_cert: str = ""  # a certificate for host_key ("" presents the bare key)
    ready_seconds: float = 10
    sandbox: Sandbox | None = None  # run in it (as an ordinary user: the account is that user)
    log: CappedOutput = field(init=False)

    def __post_init__(self) -> None:
        self.log = CappedOutput(LOG_BYTES)
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> SSHServer:
        exe = sshd_path()
        if exe is None:
            raise HarnessError("sshd is not installed (Debian: apt-get install openssh-server)")
        self._write_files()
        uid, gid = self.account.uid, self.account.gid
        root = really_root()
        argv = [exe, "-D", "-e", "-f", str(self.folder / "sshd_config")]
        if self.sandbox is not None and not root:
            argv = self.sandbox.argv(argv, self.folder, writable=[Path(self.account.home)])

        def drop() -> None:
            if root:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
            import ctypes

            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

        try:
            self._popen = subprocess.Popen(
                argv,
                cwd=self.folder,
                env={"PATH": "/usr/sbin:/usr/bin:/bin", "LANG": "C.UTF-8"},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=drop,
            )
        except OSError as exc:
            raise HarnessError(f"could not start sshd: {exc}") from exc
        register_harness_pid(self._popen.pid)
        threading.Thread(target=self._drain, daemon=True).start()
        ready = self.log.wait_for(re.compile(r"Server listening on"), time.monotonic() + self.ready_seconds)
        if ready is None:
            self.close()
            raise HarnessError(f"sshd did not start: {self.log.text().strip()[-600:] or 'it said nothing'}")
        return self

    def _write_files(self) -> None:
        # sshd's StrictModes checks every folder from authorized_keys up to the account's home
        # (and on to / if the home is not on the way: /tmp would fail it): keep it under the home
        home = Path(self.account.home)
        if home not in self.folder.parents and home != self.folder:
            raise HarnessError(f"sshd's folder {self.folder} must be inside its account's home {home}")
        home.mkdir(mode=0o700, exist_ok=True)
        self.folder.mkdir(mode=0o700, exist_ok=True)
        cert = f"HostCertificate {self.folder}/host_key-cert.pub\n" if self.host_cert else ""
        files = {
            "host_key": self.host_key.private,
            "host_key.pub": self.host_key.public.encode() + b"\n",
            "authorized_keys": self.authorized.encode() + b"\n",
            "sshd_config": CONFIG.format(
                port=self.port,
                folder=self.folder,
                certificate=cert,
                user=self.account.name,
                permit=" ".join(self.permit_open),
            ).encode(),
        }
        if self.host_cert:
            files["host_key-cert.pub"] = self.host_cert.encode() + b"\n"
        for name, data in files.items():
            path = self.folder / name
            path.unlink(missing_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        if really_root():  # sshd refuses host keys and authorized_keys owned by someone else
            for p in [home, self.folder, *self.folder.iterdir()]:
                os.chown(p, self.account.uid, self.account.gid, follow_symlinks=False)

    def _drain(self) -> None:
        assert self._popen is not None and self._popen.stderr is not None
        fd = self._popen.stderr.fileno()
        try:
            while chunk := os.read(fd, 1 << 16):
                self.log.feed(chunk)
        except OSError:
            pass
        finally:
            self.log.close()

    def seen(self) -> SSHLog:
        return SSHLog(self.log.text())

    def close(self) -> None:
        """Stop sshd and every connection process it forked (they call setsid(), so they leave
        its process group: the session's server uid is what they all share)."""
        if self._popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, signal.SIGTERM)  # its listener logs nothing more
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(2)
        if really_root() and self.account.uid != os.getuid():
            kill_user(self.account.uid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(5)
        unregister_harness_pid(self._popen.pid)
        reap_orphans()  # connection processes re-parented to us when sshd went
        self._popen = None

    def __enter__(self) -> SSHServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
