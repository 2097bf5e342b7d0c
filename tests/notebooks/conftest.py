"""Fixtures for running the committed notebooks under papermill with other parameters."""

from __future__ import annotations

import nbformat
import pytest

from mlops_helpers.workbook import curriculum, execute


@pytest.fixture
def run_notebook(monkeypatch, tmp_path):
    """Execute a notebook with papermill in a fresh workspace; return the executed notebook.

    The kernel inherits ``MLOPS_WORKBOOK_HOME``, so everything it writes lands in
    ``tmp_path / "ws"``, where the test can inspect it.
    """
    workspace = tmp_path / "ws"
    monkeypatch.setenv("MLOPS_WORKBOOK_HOME", str(workspace))

    def run(name: str, **parameters) -> nbformat.NotebookNode:
        notebook = curriculum.find_notebook(name)
        output = tmp_path / f"{notebook.stem}.out.ipynb"
        execute.execute_notebook(notebook, output, parameters)
        return nbformat.read(output, as_version=4)

    run.workspace = workspace
    return run
