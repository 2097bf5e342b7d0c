"""06_notebook_pipeline under papermill with another seed: the pipeline, the batch on Dask,
the MLflow runs, and nothing on stderr."""

from __future__ import annotations

import pandas as pd
import pytest
from nbtools import checkpoints_passed, exercise_names, exercises_solved, output_text, stderr_text

from mlops_helpers import tracking

pytestmark = pytest.mark.slow


def test_other_seed_runs_pipeline_and_backfill_and_tracks_each_step(run_notebook):
    nb = run_notebook("06", seed=7, n_days=2, start_day="2026-02-10", show_solutions=True)
    assert exercises_solved(nb) == exercise_names(nb) != set(), "each exercise takes its solution"

    assert stderr_text(nb) == ""
    assert checkpoints_passed(nb) == 5
    assert "steps this notebook runs: etl -> train" in output_text(nb)
    ws = run_notebook.workspace
    (run_dir,) = (ws / "pipelines" / "daily").iterdir()
    assert sorted(p.name for p in run_dir.glob("*.ipynb")) == ["01_etl.ipynb", "02_train.ipynb"]
    (results,) = (ws / "batches").glob("backfill_06_*/results.csv")
    table = pd.read_csv(results)
    assert list(table["start_day"]) == ["2026-02-08", "2026-02-09"]
    assert set(table["status"]) == {"done"}, "the notebook's rerun found both days complete"
    assert all((results.parent / report).is_file() for report in table["report"])
    assert len(list((ws / "by_hand").glob("*/*.ipynb"))) == 2

    import mlflow

    tracking.configure_tracking(experiment="pipelines")
    steps = mlflow.search_runs(experiment_names=["pipelines"], filter_string="tags.status = 'ok'")
    assert {"etl", "train"} <= set(steps["tags.mlflow.runName"]), "one nested run per step"
    trained = mlflow.search_runs(experiment_names=["daily_pipeline"])
    assert set(trained["params.seed"]) == {"7", "8"}
