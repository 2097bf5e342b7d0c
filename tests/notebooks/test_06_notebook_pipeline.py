"""06_notebook_pipeline under papermill with another seed: the pipeline, the batch on Dask,
the MLflow runs, and nothing on stderr."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from nbtools import checkpoints_passed, exercise_names, exercises_solved, output_text, stderr_text

from mlops_helpers import tracking

pytestmark = pytest.mark.slow


def test_other_seed_runs_pipeline_and_backfill_and_tracks_each_step(run_notebook):
    # what an earlier run with the same parameters left in the folders this run reuses
    ws = run_notebook.workspace
    tag = "s7-r500-2026-02-10-d2"
    stale = [
        ws / "pipelines" / "daily" / f"06-{tag}" / "01_etl_old.ipynb",
        ws / "batches" / f"backfill_06_{tag}" / "index_old.html",
        ws / "by_hand" / tag / "03_2026-01-01.ipynb",
    ]
    for path in stale:
        path.parent.mkdir(parents=True)
        path.write_text("{}")

    nb = run_notebook("06", seed=7, n_days=2, start_day="2026-02-10", show_solutions=True)
    assert exercises_solved(nb) == exercise_names(nb) != set(), "each exercise takes its solution"

    assert stderr_text(nb) == ""
    assert checkpoints_passed(nb) == 7
    text = output_text(nb)
    assert "steps this notebook runs: etl -> train -> deploy" in text
    assert f"folders in the workspace are named {tag}" in text
    assert "is reproduced from the partitions it recorded" in text, "seed noise checkpointed"
    assert "train read exactly the partitions ETL published" in text
    assert "which no step produces" in text and "the step order has a cycle" in text
    assert not any(p.exists() for p in stale), "the folders a rerun reuses are emptied first"
    (run_dir,) = (ws / "pipelines" / "daily").iterdir()
    assert run_dir.name == f"06-{tag}", "the run folder is named by the parameters, not the time"
    assert {p.name for p in (ws / "batches").iterdir()} == {f"backfill_06_{tag}"}
    assert {p.name for p in (ws / "by_hand").iterdir()} == {tag}
    executed = sorted(p.name for p in run_dir.glob("*.ipynb"))
    assert executed == ["01_etl.ipynb", "02_train.ipynb", "03_deploy.ipynb"]
    state = json.loads((run_dir / "pipeline.json").read_text())["steps"]
    assert state["train"]["inputs"]["train"] == state["etl"]["outputs"]["train"]
    assert [p["day"] for p in state["etl"]["outputs"]["gate"]] == ["2026-02-11"]
    assert state["deploy"]["inputs"]["model_version"] == state["train"]["outputs"]["model_version"]
    (results,) = (ws / "batches").glob("backfill_06_*/results.csv")
    table = pd.read_csv(results)
    assert list(table["start_day"]) == ["2026-02-08", "2026-02-09"]
    assert set(table["status"]) == {"done"}, "the notebook's rerun found both days complete"
    assert all((results.parent / report).is_file() for report in table["report"])
    assert len(list((ws / "by_hand").glob("*/*.ipynb"))) == 2

    import mlflow

    tracking.configure_tracking(experiment="pipelines")
    steps = mlflow.search_runs(experiment_names=["pipelines"], filter_string="tags.status = 'ok'")
    assert {"etl", "train", "deploy"} <= set(steps["tags.mlflow.runName"]), "a run per step"
    trained = mlflow.search_runs(experiment_names=["daily_pipeline"])
    assert list(trained["params.seed"]) == ["7"], "the train step fits one model"
