"""The capture-making engine's small parts: seeds, the backend it needs, answer shapes."""

from __future__ import annotations

import random

import pytest

from harness import HarnessError
from harness._answers import differences, shape_error
from harness._capture import SECRET_ENV, Scene, rng_for, seed_for
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
