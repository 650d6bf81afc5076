"""Password-file entries for the uids a grading session runs OpenSSH as.

ssh refuses to run for a uid without an entry ("No user exists for uid ..."), and sshd
authenticates a login name. The session's uids (the student's, sshd's) have none, so
:func:`add_accounts` binds a password file of our own over /etc/passwd in the session's private
mount namespace: the machine's file is not touched, and the student's sandbox, which sees the
session's /etc, sees these entries too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._errors import HarnessError
from ._isolation import _MS_BIND, _mount, in_private_mounts
from ._user import FIRST_UID, PID_LIMIT, StudentUser, outside_ids

SERVER_UID_BASE = FIRST_UID + PID_LIMIT  # above every student uid: one per session, never a real account


def really_root() -> bool:
    """Root of the machine (not of a user namespace an ordinary user made)."""
    return os.geteuid() == 0 and outside_ids() is None


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str
    shell: str = "/bin/false"

    def line(self) -> str:
        return f"{self.name}:x:{self.uid}:{self.gid}:wiregrade:{self.home}:{self.shell}\n"


_ADDED: dict[str, Account] = {}
_MACHINE_PASSWD: list[str] = []  # the machine's own /etc/passwd, read before our first bind


def add_accounts(accounts: Sequence[Account], workdir: Path) -> None:
    """Make ``accounts`` known to this process and its children (and every sandbox it starts).

    Ours come first in the file, so a machine account of the same name is shadowed in this
    session only. Raises HarnessError where it cannot: outside a private mount namespace we
    would have to edit the machine's own /etc/passwd, which a grader never does."""
    if not in_private_mounts():
        raise HarnessError(
            "OpenSSH needs a password-file entry for the session's users, and this session has no "
            "private mount namespace to give them one (it needs root or user namespaces)"
        )
    for a in accounts:
        _ADDED[a.name] = a
    try:
        if not _MACHINE_PASSWD:
            _MACHINE_PASSWD.append(Path("/etc/passwd").read_text())
        path = workdir / f"passwd-{len(_ADDED)}"
        path.write_text("".join(a.line() for a in _ADDED.values()) + _MACHINE_PASSWD[0])
        path.chmod(0o644)
        _mount(str(path), os.path.realpath("/etc/passwd"), _MS_BIND)
    except OSError as exc:
        raise HarnessError(f"could not give the session's users a password-file entry: {exc}") from exc


def server_uid(pid: int) -> int:
    """The uid sshd runs as in the session with this pid: its own, apart from every student's."""
    return SERVER_UID_BASE + pid % PID_LIMIT


def server_account(name: str, home: Path) -> Account:
    """The uid sshd runs as: as root, the session's own (never root, never the student's); as an
    ordinary user, that user (the only uid there is), inside the sandbox."""
    ids = outside_ids()
    if really_root() or ids is None:
        uid = server_uid(os.getpid())
        return Account(name, uid, uid, str(home))
    return Account(name, ids[0], ids[1], str(home))


def student_account(name: str, home: Path, user: StudentUser | None) -> Account | None:
    """The account for the uid student programs have (None: they run as an account that exists)."""
    if user is not None and user.uid >= 0:
        return Account(name, user.uid, user.gid, str(home), "/bin/sh")
    ids = outside_ids()
    if ids is not None:  # a user namespace: the sandbox shows the user's own uid
        return Account(name, ids[0], ids[1], str(home), "/bin/sh")
    return None
