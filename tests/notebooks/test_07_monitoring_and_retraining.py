"""07_monitoring_and_retraining under papermill: no drift retrains nothing, drift triggers a
retraining whose model becomes champion only through a passed gate (read from the registry)."""

from __future__ import annotations

import nbformat
import pandas as pd
import pytest
from nbtools import (
    checkpoints_passed,
    exercise_names,
    exercises_solved,
    output_text,
    stderr_text,
)
from papermill.exceptions import PapermillExecutionError

from mlops_helpers import registry, tracking
from mlops_helpers.workbook import curriculum

MODEL = "pm-test-07"
EXPERIMENT = "monitoring_and_retraining"


def _registry_state() -> tuple[pd.DataFrame, dict[str, dict[str, str]]]:
    """The champion's moves and every version's tags, from the test workspace's store."""
    tracking.configure_tracking(experiment=EXPERIMENT)
    client = registry.client()
    history = registry.alias_history(MODEL)
    versions = {
        str(mv.version): client.get_model_version(MODEL, str(mv.version)).tags
        for mv in client.search_model_versions(f"name = '{MODEL}'")
    }
    return history[history["alias"] == registry.CHAMPION], versions


def _assert_clean(nb: nbformat.NotebookNode) -> str:
    assert stderr_text(nb) == ""
    committed = nbformat.read(curriculum.find_notebook("07"), as_version=4)
    assert checkpoints_passed(nb) == checkpoints_passed(committed) > 0
    return output_text(nb)


def test_drift_triggers_a_retraining_that_goes_live_only_through_the_gate(run_notebook):
    nb = run_notebook(
        "07", seed=7, drift=1.5, n_days=2, n_new_days=3, model_name=MODEL, show_solutions=True
    )
    text = _assert_clean(nb)
    assert exercises_solved(nb) == exercise_names(nb) != set(), "each exercise takes its solution"
    assert "scenario A: no feature drifted" in text and "-> retrain: False" in text
    assert "nothing retrained: no feature drifted" in text
    assert "scenario B: drift in scroll_depth" in text and "-> retrain: True" in text
    assert "-> retrain on the published days" in text and "-> nothing to run" in text

    champion, versions = _registry_state()
    # version 1 is the first model; the drift scenario retrained exactly once: version 2
    assert sorted(versions) == ["1", "2"]
    decision = versions["2"]["gate.decision"]
    assert f"version 2 {'passed the gate' if decision == 'passed' else 'blocked by the gate'}" in (
        text
    )
    # the champion moved only to versions whose recorded gate decision is "passed"
    assert champion["version"].tolist() == (["1", "2"] if decision == "passed" else ["1"])
    assert all(versions[v]["gate.decision"] == "passed" for v in champion["version"])
    current = registry.current_version(MODEL, registry.CHAMPION)
    assert current == ("2" if decision == "passed" else "1")
    # the retrained run carries the trigger's reason
    run = registry.client().get_run(registry.client().get_model_version(MODEL, "2").run_id)
    assert run.data.tags["trigger"].startswith("drift in scroll_depth")


def test_without_drift_nothing_is_retrained_and_the_champion_stays(run_notebook):
    nb = run_notebook("07", drift=0.0, n_rows=1000, n_new_days=2, model_name=MODEL)
    text = _assert_clean(nb)
    assert "-> retrain: True" not in text
    assert text.count("nothing retrained: no feature drifted") == 2  # scenario A and B
    champion, versions = _registry_state()
    assert sorted(versions) == ["1"]
    assert champion["version"].tolist() == ["1"]
    assert registry.current_version(MODEL, registry.CHAMPION) == "1"


def test_bad_parameter_is_rejected_before_any_side_effect(run_notebook):
    with pytest.raises(PapermillExecutionError) as err:
        run_notebook("07", drift=-1.0)
    assert "parameter drift must be a float from 0.0 to 5.0, got -1.0" in str(err.value)
    assert not (run_notebook.workspace / "mlflow.db").exists()
    assert not (run_notebook.workspace / "datasets").exists()
