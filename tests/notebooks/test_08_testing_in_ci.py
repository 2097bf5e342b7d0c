"""08_testing_in_ci under papermill with another seed, more rows, a blocking fault and the
solutions shown: nbval strict fails then passes, lax compares only marked cells, papermill
injects parameters, the data and behavioural tests hold, every exercise is solved."""

from __future__ import annotations

import nbformat
import pytest
from nbtools import checkpoints_passed, exercise_names, exercises_solved, output_text, stderr_text
from papermill.exceptions import PapermillExecutionError

from mlops_helpers.workbook import curriculum

pytestmark = pytest.mark.slow


def test_other_parameters_with_solutions(run_notebook):
    # an earlier run's sample folder, with a notebook this run must not test or keep
    stale = run_notebook.workspace / "08_testing_in_ci" / "sample" / "sample_old.ipynb"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    nb = run_notebook("08", seed=7, n_rows=1500, fault="schema_change", show_solutions=True)

    assert stderr_text(nb) == ""
    committed = nbformat.read(curriculum.find_notebook("08"), as_version=4)
    assert checkpoints_passed(nb) == checkpoints_passed(committed) == 9
    text = output_text(nb)
    # strict mode fails on the volatile cell, both fixes pass, lax compares marked cells only
    assert "exit code 1: 7 passed, 1 failed" in text
    assert "FAILED sample.ipynb::Cell 2: output differs in stdout" in text
    assert "exit code 0: 4 passed" in text
    assert "FAILED sample_tampered.ipynb::Cell 1" in text
    assert "FAILED sample_tampered.ipynb::Cell 3" in text
    assert "FAILED sample_tampered.ipynb::Cell 2" not in text
    # papermill injected the parameter; the data test names the blocking fault
    assert "'sum of squares 1..10: 385'" in text
    assert "the ETL blocked a day" in text and "schema changed" in text
    assert exercises_solved(nb) == exercise_names(nb) == {"08.1", "08.2", "08.3"}
    (sample_dir,) = (run_notebook.workspace / "08_testing_in_ci").iterdir()
    assert sample_dir.name == "sample", "one folder, the same every run, emptied first"
    assert {p.name for p in sample_dir.glob("*.ipynb")} == {
        "sample.ipynb",
        "sample_tagged.ipynb",
        "sample_tampered.ipynb",
        "sample_n10.ipynb",
    }


def test_too_few_rows_stops_before_anything_is_written(run_notebook):
    with pytest.raises(PapermillExecutionError) as err:
        run_notebook("08", n_rows=50)
    assert "parameter n_rows must be at least 200 in this notebook" in str(err.value)
    assert not run_notebook.workspace.exists() or not any(run_notebook.workspace.iterdir())
