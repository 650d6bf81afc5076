"""The capture-making engine's small parts: seeds, the backend it needs, answer shapes, and the
layouts that keep a graded capture unlike the practice one."""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

import pytest

from harness import HarnessError
from harness._answers import differences, shape_error
from harness._assignment import load_assignment
from harness._capture import (
    PRACTICE,
    SECRET_ENV,
    Scene,
    apart_from_practice,
    load_scenario,
    rng_for,
    seed_for,
)
from harness._wire import RelayWire


def test_a_seed_is_stable_and_a_secret_changes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    plain = seed_for("plaintext-http", "ana")
    assert plain == seed_for("plaintext-http", "ana") != seed_for("plaintext-http", "bo")
    monkeypatch.setenv(SECRET_ENV, "course secret")
    assert seed_for("plaintext-http", "ana") != plain


def test_public_and_hidden_parts_draw_from_separate_generators() -> None:
    assert rng_for("s", "public").random() != rng_for("s", "hidden").random()
    assert rng_for("s", "public").random() == rng_for("s", "public").random()


def test_a_capture_needs_a_real_capture_not_the_relay() -> None:
    with RelayWire(None) as relay, pytest.raises(HarnessError, match="needs a real capture"):
        Scene(relay, random.Random(1), exact=False)


def test_shape_errors_say_what_is_wrong() -> None:
    assert shape_error({"requests": [], "https": []}, ("requests", "https")) is None
    assert "a JSON list, not an object" in str(shape_error([], ("requests",)))
    assert 'no list "https"' in str(shape_error({"requests": []}, ("requests", "https")))
    assert '"requests"[1] is not an object' in str(shape_error({"requests": [{}, 3]}, ("requests",)))


def test_differences_name_the_field_and_both_values() -> None:
    diff = differences({"a": 1, "b": [2]}, {"a": 1, "b": "2"}, ("a", "b", "c"))
    assert diff == ['b: expected [2], seen "2"']
    assert differences({"a": 1}, {}, ("a",)) == ["a: expected 1, seen (missing)"]


def _layouts(exercise: str, n: int) -> tuple[Any, list[Any]]:
    """The practice capture's layout and ``n`` students' (as make() draws them)."""
    scenario = load_scenario(load_assignment(exercise).grader_dir)
    practice = scenario.layout(rng_for(PRACTICE, "public"))
    students = []
    for i in range(n):
        seed = seed_for(exercise, f"student-{i}")
        students.append(
            apart_from_practice(seed, "public", rng_for(seed, "public"), scenario.layout, scenario.apart)
        )
    return practice, students


def test_a_plaintext_http_capture_for_marks_shares_no_detail_with_the_practice_one() -> None:
    practice, students = _layouts("plaintext-http", 100)
    places = {i for i, step in enumerate(practice.order) if step.startswith("tls:")}
    for s in students:
        assert not s.addresses() & practice.addresses()  # client and every server
        assert not {p for _, p in s.tls} & {p for _, p in practice.tls}  # HTTPS ports
        assert not set(s.tlds) & set(practice.tlds)  # host name suffixes
        assert len(s.order) != len(practice.order)  # number of connections
        assert not {i for i, step in enumerate(s.order) if step.startswith("tls:")} & places  # order
    assert len({s.client for s in students}) == 100  # and students differ from one another


def test_a_handshake_capture_for_marks_shares_no_detail_with_the_practice_one() -> None:
    practice, students = _layouts("handshake-analysis", 100)
    for s in students:
        assert not {s.client, s.server} & {practice.client, practice.server}
        assert s.port != practice.port and not set(s.tlds) & set(practice.tlds)
        assert s.extra != practice.extra  # a different number of connections
    assert len({(s.server, s.port) for s in students}) == 100


def test_the_public_search_phrase_needs_decoding() -> None:
    scenario = load_scenario(load_assignment("plaintext-http").grader_dir)
    for i in range(50):
        phrase = scenario.search_phrase(random.Random(i))
        sent = urlencode([("q", phrase)])
        assert sent != f"q={phrase}" and parse_qs(sent) == {"q": [phrase]}
        assert unquote(sent.split("=", 1)[1]) == phrase  # decoding, and only decoding, reads it


def test_pyshark_is_a_dependency_students_get() -> None:
    """Setup, a bundle's workflow and Gradescope's setup.sh all pip-install wiregrade: its
    dependencies are what student programs can import (the tests/submissions/*/pyshark samples
    show it works inside the sandbox)."""
    from tests.conftest import ROOT

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("pyshark") for d in deps)
    for handout in ("plaintext-http", "handshake-analysis"):
        assert "pyshark" in (ROOT / "assignments" / handout / "README.md").read_text()


def test_the_hidden_plaintext_cases_come_in_no_fixed_place() -> None:
    """A program fitted to where each hidden case sits (the split request first, say) fails: the
    order and the number of connections are drawn per student."""
    scenario = load_scenario(load_assignment("plaintext-http").grader_dir)
    import hidden_scenes  # the grader's folder is on sys.path now; importing it registers it

    orders = [hidden_scenes.case_order(rng_for(f"student-{i}", "hidden")) for i in range(100)]
    assert all(set(hidden_scenes.CASES) <= set(o) for o in orders)
    for case in hidden_scenes.CASES:
        assert len({o.index(case) for o in orders}) >= 4, case  # no case has a place of its own
    assert len({len(o) for o in orders}) == 3  # 4, 5 or 6 connections
    assert scenario.HIDDEN["scenes"] is hidden_scenes.hidden  # the hidden module registered itself
