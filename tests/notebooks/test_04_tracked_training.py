"""04_tracked_training under papermill: reproducible runs recorded in MLflow."""

from __future__ import annotations

import pytest
from nbtools import exercise_names, exercises_solved, stderr_text
from papermill.exceptions import PapermillExecutionError

from mlops_helpers import tracking


def _runs(experiment):
    import mlflow

    tracking.configure_tracking(experiment=experiment)
    return mlflow.search_runs(experiment_names=[experiment])


def test_other_seed_and_size_gives_two_identical_tracked_runs(run_notebook):
    nb = run_notebook("04", seed=7, n_rows=5_000, experiment="pm_test", show_solutions=True)
    assert exercises_solved(nb) == exercise_names(nb) != set(), "each exercise takes its solution"
    assert stderr_text(nb) == ""
    runs = _runs("pm_test")
    same = runs[runs["params.seed"] == "7"]
    assert len(same) >= 2
    metrics = same[[c for c in same.columns if c.startswith("metrics.")]]
    assert (metrics.nunique() == 1).all(), "same data + params + seed must give identical metrics"
    assert same["tags.data_fingerprint"].nunique() == 1
    assert metrics["metrics.roc_auc"].iloc[0] > 0.6
    db = run_notebook.workspace / "mlflow.db"
    assert db.is_file(), "the default store is the workspace's sqlite database"


def test_bad_parameter_is_rejected_before_training(run_notebook):
    with pytest.raises(PapermillExecutionError) as err:
        run_notebook("04", C=-1.0)
    assert "parameter C must be a float greater than 0, got -1.0" in str(err.value)
    assert not (run_notebook.workspace / "mlflow.db").exists()
