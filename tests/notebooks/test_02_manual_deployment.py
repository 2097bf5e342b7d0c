"""02_manual_deployment under papermill: every manual-deployment failure shows up, whatever the
unseeded training drew, and the checklist of manual steps is left for notebook 09."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbtools import checkpoints_passed, exercise_names, exercises_solved, output_text, stderr_text
from papermill.exceptions import PapermillExecutionError

from mlops_helpers import config

COMMITTED = config.notebooks_dir() / "02_manual_deployment.ipynb"
STEPS = [
    "get the training table",
    "sample and split the rows (no seed)",
    "fit the model",
    "check the held-out AUC by eye",
    "pickle the model into production",
    "start the hand-written server",
    "query the server by hand",
    "stop the server",
]


def test_another_seed_and_a_larger_size(run_notebook):
    nb = run_notebook("02", seed=11, n_rows=6_000, n_days=2, show_solutions=True)
    assert exercises_solved(nb) == exercise_names(nb) != set(), "each exercise takes its solution"
    assert stderr_text(nb) == ""
    committed = nbformat.read(COMMITTED, as_version=4)
    assert checkpoints_passed(nb) == checkpoints_passed(committed) >= 8
    text = output_text(nb)
    for shown in (
        "predictions for the probe rows differ: True",
        "same request, same answer as before: False",
        "server now answers like the worse model: True",
        "marker file after the request: True",
        "port still answers: False",
    ):
        assert shown in text
    assert "127.0.0.1:" not in text and str(run_notebook.workspace) not in text

    deployment = run_notebook.workspace / "manual_deployment"
    checklist = json.loads((deployment / "checklist.json").read_text())
    assert [entry["step"] for entry in checklist] == STEPS
    assert all(entry["seconds"] > 0 for entry in checklist)
    # what the week left behind: one overwritten file, and the marker the pickle wrote
    assert sorted(p.name for p in (deployment / "production").iterdir()) == ["model.pkl"]
    assert (deployment / "pickle_ran_code.txt").read_text() == "written while loading a pickle"


def test_too_little_data_is_rejected_before_anything_is_written(run_notebook):
    with pytest.raises(PapermillExecutionError) as err:
        run_notebook("02", n_rows=300, n_days=2)
    assert "needs at least 1000 impressions (n_rows * n_days), got 600" in str(err.value)
    assert not Path(run_notebook.workspace, "manual_deployment").exists()
