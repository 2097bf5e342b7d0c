"""checks: checkpoints stop a notebook with the fix; exercises report and never stop it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_helpers import checks, exercises
from mlops_helpers.checks import CheckpointError, checkpoint, exercise


def test_checkpoint_prints_what_held(capsys):
    checkpoint(True, "rows in = rows out + rows quarantined", "rerun the ETL")
    assert capsys.readouterr().out == "✅ Checkpoint: rows in = rows out + rows quarantined\n"


def test_failed_checkpoint_raises_with_the_fix(capsys):
    with pytest.raises(CheckpointError) as err:
        checkpoint(False, "the partition is published", "run etl.run_days first")
    assert str(err.value) == (
        "Checkpoint failed: the partition is published. run etl.run_days first"
    )
    assert capsys.readouterr().out == ""


def test_failed_checkpoint_without_a_fix():
    with pytest.raises(CheckpointError, match=r"^Checkpoint failed: metrics match$"):
        checkpoint(False, "metrics match")


def test_checkpoint_error_is_an_assertion_error():
    """So a notebook run (papermill, nbval) reports it as a failed assertion."""
    assert issubclass(CheckpointError, AssertionError)


def test_checkpoint_accepts_numpy_booleans(capsys):
    checkpoint(np.bool_(True), "numpy says yes")
    assert "numpy says yes" in capsys.readouterr().out
    with pytest.raises(CheckpointError):
        checkpoint(np.bool_(False), "numpy says no")


@pytest.fixture(autouse=True)
def value_exercises(monkeypatch):
    """Two value exercises in the catalogue, checked against the ``expected`` they are given."""
    made = {
        "3a": exercises.value_exercise(
            "3a", "count", "count the quarantined rows", expected=lambda expected: expected
        ),
        "4b": exercises.value_exercise("4b", "list", "a hint", expected=lambda expected: expected),
    }
    real_get = exercises.get
    monkeypatch.setattr(exercises, "get", lambda name: made.get(name) or real_get(name))


def test_exercise_not_attempted(capsys):
    assert exercise("3a", None, expected=42) is False
    out = capsys.readouterr().out
    assert "Exercise 3a: not attempted yet" in out
    assert "Hint: count the quarantined rows" in out


def test_exercise_solved(capsys):
    assert exercise("3a", 42, expected=42) is True
    out = capsys.readouterr().out
    assert "Exercise 3a: solved" in out
    assert "Hint" not in out


def test_exercise_wrong_answer_shows_it_and_the_hint(capsys):
    assert exercise("3a", 41, expected=42) is False
    out = capsys.readouterr().out
    assert "Exercise 3a: not yet, got 41" in out
    assert "Hint: count the quarantined rows" in out
    assert "42" not in out  # the expected answer is not given away


@pytest.mark.parametrize(
    "answer",
    [
        np.array([1, 2, 3]),
        pd.Series([1, 2, 3]),
        pd.DataFrame({"a": [1, 2]}),
        "a string",
        3.5,
        [1, 2],
        {"x": 1},
    ],
    ids=["ndarray", "series", "dataframe", "str", "float", "list", "dict"],
)
def test_exercise_never_raises_whatever_the_answer(answer, capsys):
    assert exercise("4b", answer, expected=[1, 2, 3]) in (True, False)
    assert "Exercise 4b" in capsys.readouterr().out


@pytest.mark.parametrize(
    "answer",
    [np.array([1, 2, 3]), pd.Series([1, 2, 3]), [1, 2, 3]],
    ids=["ndarray", "series", "list"],
)
def test_an_array_like_answer_with_the_right_values_is_solved(answer, capsys):
    assert exercise("4b", answer, expected=[1, 2, 3]) is True
    assert "Exercise 4b: solved" in capsys.readouterr().out


def test_an_array_like_answer_with_wrong_values_is_not_yet(capsys):
    assert exercise("4b", np.array([1, 2, 4]), expected=[1, 2, 3]) is False
    assert "Exercise 4b: not yet" in capsys.readouterr().out


@pytest.fixture
def solutions(tmp_path, monkeypatch):
    """A solutions folder with one file, in place of the project's."""
    folder = tmp_path / "solutions"
    folder.mkdir()
    (folder / "04_sample.py").write_text(
        "def exercise_04_1(table):\n    return sorted(table)\n", encoding="utf-8"
    )
    monkeypatch.setattr(checks, "solutions_dir", lambda: folder)
    return folder


def test_solution_computes_the_answer_from_the_notebook_values(solutions):
    assert checks.solution("04.1", table=[3, 1, 2]) == [1, 2, 3]


def test_solution_of_an_exercise_without_a_function_names_the_missing_function(solutions):
    with pytest.raises(LookupError, match="has no function exercise_04_2 for exercise 04.2"):
        checks.solution("04.2", table=[])


def test_solution_of_a_notebook_without_a_file_names_the_expected_file(solutions):
    with pytest.raises(FileNotFoundError, match=r"expected solutions/07_<notebook name>\.py"):
        checks.solution("07.1")


def test_solution_rejects_a_malformed_exercise_name(solutions):
    with pytest.raises(ValueError, match="exercise name must look like '04.1', got 'four'"):
        checks.solution("four")
