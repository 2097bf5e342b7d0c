"""registry without a store: the gate's checks and how its result reads."""

from __future__ import annotations

import pandas as pd
import pytest

from mlops_helpers import comparison, registry


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
    assert registry.GateThresholds() == registry.GateThresholds(0.65, 0.01, 0.02, 0.03, 0.95, 100)


@pytest.mark.parametrize(
    ("low", "passed"),
    [
        (0.005, True),  # the interval reaches an allowed loss: maybe noise, so it passes
        (0.01, True),
        (0.012, False),  # the whole interval is a loss larger than allowed
    ],
)
def test_a_loss_is_decided_on_its_intervals_low_end(low, passed):
    interval = comparison.Interval(0.03, low, 0.05, 0.95)
    check = registry._check("drop", 0.03, 0.01, "<=", interval)
    assert check == {
        "check": "drop",
        "value": 0.03,
        "low": low,
        "high": 0.05,
        "rule": "low <= 0.01",
        "passed": passed,
    }


def test_a_floor_is_decided_on_the_estimate_and_shows_its_interval():
    interval = comparison.Interval(0.64, 0.62, 0.66, 0.95)
    check = registry._check("floor", 0.64, 0.65, ">=", interval)
    assert (check["passed"], check["rule"], check["high"]) == (False, ">= 0.65", 0.66)


def slices(*rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["slice", "compared", "drop", "low", "high"])
    return frame.set_index("slice")


def test_slice_checks_name_each_failing_slice():
    table = slices(
        ("device=tablet", True, 0.2, 0.1, 0.3),
        ("device=mobile", True, 0.0, -0.01, 0.01),
        ("position=above_fold", True, 0.08, 0.05, 0.11),
        ("site_category=news", False, None, None, None),
    )
    checks = registry._slice_checks(table, registry.GateThresholds())
    assert [c["check"] for c in checks] == [
        "roc_auc drop on device=tablet",
        "roc_auc drop on position=above_fold",
    ]
    assert not any(c["passed"] for c in checks)


def test_with_no_failing_slice_the_closest_one_is_shown():
    table = slices(
        ("device=tablet", True, 0.01, -0.02, 0.04),
        ("device=mobile", True, 0.0, -0.01, 0.01),
        ("site_category=news", False, None, None, None),
    )
    (check,) = registry._slice_checks(table, registry.GateThresholds())
    assert check["check"] == "roc_auc drop, worst slice device=mobile"
    assert check["passed"]


class FailingStore:
    """A client whose store fails reading aliases. A stand-in is needed: a real store cannot
    be made to fail on exactly one read, on demand, while the others answer."""

    def __init__(self, error: Exception):
        self.error, self.writes = error, []

    def get_model_version_by_alias(self, name, alias):
        raise self.error

    def delete_registered_model_alias(self, name, alias):
        self.writes.append(("delete alias", alias))

    def set_registered_model_alias(self, name, alias, version):
        self.writes.append(("set alias", alias))

    def set_registered_model_tag(self, name, key, value):
        self.writes.append(("tag", key))

    def get_registered_model(self, name):
        raise AssertionError("no history is read or written after a failed read")


def test_a_store_failure_stops_the_alias_change_and_deletes_nothing(monkeypatch):
    from mlflow.exceptions import MlflowException

    store = FailingStore(MlflowException("(sqlite3.OperationalError) database is locked"))
    monkeypatch.setattr(registry, "client", lambda: store)

    with pytest.raises(registry.StoreError) as raised:
        registry.set_alias("m", registry.CHAMPION, None, "rollback: smoke test failed")

    assert store.writes == [], "the alias and the history are untouched"
    message = str(raised.value)
    assert "tracking store failed while reading alias 'champion' of model 'm'" in message
    assert "database is locked" in message and "nothing more was changed" in message


@pytest.mark.parametrize(
    ("code", "text"),
    [
        ("INVALID_PARAMETER_VALUE", "Registered model alias champion not found."),
        ("RESOURCE_DOES_NOT_EXIST", "Registered Model with name=m not found"),
    ],
)
def test_only_mlflows_does_not_exist_answers_mean_no_alias(monkeypatch, code, text):
    from mlflow.exceptions import MlflowException
    from mlflow.protos import databricks_pb2

    # the answers MLflow 3 gives on a real sqlite store (checked), replayed without one
    error = MlflowException(text, getattr(databricks_pb2, code))
    monkeypatch.setattr(registry, "client", lambda: FailingStore(error))
    assert registry.current_version("m", registry.CHAMPION) is None
    other = FailingStore(MlflowException("must be a string", getattr(databricks_pb2, code)))
    monkeypatch.setattr(registry, "client", lambda: other)
    if code == "INVALID_PARAMETER_VALUE":
        with pytest.raises(registry.StoreError):
            registry.current_version("m", registry.CHAMPION)
