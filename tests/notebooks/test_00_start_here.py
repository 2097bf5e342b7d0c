"""00_start_here under papermill with other parameters."""

from __future__ import annotations

import nbformat
from nbtools import checkpoints_passed, exercise_names, exercises_solved, stderr_text

from mlops_helpers.workbook import curriculum


def test_other_seed_and_size_pass_every_checkpoint(run_notebook):
    nb = run_notebook("00", seed=7, n_rows=5_000, show_solutions=True)
    assert exercises_solved(nb) == exercise_names(nb) != set(), "each exercise takes its solution"
    committed = nbformat.read(curriculum.find_notebook("00"), as_version=4)
    assert stderr_text(nb) == ""
    assert checkpoints_passed(nb) == checkpoints_passed(committed) > 0
