"""Committed notebooks are clean: kernel, one parameters cell, run top to bottom, no errors,
no stderr, no volatile text (absolute paths, run ids, addresses) in compared outputs."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import check_notebooks  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_workbook_has_its_notebooks():
    stems = [p.stem.split("_")[0] for p in NOTEBOOKS]
    assert {"00", "01", "03", "04"} <= set(stems)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean(notebook):
    assert check_notebooks.problems(notebook) == []


def test_checker_flags_a_dirty_notebook(tmp_path):
    dirty = tmp_path / "99_dirty.ipynb"
    dirty.write_text(
        '{"cells": [{"cell_type": "code", "execution_count": 2, "metadata": {}, "source": "x",'
        ' "outputs": [{"output_type": "stream", "name": "stdout", "text": "saved /home/me/x.csv"},'
        ' {"output_type": "error", "ename": "KeyError", "evalue": "", "traceback": []}]},'
        ' {"cell_type": "code", "execution_count": 1, "metadata": {}, "source": "", "outputs": []}],'
        ' "metadata": {"kernelspec": {"name": "other"}}, "nbformat": 4, "nbformat_minor": 5}'
    )
    found = "\n".join(check_notebooks.problems(dirty))
    for expected in ("kernelspec", "parameters", "H1", "top to bottom", "KeyError", "/home/me"):
        assert expected in found


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_exercise_has_a_worked_solution_and_a_switch_to_reveal_it(notebook):
    import ast

    import nbformat
    from nbtools import exercise_names

    nb = nbformat.read(notebook, as_version=4)
    names = exercise_names(nb)
    assert names, f"{notebook.name} has no exercise checked with checks.exercise"
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert "show_solutions: bool = False" in params.source
    solutions = ROOT / "solutions" / f"{notebook.stem}.py"
    assert solutions.is_file(), f"missing {solutions.relative_to(ROOT)}"
    defined = {  # a function, or text (a YAML step) assigned to the name
        name
        for node in ast.parse(solutions.read_text()).body
        for name in (
            [node.name]
            if isinstance(node, ast.FunctionDef)
            else [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
        )
    }
    wanted = {"exercise_" + n.replace(".", "_") for n in names}
    assert wanted <= defined, f"{solutions.name} lacks {sorted(wanted - defined)}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_line_of_the_parameters_cell(notebook):
    import nbformat

    from mlops_helpers import parameters

    nb = nbformat.read(notebook, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    declared = [ln.split(":")[0] for ln in params.source.splitlines() if ln.strip()]
    assert list(parameters.notebook_parameters(notebook)) == declared, (
        "papermill could not parse a parameter line; keep 'name: type = value  # help' "
        "and no '=' in the help text"
    )


MANUAL = ROOT / "mlops_helpers" / "manual.py"
MANUAL_NOTEBOOKS = ("01_manual_etl.ipynb", "02_manual_deployment.ipynb")


def top_level_definitions(tree: ast.Module) -> dict[str, str]:
    """Each top-level function, class and constant of ``tree``, by name, as its AST dump."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            found[node.name] = ast.dump(node)
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = ast.dump(node.value)
    return found


def notebook_definitions(path: Path) -> dict[str, str]:
    """The top-level definitions of a notebook's code cells (a later cell's wins)."""
    found = {}
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code":
            found.update(top_level_definitions(ast.parse(cell.source)))
    return found


def lockstep(manual_source: str) -> tuple[list[str], list[str]]:
    """(names that differ and are not declared adapted, declared names that do not differ)."""
    docstring = ast.get_docstring(ast.parse(manual_source))
    promise = docstring.split("Lockstep", 1)[1]
    adapted = set(re.findall(r"``(\w+)``", promise.split("except these", 1)[1]))
    ours = top_level_definitions(ast.parse(manual_source))
    differ = set()
    for name in MANUAL_NOTEBOOKS:
        theirs = notebook_definitions(ROOT / "notebooks" / name)
        differ |= {n for n in ours.keys() & theirs.keys() if ours[n] != theirs[n]}
    return sorted(differ - adapted), sorted(adapted - differ)


def test_manual_py_keeps_the_manual_notebooks_code_as_its_docstring_promises():
    undeclared, stale = lockstep(MANUAL.read_text())
    assert undeclared == [], f"manual.py and notebook 01/02 differ in {undeclared}; align them"
    assert stale == [], f"manual.py declares {stale} adapted, but they match: drop them"


def test_lockstep_notices_a_change_on_the_module_side():
    source = MANUAL.read_text().replace(
        'checklist.append({"day": day,', 'checklist.append({"d": day,'
    )
    assert lockstep(source)[0] == ["tick"]
