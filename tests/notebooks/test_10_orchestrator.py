"""10_orchestrator under papermill with other parameters: the backfill's partitions, the
sensor's decisions, the retry, read back from the Dagster instance and the registry."""

from __future__ import annotations

import dagster as dg
import nbformat
import pytest
from nbtools import checkpoints_passed, exercise_names, exercises_solved, output_text, stderr_text
from papermill.exceptions import PapermillExecutionError

from mlops_helpers import registry, tracking
from mlops_helpers.workbook import curriculum

pytestmark = pytest.mark.slow

MODEL = "pm-test-10"


def test_other_parameters_backfill_sense_drift_retry_and_record_it_all(run_notebook):
    nb = run_notebook(
        "10", seed=7, n_days=3, window=1, start_day="2026-03-02", model_name=MODEL,
        show_solutions=True,
    )  # fmt: skip
    assert stderr_text(nb) == ""
    committed = nbformat.read(curriculum.find_notebook("10"), as_version=4)
    assert checkpoints_passed(nb) == checkpoints_passed(committed) > 0
    assert exercises_solved(nb) == exercise_names(nb) == {"10.1", "10.2"}
    text = output_text(nb)
    assert "3 partitions ran; 2 trained (the first 1 only published)" in text
    assert "SkipReason : calm:" in text
    assert "run requested for 2026-03-05" in text, "the first drifted day fires"
    assert "already requested a run (cursor); nothing new" in text
    assert "START -> UP_FOR_RETRY -> RESTARTED" in text

    folder = run_notebook.workspace / "dagster-lessons" / "s7-r500-2026-03-02-d3-w1"
    instance = dg.DagsterInstance.from_config(str(folder))
    published = instance.get_materialized_partitions(dg.AssetKey("published_day"))
    assert {"2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05", "2026-03-06"} == published
    runs = instance.get_runs()
    assert all(r.is_success for r in runs), "every run of the lesson succeeded, the retry too"
    assert any(r.tags.get("mlops/trigger", "").startswith("drift in") for r in runs)
    tracking.configure_tracking(experiment="orchestrator")
    versions = registry.client().search_model_versions(f"name = '{MODEL}'")
    assert len(versions) >= 3, "two backfill days and at least one drifted day trained"
    assert not (run_notebook.workspace / "dagster" / "inject-failure" / "published_day").exists()


def test_bad_parameter_is_rejected_before_any_side_effect(run_notebook):
    with pytest.raises(PapermillExecutionError) as err:
        run_notebook("10", window=0)
    assert "parameter window must be an int from 1 to 60, got 0" in str(err.value)
    assert not (run_notebook.workspace / "dagster-lessons").exists()
    assert not (run_notebook.workspace / "mlflow.db").exists()
