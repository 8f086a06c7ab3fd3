"""The shared config-value checks (lin2net.validation), and that every parser that
reads a mapping of keys (the config, model:, a data family's data:) rejects an
unknown key the same way: naming it, suggesting the closest key, listing the valid ones."""

from __future__ import annotations

import pytest

from lin2net.dynamics.families import parse_model
from lin2net.dynamics.vector.data import parse_vector_data
from lin2net.errors import ConfigError
from lin2net.sweep.config import parse_config
from lin2net.validation import finite_float, positive_int, reject_unknown


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("1", "must be a number, got '1' (str)"),
        (True, "must be a number"),
        (float("inf"), "must be a finite number, got inf"),
    ],
)
def test_finite_float_names_the_key_and_the_value(value: object, words: str) -> None:
    with pytest.raises(ConfigError) as error:
        finite_float("a.b", value)
    assert error.value.key == "a.b" and error.value.exit_code == 2
    assert words in error.value.problem


def test_finite_float_bounds_a_huge_integer_in_its_message() -> None:
    with pytest.raises(ConfigError, match="an integer of about 401 digits"):
        finite_float("x", 10**400)
    assert finite_float("x", 3) == 3.0 and isinstance(finite_float("x", 3), float)


def test_positive_int_takes_whole_floats_and_checks_its_range() -> None:
    assert positive_int("n", 4.0) == 4
    with pytest.raises(ConfigError, match="must be > 0, got 0"):
        positive_int("n", 0)
    with pytest.raises(ConfigError, match="must be at most 5, got 6"):
        positive_int("n", 6, maximum=5)


def test_reject_unknown_prefers_the_specific_hint() -> None:
    with pytest.raises(ConfigError, match=r"unknown key \(did you mean 'alpha'\?\); valid keys: alpha, beta"):
        reject_unknown({"alpha": 1, "alpah": 2}, ("alpha", "beta"), "p.")
    with pytest.raises(ConfigError, match="unknown key, look elsewhere; valid keys"):
        reject_unknown({"alpah": 2}, ("alpha",), "p.", lambda key: ", look elsewhere")


@pytest.mark.parametrize(
    ("parse", "key", "suggestion"),
    [
        (lambda: parse_config({"etaa": 1}), "etaa", "data"),
        (lambda: parse_model({"family": "deep", "dept": 3}), "model.dept", "depth"),
        (lambda: parse_vector_data({"teachr": "relu"}, 2), "data.teachr", "teacher"),
    ],
)
def test_every_parser_rejects_an_unknown_key_alike(parse, key: str, suggestion: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as error:
        parse()
    assert error.value.key == key
    assert error.value.problem.startswith(f"unknown key (did you mean '{suggestion}'?); valid keys: ")
