"""Samples: a broken submission is its base (the reference) with its stated replacement."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import HarnessError
from harness._samples import load_sample, materialize


def make(tmp_path: Path, old: str) -> Path:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "server.py").write_text("minimum = 'TLSv1_2'\nprint('hi')\n")
    (tmp_path / "base" / "server.cnf").write_text("[ req ]\n")
    s = tmp_path / "broken"
    s.mkdir()
    (s / "sample.toml").write_text(
        f'base = "../base"\ndescription = "d"\n[expect]\nfailed = ["x"]\n\n'
        f'[[replace]]\nfile = "server.py"\nold = "{old}"\nnew = "minimum = \'TLSv1\'"\n'
    )
    (s / "extra.txt").write_text("own file")
    return s


def test_base_overlay_and_replacement(tmp_path: Path) -> None:
    out = materialize(load_sample(make(tmp_path, "minimum = 'TLSv1_2'")), tmp_path / "out")
    assert (out / "server.py").read_text() == "minimum = 'TLSv1'\nprint('hi')\n"
    assert (out / "server.cnf").read_text() == "[ req ]\n" and (out / "extra.txt").read_text() == "own file"
    assert not (out / "sample.toml").exists()
    assert (tmp_path / "base" / "server.py").read_text().startswith("minimum = 'TLSv1_2'")  # base untouched


def test_a_replacement_that_no_longer_applies_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="0 times, not once"):
        materialize(load_sample(make(tmp_path, "minimum = 'TLSv1_3'")), tmp_path / "out")
