"""The pipeline's step functions: partitions handed over by fingerprint and checked on
read, nothing read from outside the workspace, bad handovers refused with the fix."""

from __future__ import annotations

import json

import pytest

from mlops_helpers import config, etl, steps


@pytest.fixture
def workspace(monkeypatch, tmp_path):
    ws = tmp_path / "ws"
    monkeypatch.setenv(config.HOME_ENV, str(ws))
    return ws


def test_etl_step_publishes_train_and_gate_days_and_skips_them_when_unchanged(workspace):
    first = steps.etl_step(5, 200, "2026-03-01", 3)
    assert [p["day"] for p in first["train"]] == ["2026-03-01", "2026-03-02"]
    assert [p["day"] for p in first["gate"]] == ["2026-03-03"]
    assert (first["published"], first["unchanged"]) == (3, 0)
    out = workspace / first["warehouse"] / "out"
    for part in first["train"] + first["gate"]:
        assert etl.read_manifest(out, part["day"])["fingerprint"] == part["fingerprint"]

    again = steps.etl_step(5, 200, "2026-03-01", 3)
    assert (again["published"], again["unchanged"]) == (0, 3)
    assert again["train"] == first["train"] and again["gate"] == first["gate"]


def test_one_warehouse_holds_a_day_the_same_whichever_run_published_it(workspace):
    ranged = steps.etl_step(5, 200, "2026-03-01", 3)
    alone = steps.publish_day(5, 200, "2026-03-02")
    assert alone["status"] == "unchanged"
    assert alone["fingerprint"] == ranged["train"][1]["fingerprint"]


def test_read_exactly_refuses_a_day_republished_with_other_content(workspace):
    handed = steps.etl_step(5, 200, "2026-03-01", 2)
    table = steps.read_exactly(handed["warehouse"], handed["train"])
    assert len(table) > 0 and set(table["ts"].dt.date.astype(str)) == {"2026-03-01"}
    stale = [{**handed["train"][0], "fingerprint": "0" * 64}]
    with pytest.raises(steps.StepInputError, match="changed since the ETL step handed it over"):
        steps.read_exactly(handed["warehouse"], stale)
    missing = [{"day": "2026-04-01", "fingerprint": "0" * 64}]
    with pytest.raises(steps.StepInputError, match="2026-04-01 is not published"):
        steps.read_exactly(handed["warehouse"], missing)
    with pytest.raises(steps.StepInputError, match="no partitions were handed over"):
        steps.read_exactly(handed["warehouse"], [])


@pytest.mark.parametrize("where", ["..", "../elsewhere", "/etc", "."])
def test_read_exactly_refuses_a_warehouse_outside_the_workspace(workspace, where):
    with pytest.raises(steps.StepInputError, match="not inside the workspace"):
        steps.read_exactly(where, [{"day": "2026-03-01", "fingerprint": "0" * 64}])


@pytest.mark.parametrize(("gate_days", "n_days"), [(0, 3), (3, 3), (4, 3)])
def test_etl_step_needs_a_gate_day_and_a_training_day(workspace, gate_days, n_days):
    with pytest.raises(steps.StepInputError, match="use 1 <= gate_days < n_days"):
        steps.etl_step(5, 200, "2026-03-01", n_days, gate_days)
    assert not (workspace / "warehouse").exists(), "refused before anything is generated"


def test_step_inputs_and_outputs_are_json(tmp_path):
    assert steps.read_inputs('{"a": [1]}') == {"a": [1]}
    assert steps.read_inputs("") == {}
    for bad in ("[1]", "{not json"):
        with pytest.raises(steps.StepInputError):
            steps.read_inputs(bad)
    target = tmp_path / "out.json"
    assert steps.write_outputs(str(target), {"b": 2}) == {"b": 2}
    assert json.loads(target.read_text()) == {"b": 2}
    assert steps.write_outputs("", {"c": 3}) == {"c": 3}, "outside a pipeline: nothing written"


def test_a_drift_ramps_up_from_its_first_day_and_stays():
    ramp = {"drift": 1.0, "drift_from": "2026-01-08", "drift_days": 4}
    days = ["2026-01-07", "2026-01-08", "2026-01-09", "2026-01-11", "2026-01-20"]
    assert [steps.drift_on(d, **ramp) for d in days] == [0.0, 0.25, 0.5, 1.0, 1.0]
    assert steps.drift_on("2026-01-01", 0.5) == 0.5, "without drift_from: drifted from the start"


def test_a_ramped_world_has_its_own_warehouse_and_its_calm_days_match_the_calm_world(workspace):
    ramp = {"drift": 1.0, "drift_from": "2026-03-02", "drift_days": 2}
    calm = steps.publish_day(5, 200, "2026-03-01")
    before = steps.publish_day(5, 200, "2026-03-01", **ramp)
    drifted = steps.publish_day(5, 200, "2026-03-02", **ramp)
    assert before["warehouse"] != calm["warehouse"]
    assert before["fingerprint"] == calm["fingerprint"], "no drift yet: the same day"
    assert drifted["fingerprint"] != steps.publish_day(5, 200, "2026-03-02")["fingerprint"]
