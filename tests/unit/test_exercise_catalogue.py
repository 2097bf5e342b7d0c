"""The exercises the notebooks check, the catalogue `mlops-workbook progress` lists, and
the worked solutions agree; every lesson notebook has an exercise where the learner writes
code; no committed notebook computes an exercise's expected answer in plain sight."""

from __future__ import annotations

import ast
import inspect
import re

import nbformat
import pytest

from mlops_helpers import checks, exercises
from mlops_helpers.config import notebooks_dir

NOTEBOOKS = sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
CHECKED = re.compile(r'\bexercise\(\s*"(\d\d\.\d+)"(?P<rest>[^)]*)')


def checked_in(path) -> dict[str, str]:
    """Exercise name -> the rest of its check call, for each check in a notebook's code."""
    nb = nbformat.read(path, as_version=4)
    return {
        m.group(1): m.group("rest")
        for cell in nb.cells
        if cell.cell_type == "code"
        for m in CHECKED.finditer(cell.source)
    }


def test_every_exercise_a_notebook_checks_is_in_the_catalogue_and_back():
    in_notebooks = {name for path in NOTEBOOKS for name in checked_in(path)}
    assert in_notebooks == set(exercises.catalogue())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_each_check_gets_its_cases_from_the_catalogue_not_from_the_cell(path):
    """The old form exercise(name, answer, expected, hint) put the answer in the cell."""
    nb = nbformat.read(path, as_version=4)
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "exercise":
                name = ast.literal_eval(node.args[0])
                assert len(node.args) == 2, (
                    f"{path.name}: exercise {name} passes its expected value"
                )
                assert not {k.arg for k in node.keywords} & {"expected", "hint"}, name


@pytest.mark.parametrize("path", NOTEBOOKS[1:], ids=lambda p: p.stem[:2])
def test_every_lesson_notebook_has_an_exercise_where_the_learner_writes_code(path):
    kinds = {exercises.get(name).kind for name in checked_in(path)}
    assert "code" in kinds, f"{path.name} has no exercise of kind 'code'"


@pytest.mark.parametrize("name", list(exercises.catalogue()))
def test_every_exercise_has_a_worked_solution_and_a_task(name):
    item = exercises.get(name)
    assert item.task and item.hint, "progress lists the task; a failed check shows the hint"
    solved = checks.solution(name) if item.kind == "code" else None
    if item.kind == "code":
        assert callable(solved) or isinstance(solved, str), (
            "the function (or text) the learner writes"
        )
        if callable(solved):
            assert "NotImplementedError" not in inspect.getsource(solved)
