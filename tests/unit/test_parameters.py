"""parameters: each rule accepts good values and rejects bad ones with a message that helps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlops_helpers.data import FAULTS
from mlops_helpers.parameters import (
    RULES,
    ParameterError,
    ParamSpec,
    check_parameter,
    check_parameters,
    check_value,
    coerce_text,
    text_value,
)

# name -> (a valid value, a value of the wrong type, a value of the right type out of range)
CASES = {
    "seed": (42, "42", -1),
    "n_rows": (2000, 2000.0, 0),
    "n_days": (3, "3", 367),
    "start_day": ("2024-01-01", 20240101, "2024-13-01"),
    "fault": ("duplicates", None, "gremlins"),
    "max_quarantine_fraction": (0.1, "0.1", 1.5),
    "drift": (0.5, "0.5", 5.5),
    "C": (1.0, "1.0", 0.0),
    "max_iter": (200, 200.5, 5),
    "test_fraction": (0.25, "0.25", 0.9),
    "experiment": ("workbook", 3, "   "),
    "show_plots": (True, "yes", None),
}


def _wrong_type_for(kind: type):
    return 3 if kind is str else "some text"


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_accepts_a_valid_value(name):
    valid = CASES[name][0]
    assert check_parameter(name, valid) == valid


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_rejects_a_wrong_type_naming_parameter_value_and_rule(name):
    wrong = CASES[name][1]
    with pytest.raises(ParameterError) as err:
        check_parameter(name, wrong)
    message = str(err.value)
    assert f"parameter {name} must be {RULES[name].describe}" in message
    assert f"got {wrong!r}" in message


@pytest.mark.parametrize("name", sorted(n for n, case in CASES.items() if case[2] is not None))
def test_rule_rejects_a_value_out_of_range(name):
    bad = CASES[name][2]
    with pytest.raises(ParameterError, match=f"parameter {name} must be") as err:
        check_parameter(name, bad)
    assert f"got {bad!r}" in str(err.value)
    assert RULES[name].describe in str(err.value)


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rule_rejects_a_value_of_another_type(name):
    """Also covers rules added later, which CASES may not list yet."""
    rule = RULES[name]
    wrong = _wrong_type_for(rule.kind)
    with pytest.raises(ParameterError, match=f"parameter {name} must be"):
        check_parameter(name, wrong)
    assert rule.describe.strip()


@pytest.mark.parametrize("name", sorted(n for n, r in RULES.items() if r.kind is int))
def test_bools_are_not_ints(name):
    with pytest.raises(ParameterError, match=f"parameter {name}.*got True"):
        check_parameter(name, True)


@pytest.mark.parametrize("name", sorted(n for n, r in RULES.items() if r.kind is float))
def test_bools_are_not_floats(name):
    with pytest.raises(ParameterError, match="got False"):
        check_parameter(name, False)


def test_ints_widen_to_float():
    value = check_parameter("C", 2)
    assert value == 2.0
    assert type(value) is float
    assert type(check_parameter("max_quarantine_fraction", 1)) is float


def test_ints_stay_ints():
    assert type(check_parameter("n_rows", 10)) is int


def test_every_fault_is_a_valid_fault_parameter():
    for fault in ("none", *FAULTS):
        assert check_parameter("fault", fault) == fault


def test_seed_bounds():
    assert check_parameter("seed", 0) == 0
    assert check_parameter("seed", 2**32 - 1) == 2**32 - 1
    with pytest.raises(ParameterError):
        check_parameter("seed", 2**32)


def test_start_day_must_be_written_in_full():
    with pytest.raises(ParameterError, match="YYYY-MM-DD"):
        check_parameter("start_day", "20240101")


def test_unknown_parameter_lists_the_known_ones():
    with pytest.raises(ParameterError, match="unknown parameter 'n_row'") as err:
        check_parameter("n_row", 5)
    assert "n_rows" in str(err.value)
    assert "seed" in str(err.value)


def test_check_parameters_returns_checked_values():
    assert check_parameters(seed=1, n_rows=500, C=1) == {"seed": 1, "n_rows": 500, "C": 1.0}


def test_check_parameters_reports_every_wrong_parameter_at_once():
    with pytest.raises(ParameterError) as err:
        check_parameters(seed=1, n_rows=-5, fault="gremlins", C=0.5, bogus=1)
    message = str(err.value)
    assert "parameter n_rows must be an int from 1 to 5000000, got -5" in message
    assert "parameter fault must be one of" in message and "'gremlins'" in message
    assert "unknown parameter 'bogus'" in message
    assert "seed" not in message.split("known parameters")[0]
    assert "parameter C" not in message


# --- coerce_text -------------------------------------------------------------------------


@given(st.integers())
def test_coerce_int_round_trips(value):
    assert coerce_text("n_rows", str(value), "int") == value


@given(st.floats(allow_nan=False))
def test_coerce_float_round_trips(value):
    assert coerce_text("C", repr(value), "float") == value


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("True", True), ("1", True), ("yes", True), (" YES ", True)]
    + [("false", False), ("0", False), ("no", False), ("No", False)],
)
def test_coerce_bool(text, expected):
    assert coerce_text("show_plots", text, "bool") is expected


def test_coerce_str_keeps_the_text():
    assert coerce_text("start_day", "2024-01-01", "str") == "2024-01-01"
    assert coerce_text("fault", "007", "str") == "007"


@pytest.mark.parametrize(
    ("name", "text", "kind", "example"),
    [
        ("n_rows", "lots", "int", "7"),
        ("n_rows", "2.5", "int", "7"),
        ("C", "strong", "float", "0.5"),
        ("show_plots", "maybe", "bool", "true"),
    ],
)
def test_coerce_text_error_names_parameter_value_and_an_example(name, text, kind, example):
    with pytest.raises(ParameterError) as err:
        coerce_text(name, text, kind)
    message = str(err.value)
    assert f"parameter {name} must be {kind}, got {text!r}" in message
    assert f"pass e.g. -p {name} {example}" in message


# --- text_value (-p text) and check_value (typed YAML values) ------------------------------

N_ROWS = ParamSpec("n_rows", "int", "2000", "rows")
SHOW = ParamSpec("show_plots", "bool", "True", "plots")
C = ParamSpec("C", "float", "1.0", "strength")


def test_p_text_is_converted_to_the_declared_type_then_checked():
    assert text_value("n_rows", "100", N_ROWS) == 100
    assert text_value("show_plots", "no", SHOW) is False
    value = text_value("C", "2", C)
    assert value == 2.0 and type(value) is float
    with pytest.raises(ParameterError, match="parameter n_rows must be an int from 1"):
        text_value("n_rows", "0", N_ROWS)


def test_a_typed_value_is_only_checked_never_converted_and_names_its_source():
    assert check_value("n_rows", 100, N_ROWS, "grid.yaml:3") == 100
    assert type(check_value("C", 2, C, "-f p.yaml")) is float
    for text, spec in (("100", N_ROWS), ("no", SHOW)):
        with pytest.raises(ParameterError) as err:
            check_value(spec.name, text, spec, "-f p.yaml")
        assert f"parameter {spec.name} (-f p.yaml) must be {spec.kind}, got {text!r}" in str(
            err.value
        )


def test_a_parameter_without_a_rule_is_checked_against_its_declared_type_only():
    spec = ParamSpec("label", "str", "'x'", "a name no rule knows")
    assert check_value("label", "anything", spec, "pipe.yaml:2") == "anything"
    assert text_value("label", "007", spec) == "007"
    with pytest.raises(ParameterError, match=r"parameter label \(pipe.yaml:2\) must be str"):
        check_value("label", 7, spec, "pipe.yaml:2")
