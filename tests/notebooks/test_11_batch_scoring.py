"""11_batch_scoring under papermill with other parameters: the prediction partitions it
leaves (one folder per day and version, each with its manifest), the decisions, and a bad
parameter refused before anything is written."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbtools import checkpoints_passed, exercise_names, exercises_solved, output_text, stderr_text
from papermill.exceptions import PapermillExecutionError

from mlops_helpers import scoring
from mlops_helpers.workbook import curriculum

pytestmark = pytest.mark.slow


def test_other_parameters_score_wait_for_labels_and_decide(run_notebook):
    nb = run_notebook(
        "11", seed=7, n_rows=1500, start_day="2026-03-02", label_delay_days=3, shift=1.5,
        concept=0.8, model_name="pm-test-11", show_solutions=True,
    )  # fmt: skip
    assert stderr_text(nb) == ""
    committed = nbformat.read(curriculum.find_notebook("11"), as_version=4)
    assert checkpoints_passed(nb) == checkpoints_passed(committed) > 0
    assert exercises_solved(nb) == exercise_names(nb) == {"11.1", "11.2"}
    assert "Exercise 11.2: solved" in output_text(nb)

    folder = run_notebook.workspace / "batch-scoring" / "s7-r1500-2026-03-02-d3-l3-sh1.5-c0.8"
    predictions = folder / "predictions"
    days = sorted(p.name.removeprefix("day=") for p in (predictions).glob("day=*"))
    assert days == [f"2026-03-{d:02d}" for d in range(5, 11)], "the six new days, scored"
    assert [scoring.scored_versions(predictions, d) for d in days] == [["1"]] * 4 + [["1", "2"]] * 2
    for day in days:
        manifest = json.loads(
            (scoring.prediction_dir(predictions, day, "1") / "_manifest.json").read_text()
        )
        published = json.loads(
            (folder / "unlabelled" / "processed" / f"day={day}" / "_manifest.json").read_text()
        )
        assert manifest["data_fingerprint"] == published["fingerprint"]
        assert manifest["model"] == "pm-test-11" and manifest["rows"] == published["rows_out"]


def test_bad_parameter_is_rejected_before_any_side_effect(run_notebook):
    with pytest.raises(PapermillExecutionError) as err:
        run_notebook("11", label_delay_days=-1)
    assert "parameter label_delay_days must be an int from 0 to 30, got -1" in str(err.value)
    assert not (run_notebook.workspace / "batch-scoring").exists()
    assert not (run_notebook.workspace / "mlflow.db").exists()
