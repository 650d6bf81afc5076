"""Sample submissions: folders that become real submissions when their certificates are made.

A sample folder holds a ``sample.toml`` saying which certificates to make (with the real
``openssl req -x509``, as students do, from a config file in the folder) and which checks
the sample is expected to fail. Keys are made fresh each time and never committed. The
same expectations drive the project's tests and the demo.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from ._assignment import Assignment
from ._errors import HarnessError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SAMPLE_FILE = "sample.toml"


@dataclass(frozen=True)
class Sample:
    name: str
    source: Path
    description: str
    expect_failed: frozenset[str]
    certificates: tuple[dict[str, str], ...]
    base: Path | None = None  # a folder this sample starts from (the reference, say)
    replacements: tuple[dict[str, str], ...] = ()  # {file, old, new}: the sample's one mistake
    # check id -> words its feedback must hold ([expect.says]): the feedback it should get
    expect_says: tuple[tuple[str, str], ...] = ()
    # of the failed checks, those that must be BLOCKED (could not run) rather than failed
    # on their own ([expect] blocked); None where the sample does not say
    expect_blocked: frozenset[str] | None = None


def load_sample(folder: Path) -> Sample:
    data = tomllib.loads((folder / SAMPLE_FILE).read_text())
    base = data.get("base")
    return Sample(
        name=folder.name,
        source=folder,
        description=data.get("description", ""),
        expect_failed=frozenset(data.get("expect", {}).get("failed", [])),
        certificates=tuple(data.get("certificates", [])),
        base=(folder / base).resolve() if base else None,
        replacements=tuple(data.get("replace", [])),
        expect_says=tuple(data.get("expect", {}).get("says", {}).items()),
        expect_blocked=(
            frozenset(data["expect"]["blocked"]) if "blocked" in data.get("expect", {}) else None
        ),
    )


def samples_of(assignment: Assignment, extra: Path | None = None) -> list[Sample]:
    """The reference (named 'reference') and the bundled samples, plus those under ``extra``."""
    folders = [assignment.reference_dir]
    if assignment.samples_dir.is_dir():  # git keeps no empty folder: it may be absent
        folders += sorted(p for p in assignment.samples_dir.iterdir() if p.is_dir())
    if extra is not None and extra.is_dir():
        folders += sorted(p for p in extra.iterdir() if p.is_dir())
    out = []
    for f in folders:
        if (f / SAMPLE_FILE).is_file():
            s = load_sample(f)
            out.append(replace(s, name="reference") if f == assignment.reference_dir else s)
    return out


def make_certificate(
    folder: Path, config: str, name: str = "server", days: int = 1095, key: str = "rsa:2048"
) -> None:
    """``openssl req -x509 -nodes ... -config CONFIG`` then ``cat NAME.crt NAME.key > NAME.pem``.

    rsa:2048 rather than the lecture's 4096 keeps sample making fast (0.3 s vs 1.4 s here);
    key size is the certificate exercise's business, not this one's.
    """
    cmd = [
        "openssl",
        "req",
        "-x509",
        "-nodes",
        "-days",
        str(days),
        "-newkey",
        key,
        "-config",
        config,
        "-out",
        f"{name}.crt",
        "-keyout",
        f"{name}.key",
    ]
    try:
        run = subprocess.run(cmd, cwd=folder, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HarnessError(f"openssl could not run: {exc}") from exc
    if run.returncode != 0:
        raise HarnessError(f"openssl failed in {folder}: {run.stderr.decode(errors='replace')}")
    (folder / f"{name}.pem").write_bytes(
        (folder / f"{name}.crt").read_bytes() + (folder / f"{name}.key").read_bytes()
    )
    (folder / f"{name}.key").chmod(0o600)
    (folder / f"{name}.pem").chmod(0o600)


def materialize(sample: Sample, dest: Path) -> Path:
    """Copy a sample to ``dest`` and make its certificates there.

    A sample with a ``base`` is that folder with the sample's own files laid over it and its
    replacements applied: a broken submission is the reference minus one stated mistake, and
    stays so when the reference changes (a replacement that no longer applies is an error).
    """
    if dest.exists():
        shutil.rmtree(dest)
    ignore = shutil.ignore_patterns(SAMPLE_FILE, "__pycache__")
    if sample.base is not None:
        shutil.copytree(sample.base, dest, ignore=ignore)
        shutil.copytree(sample.source, dest, ignore=ignore, dirs_exist_ok=True)
    else:
        shutil.copytree(sample.source, dest, ignore=ignore)
    for r in sample.replacements:
        target = dest / r["file"]
        text = target.read_text()
        if text.count(r["old"]) != 1:
            raise HarnessError(
                f"sample {sample.name}: {r['old']!r} is in {r['file']} {text.count(r['old'])} times, not once"
            )
        target.write_text(text.replace(r["old"], r["new"]))
    for cert in sample.certificates:
        make_certificate(
            dest,
            cert["config"],
            cert.get("name", "server"),
            int(cert.get("days", 1095)),
            cert.get("key", "rsa:2048"),
        )
    return dest
