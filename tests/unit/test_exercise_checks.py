"""The exercise machinery: cases hidden from the notebook, the failed case named with its
hint, placeholders counted as not attempted, and the learner's progress recorded."""

from __future__ import annotations

import json
import os

import pytest

from mlops_helpers import checks, exercises
from mlops_helpers.exercises import Case, Exercise, progress
from mlops_helpers.workbook import cli

DOUBLE = Exercise(
    name="99.1",
    task="write double(x)",
    kind="code",
    cases=lambda: [
        Case("a small number", lambda f: f(2), lambda got: got == 4, "2 doubled is 4"),
        Case("a negative one", lambda f: f(-3), lambda got: got == -6, "mind the sign"),
    ],
    hint="return twice the input",
)


@pytest.fixture
def double(monkeypatch, tmp_path):
    """Exercise 99.1 in the catalogue, in a workspace of its own."""
    monkeypatch.setenv("MLOPS_WORKBOOK_HOME", str(tmp_path / "ws"))
    real_get = exercises.get
    monkeypatch.setattr(exercises, "get", lambda n: DOUBLE if n == "99.1" else real_get(n))
    real_catalogue = exercises.catalogue
    monkeypatch.setattr(exercises, "catalogue", lambda: {**real_catalogue(), "99.1": DOUBLE})
    return tmp_path / "ws"


def test_a_right_function_passes_every_case(double, capsys):
    assert checks.exercise("99.1", lambda x: 2 * x) is True
    assert capsys.readouterr().out.startswith("✅ Exercise 99.1: solved (2 cases passed)")


def test_a_wrong_function_is_told_which_case_failed_and_its_hint(double, capsys):
    assert checks.exercise("99.1", lambda x: abs(2 * x)) is False
    out = capsys.readouterr().out
    assert "❌ Exercise 99.1: not yet, case 'a negative one': got 6. Hint: mind the sign" in out


def test_a_function_that_raises_is_not_yet_and_does_not_stop_the_notebook(double, capsys):
    assert checks.exercise("99.1", lambda x: x / 0) is False
    assert "case 'a small number' raised ZeroDivisionError" in capsys.readouterr().out


def test_the_placeholder_and_none_are_not_attempted(double, capsys):
    def placeholder(x):
        raise NotImplementedError("write this")

    assert checks.exercise("99.1", placeholder) is False
    assert checks.exercise("99.1", None) is False
    out = capsys.readouterr().out.splitlines()
    assert out[0] == out[1] == "📝 Exercise 99.1: not attempted yet. Hint: return twice the input"


def test_progress_keeps_the_best_outcome_and_the_last(double):
    checks.exercise("99.1", None)
    assert progress.read()["99.1"]["status"] == "not attempted"
    checks.exercise("99.1", lambda x: 2 * x)
    checks.exercise("99.1", lambda x: x)  # broken again later
    entry = progress.read()["99.1"]
    assert (entry["status"], entry["last"], entry["runs"]) == ("solved", "not yet", 3)


def test_progress_lists_every_exercise_of_the_workbook(double, capsys):
    checks.exercise("99.1", lambda x: 2 * x)
    capsys.readouterr()
    assert cli.main(["progress"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[1] for line in out.splitlines() if line and line[0] in "✅📝❌👀"]
    assert names == list(exercises.catalogue()), "one line per exercise, in order"
    assert "✅  99.1  solved" in out
    assert f"1 of {len(names)} exercises solved by you" in out


def test_progress_json_rows(double, capsys):
    assert cli.main(["progress", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["exercise"]: r["status"] for r in rows}["99.1"] == "not attempted"


def test_a_record_of_another_user_is_not_read(double, monkeypatch):
    checks.exercise("99.1", lambda x: 2 * x)
    monkeypatch.setattr(os, "getuid", lambda: os.geteuid() + 1)  # we pretend to be someone else
    assert progress.read() == {}


def test_a_symlink_in_place_of_the_record_is_not_followed(double, tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps({"99.1": {"status": "solved"}}))
    path = progress.progress_file()
    path.parent.mkdir(parents=True)
    path.symlink_to(target)
    assert progress.read() == {}


def test_a_revealed_solution_is_recorded_apart_from_the_learners_own(double, monkeypatch, capsys):
    answer = lambda x: 2 * x  # noqa: E731
    monkeypatch.setitem(checks._REVEALED, "99.1", answer)
    assert checks.exercise("99.1", answer) is True
    assert "with the worked solution" in capsys.readouterr().out
    assert progress.read()["99.1"]["status"] == "revealed"
