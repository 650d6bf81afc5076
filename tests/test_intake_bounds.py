"""Intake follows nothing a student made and is bounded: links and special files in a folder are
refused as in an archive, file count, bytes and depth are capped (checked without reading a file,
without recursion, stopping at the first refusal), fingerprints hash in chunks, and the capture
secret of a batch is made once per OUT, kept in its store and never shown to a student."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import socket
import stat
import subprocess
import tarfile
import time
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness._assignment import load_assignment
from harness._capture import SECRET_ENV
from harness._intake import (
    MAX_DEPTH,
    MAX_FILES,
    MAX_UNPACKED,
    IntakeError,
    check_folder,
    intake,
    safe_unpack,
)
from harness._results import SubmissionResult
from harness._runner import grade_batch, run_session
from harness._store import Store, fingerprint_files


def honest(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "server.py").write_text("print('hello')\n")
    return folder


def test_a_git_clone_with_its_venv_is_graded_not_refused(tmp_path: Path) -> None:
    """.git, .venv and friends are never copied into a session, so they are not counted or
    refused: a GitHub Classroom clone with a big history and a virtual environment is fine."""
    repo = honest(tmp_path / "repo")
    (repo / ".git" / "objects").mkdir(parents=True)
    for i in range(MAX_FILES + 10):
        (repo / ".git" / "objects" / f"o{i}").touch()
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / "bin" / "python").symlink_to("/usr/bin/python3")
    check_folder(repo)
    (repo / "link.py").symlink_to(repo / "server.py")
    with pytest.raises(IntakeError, match="link.py is a symbolic link"):
        check_folder(repo)


def test_links_and_special_files_in_a_folder_are_refused_by_name(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    outside = tmp_path / "outside"
    honest(outside)
    honest(subs / "honest")
    honest(subs / "alice")
    (subs / "alice" / "student.key").symlink_to("/etc/shadow")
    honest(subs / "bob" / "deep" / "er")
    os.mkfifo(subs / "bob" / "deep" / "er" / "pipe")
    honest(subs / "carol")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(subs / "carol" / "s.sock"))
    honest(subs / "dana")
    (subs / "dana" / "lib").symlink_to(outside, target_is_directory=True)
    (subs / "erin").mkdir()  # a single wrapping "folder" that is a link: never flattened into
    (subs / "erin" / "proj").symlink_to(outside, target_is_directory=True)
    (subs / "frank").symlink_to(outside, target_is_directory=True)  # the submission itself
    with zipfile.ZipFile(tmp_path / "elsewhere.zip", "w") as zf:
        zf.writestr("server.py", "print(1)\n")
    (subs / "gina.zip").symlink_to(tmp_path / "elsewhere.zip")
    os.mkfifo(subs / "hugo.zip")  # opening it would block a batch for ever: never opened
    writer = os.open(subs / "hugo.zip", os.O_RDWR | os.O_NONBLOCK)  # (here it would not block)
    try:
        ready, refused = intake(subs, tmp_path / "work")
    finally:
        os.close(writer)
    assert sorted(ready) == ["honest"]
    assert refused == {
        "alice": "student.key is a symbolic link; hand in regular files only",
        "bob": "deep/er/pipe is a named pipe (fifo); hand in regular files only",
        "carol": "s.sock is a socket; hand in regular files only",
        "dana": "lib is a symbolic link; hand in regular files only",
        "erin": "proj is a symbolic link; hand in regular files only",
        "frank": "frank is a symbolic link, not a folder or an archive; hand in the submission itself "
        "(it is not followed)",
        "gina": "gina.zip is a symbolic link, not a folder or an archive; hand in the submission "
        "itself (it is not followed)",
        "hugo": "hugo.zip is a named pipe (fifo), not a folder or an archive; hand in the submission "
        "itself (it is not followed)",
    }
    assert not (tmp_path / "work" / "gina").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device needs root")
def test_a_device_in_a_folder_is_refused(tmp_path: Path) -> None:
    honest(tmp_path / "sub")
    os.mknod(tmp_path / "sub" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    with pytest.raises(IntakeError, match="^null is a device; hand in regular files only$"):
        check_folder(tmp_path / "sub")


def test_folder_bounds_are_exact(tmp_path: Path) -> None:
    full = honest(tmp_path / "full")  # server.py + 1,999 more: exactly the limit
    for i in range(MAX_FILES - 1):
        (full / f"f{i}").touch()
    check_folder(full)
    (full / "one-more").touch()
    with pytest.raises(
        IntakeError, match="^the submission holds 2,001 files and folders or more \\(limit 2,000\\)$"
    ):
        check_folder(full)
    deep = tmp_path / "deep"
    (deep / "/".join(["d"] * (MAX_DEPTH - 1))).mkdir(parents=True)
    (deep / "/".join(["d"] * (MAX_DEPTH - 1)) / "server.py").touch()  # 24 levels: fine
    check_folder(deep)
    (deep / "/".join(["d"] * (MAX_DEPTH + 1))).mkdir(parents=True)
    with pytest.raises(IntakeError, match="is nested 25 levels deep \\(limit 24\\)$"):
        check_folder(deep)


def test_a_flood_of_empty_files_is_refused_at_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subs = tmp_path / "subs"
    honest(subs / "honest")
    flood = honest(subs / "flood")
    fd = os.open(flood, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(20_000):  # ten times the bound (300,000 would only take longer to make)
            os.mknod(str(i), stat.S_IFREG | 0o644, dir_fd=fd)
    finally:
        os.close(fd)
    seen = 0
    scandir = os.scandir

    def counting(path: str) -> Iterator[os.DirEntry[str]]:
        nonlocal seen
        with scandir(path) as entries:
            for e in entries:
                seen += 1
                yield e

    @contextlib.contextmanager
    def counted(path: str) -> Iterator[Iterator[os.DirEntry[str]]]:
        yield counting(path)

    monkeypatch.setattr(os, "scandir", counted)
    started = time.monotonic()
    ready, refused = intake(subs, tmp_path / "work")
    elapsed = time.monotonic() - started
    monkeypatch.undo()
    assert sorted(ready) == ["honest"]
    assert refused["flood"] == "the submission holds 2,001 files and folders or more (limit 2,000)"
    assert seen <= MAX_FILES + 2, f"intake looked at {seen:,} entries: it walked on past the bound"
    assert elapsed < 1.0, f"intake took {elapsed:.2f} s"
    assert not (tmp_path / "work").exists()  # nothing copied


def test_a_sparse_file_counts_its_size_and_is_never_read(tmp_path: Path) -> None:
    sub = tmp_path / "subs" / "sparse"
    sub.mkdir(parents=True)
    with open(sub / "big.bin", "wb") as f:
        f.truncate(3 << 30)  # 3 GiB that take no room on disk
    started = time.monotonic()
    _, refused = intake(tmp_path / "subs", tmp_path / "work")
    assert time.monotonic() - started < 1.0  # reading 3 GiB of zeros would take seconds
    assert refused["sparse"] == (
        f"the submission holds 3,221,225,472 bytes or more (limit {MAX_UNPACKED:,}; "
        "big.bin is 3,221,225,472 bytes)"
    )


def remove_chain(top: str, path: str) -> None:
    """Remove a chain of empty folders from the bottom up (shutil.rmtree, and pytest's own
    clean-up, would recurse)."""
    while not os.path.isdir(path):
        path = os.path.dirname(path)
    while path != top:
        os.rmdir(path)
        path = os.path.dirname(path)


def test_a_tree_1100_deep_is_refused_without_recursion(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    sub = honest(tmp_path / "subs" / "abyss")
    path = str(sub)
    request.addfinalizer(lambda: remove_chain(str(sub), path))
    for _ in range(1100):  # os.makedirs recurses: one level at a time
        path += "/d"
        os.mkdir(path)
    _, refused = intake(tmp_path / "subs", tmp_path / "work")  # a RecursionError would escape here
    assert refused["abyss"].endswith("is nested 25 levels deep (limit 24)")
    fingerprint_files(sub)  # the fingerprint walks any depth too, without recursing


def make_tar(path: Path, names: list[str]) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name in names:
            tf.addfile(tarfile.TarInfo(name), io.BytesIO(b""))


def test_archive_bounds(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "many.zip", "w") as zf:
        for i in range(MAX_FILES + 5):
            zf.writestr(f"f{i}", "")
    with pytest.raises(
        IntakeError, match="^many.zip holds 2,001 files and folders or more \\(limit 2,000\\)$"
    ):
        safe_unpack(tmp_path / "many.zip", tmp_path / "many")
    make_tar(tmp_path / "many.tar.gz", [f"f{i}" for i in range(MAX_FILES + 5)])
    with pytest.raises(IntakeError, match="^many.tar.gz holds 2,001 files and folders or more"):
        safe_unpack(tmp_path / "many.tar.gz", tmp_path / "many-tar")
    make_tar(tmp_path / "deep.tar.gz", ["/".join(["d"] * 30) + "/x.py"])
    with pytest.raises(
        IntakeError, match="^deep.tar.gz: d/d/.*x.py is nested 31 levels deep \\(limit 24\\)$"
    ):
        safe_unpack(tmp_path / "deep.tar.gz", tmp_path / "deep")
    with zipfile.ZipFile(tmp_path / "deep.zip", "w") as zf:
        zf.writestr("/".join(["d"] * 25), "")
    with pytest.raises(IntakeError, match="nested 25 levels deep"):
        safe_unpack(tmp_path / "deep.zip", tmp_path / "deep-zip")
    make_tar(tmp_path / "fine.tar.gz", ["/".join(["d"] * 23) + "/x.py"])
    assert (safe_unpack(tmp_path / "fine.tar.gz", tmp_path / "fine") / "d").is_dir()
    assert not any((tmp_path / n).exists() for n in ("many", "many-tar", "deep", "deep-zip"))


def test_fingerprints_hash_in_chunks_and_follow_no_link(tmp_path: Path) -> None:
    sub = honest(tmp_path / "sub")
    with open(sub / "big.bin", "wb") as f:
        f.truncate(64 << 20)
    tracemalloc.start()
    try:
        first = fingerprint_files(sub)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"fingerprinting a 64 MiB file took {peak:,} bytes of memory"
    outside = honest(tmp_path / "outside")
    (sub / "lib").symlink_to(outside, target_is_directory=True)
    (sub / "key").symlink_to(outside / "server.py")
    assert fingerprint_files(sub) == first
    (outside / "server.py").write_text("changed")
    (outside / "more.py").write_text("more")
    assert fingerprint_files(sub) == first  # what is behind a link is not the submission's
    (sub / "server.py").write_text("changed")
    assert fingerprint_files(sub) != first


def test_the_store_makes_one_capture_secret_and_keeps_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "a" / "wiregrade.db")
    assert store.find_capture_secret() is None
    secret = store.capture_secret()
    assert len(secret) == 64 and int(secret, 16) >= 0
    assert store.capture_secret() == secret
    store.close()
    again = Store(tmp_path / "a" / "wiregrade.db")
    assert again.capture_secret() == again.find_capture_secret() == secret  # a resume finds it
    again.close()
    other = Store(tmp_path / "b" / "wiregrade.db")
    assert other.capture_secret() != secret  # one per OUT
    other.close()
    assert stat.S_IMODE((tmp_path / "a" / "wiregrade.db").stat().st_mode) == 0o600


SEED_GRADER = """
import os

from harness import check
from harness._capture import seed_for

@check(title="Shows the seed", points=1)
def test_seed(student, evidence):
    evidence.text("seed", seed_for("boom", "alice"))
    proc = student.run("env.py", timeout=20)
    evidence.text("student environment", proc.stdout.text())
"""


def seed(secret: str) -> str:
    return hashlib.sha256(f"{secret}\0boom\0alice".encode()).hexdigest()[:24]


def seen_seed(result: SubmissionResult) -> str:
    return next(e.data for c in result.checks for e in c.evidence if e.title == "seed")


def test_a_batch_salts_captures_with_its_own_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_plugin import make_project

    make_project(tmp_path / "project", SEED_GRADER, total=1)
    monkeypatch.setenv("WIREGRADE_HOME", str(tmp_path / "project"))
    monkeypatch.delenv(SECRET_ENV, raising=False)
    a = load_assignment("boom")
    subs = tmp_path / "subs"
    honest(subs / "alice")
    (subs / "alice" / "env.py").write_text("import os\nprint(sorted(os.environ.items()))\n")
    honest(subs / "mallory")
    (subs / "mallory" / "answers.txt").symlink_to("/etc/passwd")
    out = tmp_path / "out"
    results = {r.student: r for r in grade_batch(a, subs, out)}
    assert results["mallory"].refused == "answers.txt is a symbolic link; hand in regular files only"
    assert not results["alice"].harness_error, results["alice"].harness_error
    store = Store(out / "wiregrade.db")
    secret = store.capture_secret()
    store.close()
    assert seen_seed(results["alice"]) == seed(secret) != seed("")
    for f in out.rglob("*"):
        if f.is_file() and not f.name.startswith("wiregrade.db"):  # the store keeps it, nothing else
            assert secret.encode() not in f.read_bytes(), f
    student_env = next(
        e.data for c in results["alice"].checks for e in c.evidence if "environment" in e.title
    )
    assert "HOME" in student_env and SECRET_ENV not in student_env  # the student's programs never see it
    # a rerun of the same OUT (forced: every session runs again) gets the same captures
    again = {r.student: r for r in grade_batch(a, subs, out, force=True)}
    assert seen_seed(again["alice"]) == seed(secret)
    # another OUT, another secret
    assert seen_seed({r.student: r for r in grade_batch(a, subs, tmp_path / "out2")}["alice"]) != seed(secret)
    # the instructor's own secret wins, and the self-check (no batch) is unsalted as before
    monkeypatch.setenv(SECRET_ENV, "the-instructors-own")
    assert seen_seed({r.student: r for r in grade_batch(a, subs, out, force=True)}["alice"]) == seed(
        "the-instructors-own"
    )
    monkeypatch.delenv(SECRET_ENV)
    assert seen_seed(run_session(a, subs / "alice", tmp_path / "self", "alice")) == seed("")


def test_a_dispute_capture_uses_the_secret_the_batch_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness import cli

    monkeypatch.delenv(SECRET_ENV, raising=False)
    made: list[list[str]] = []
    monkeypatch.setattr(
        cli.subprocess, "run", lambda cmd, **kw: made.append(cmd) or subprocess.CompletedProcess(cmd, 0)
    )
    store = Store(tmp_path / "out" / "wiregrade.db")
    secret = store.capture_secret()
    store.close()
    argv = ["capture", "plaintext-http", "--student", "ana", "--out", str(tmp_path)]
    assert cli.main([*argv, "--graded", str(tmp_path / "out")]) == cli.ExitCode.OK
    expected = hashlib.sha256(f"{secret}\0plaintext-http\0ana".encode()).hexdigest()[:24]
    assert made[-1][made[-1].index("--seed") + 1] == expected
    assert SECRET_ENV not in os.environ
    assert cli.main([*argv, "--graded", str(tmp_path / "nowhere")]) == cli.ExitCode.USAGE
