"""registry without a store: the gate's checks and how its result reads."""

from __future__ import annotations

import pytest

from mlops_helpers import registry


@pytest.mark.parametrize(
    ("value", "threshold", "op", "passed"),
    [
        (0.70, 0.65, ">=", True),
        (0.65, 0.65, ">=", True),  # the floor itself passes
        (0.64, 0.65, ">=", False),
        (0.01, 0.01, "<=", True),  # exactly the allowed drop passes
        (0.02, 0.01, "<=", False),
        (-0.05, 0.01, "<=", True),  # a better challenger "drops" by a negative amount
    ],
)
def test_check_compares_against_its_threshold(value, threshold, op, passed):
    check = registry._check("label", value, threshold, op)
    assert check == {
        "check": "label",
        "value": value,
        "rule": f"{op} {threshold}",
        "passed": passed,
    }


def result(champion: dict | None) -> registry.GateResult:
    checks = [registry._check("roc_auc >= floor", 0.71, 0.65, ">=")]
    return registry.GateResult(
        "m", "2", True, {"roc_auc": 0.71234}, champion, "1" if champion else None, checks
    )


def test_summary_names_the_champion_it_was_compared_with():
    assert result({"roc_auc": 0.7}).summary() == "roc_auc 0.7123 vs champion v1 0.7000"
    assert result(None).summary() == "roc_auc 0.7123, no champion to compare with"


def test_table_has_one_row_per_check():
    table = result(None).table()
    assert list(table.index) == ["roc_auc >= floor"]
    assert list(table.columns) == ["value", "rule", "passed"]


def test_default_thresholds_are_the_documented_ones():
    assert registry.GateThresholds() == registry.GateThresholds(0.65, 0.01, 0.02)
