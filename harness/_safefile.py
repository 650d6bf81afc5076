"""Reading what a student's program left in its folder, without following its links.

After student code has run, every name in the submission copy is the student's: a file may
have become a symbolic link to a root-only file, a FIFO that never ends, or 3 GB. The grader
(often root) reads such files only through these functions: each component is opened with
``O_NOFOLLOW`` relative to the folder above it, only regular files are read, and no more than
``limit`` bytes. Anything else is the student's failure, said plainly.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from ._errors import CheckFailed

# Folders a submission may carry that are never graded, copied or counted: tools' own state.
# .wiregrade is the engine a starter repository carries, .wiregrade-report a self-check's output.
NOT_GRADED = frozenset(
    {".git", "__pycache__", ".venv", "venv", "node_modules", ".wiregrade", ".wiregrade-report"}
)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def walk(
    root: Path,
    prune: Callable[[os.DirEntry[str]], bool] | None = None,
    onerror: Callable[[OSError], None] | None = None,
) -> Iterator[tuple[str, os.DirEntry[str], int]]:
    """Every entry below ``root`` as (path relative to it, the entry, depth: 1 at the top).

    Iterative (any depth, no recursion) and lazy (a caller that stops early reads no more);
    a folder is entered only if it is one itself, never through a link. ``prune`` drops an
    entry and all below it. A folder that cannot be read raises, or with ``onerror`` is
    reported to it and passed over (as os.walk does)."""
    stack: list[tuple[str, int]] = [("", 0)]
    while stack:
        rel, depth = stack.pop()
        try:
            with os.scandir(root / rel if rel else root) as entries:
                for e in entries:
                    if prune is not None and prune(e):
                        continue
                    path = f"{rel}/{e.name}" if rel else e.name
                    yield path, e, depth + 1
                    if e.is_dir(follow_symlinks=False):
                        stack.append((path, depth + 1))
        except OSError as exc:
            if onerror is None:
                raise
            onerror(exc)


@contextlib.contextmanager
def folder_fd(root: Path) -> Iterator[int]:
    """An fd of the folder ``root`` itself (opened without following a link), for the ``*at``
    calls that then act on the names in it; closed afterwards."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        yield fd
    finally:
        os.close(fd)


class NotARegularFile(CheckFailed):
    """The name exists but is a link, a folder, a FIFO or a device: never read through."""


def _refuse(rel: str, what: str) -> NotARegularFile:
    return NotARegularFile(
        f"{rel} in your folder is {what}; the grader reads only regular files there.",
        expected=f"{rel}: a regular file your program wrote",
        hint="Write the file itself (no symbolic links, pipes or devices).",
    )


@contextlib.contextmanager
def _open_nofollow(root: Path, rel: str) -> Iterator[int]:
    """An fd for ``root/rel``, no component followed if it is a link; FileNotFoundError if absent."""
    parts = [p for p in Path(rel).parts if p not in ("", ".")]
    if not parts or ".." in parts or Path(rel).is_absolute():
        raise ValueError(f"not a relative path inside the submission: {rel!r}")
    fd = os.open(root, _DIR_FLAGS)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            try:
                nxt = os.open(part, _FILE_FLAGS if last else _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _refuse(rel, "a symbolic link (or under one)") from None
                raise
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def stat_made(root: Path, rel: str) -> os.stat_result | None:
    """The status of ``root/rel`` itself (a link is refused), or None if there is none."""
    try:
        with _open_nofollow(root, rel) as fd:
            st = os.fstat(fd)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(rel, "not a regular file")
    return st


def read_made(root: Path, rel: str, limit: int = 1 << 20) -> bytes | None:
    """The bytes of ``root/rel`` (a regular file, at most ``limit`` bytes), or None if absent."""
    try:
        with _open_nofollow(root, rel) as fd:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _refuse(rel, "not a regular file")
            if st.st_size > limit:
                raise CheckFailed(
                    f"{rel} is {st.st_size:,} bytes; the grader reads at most {limit:,}.",
                    expected=f"{rel} under {limit:,} bytes",
                )
            chunks, left = [], limit + 1
            while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
                chunks.append(chunk)
                left -= len(chunk)
    except FileNotFoundError:
        return None
    data = b"".join(chunks)
    if len(data) > limit:
        raise CheckFailed(f"{rel} grew past {limit:,} bytes while the grader read it.")
    return data


def regular_files(root: Path, suffix: str = "", limit: int = 2000) -> list[str]:
    """Names (relative to ``root``) of the regular files below it ending in ``suffix``, found
    without following links, at most ``limit`` of them."""
    found: list[str] = []
    for name, e, _depth in walk(root, onerror=lambda _exc: None):  # an unreadable folder holds none
        if e.is_file(follow_symlinks=False) and name.endswith(suffix):
            found.append(name)
            if len(found) == limit:
                break
    return sorted(found)
