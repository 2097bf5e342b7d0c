"""Names that become folders (pipeline, step, grid, experiment) stay inside the workspace:
a name holding a path is refused with exit 2 before anything is written, anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_helpers.parameters import NAME_RULE, ParameterError
from mlops_helpers.workbook import batch, cli, pipeline
from tests.support import make_notebook


@pytest.fixture
def workspace(monkeypatch, tmp_path) -> Path:
    ws = tmp_path / "deep" / "ws"
    monkeypatch.setenv("MLOPS_WORKBOOK_HOME", str(ws))
    return ws


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder outside the workspace holding a file a careless name could overwrite."""
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "results.csv").write_text("mine, do not touch\n")
    return folder


def tiny_notebook(folder: Path) -> Path:
    """A notebook with one parameter (``seed``) that does nothing else."""
    return make_notebook(folder / "tiny.ipynb", "seed: int = 1  # random seed")


def untouched(outside: Path) -> bool:
    """The folder outside the workspace holds exactly what it held before."""
    return [p.name for p in outside.iterdir()] == ["results.csv"] and (
        outside / "results.csv"
    ).read_text() == "mine, do not touch\n"


def cli_run(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


def pipeline_file(folder: Path, name: str, step: str = "a") -> Path:
    tiny_notebook(folder)
    path = folder / "pipe.yaml"
    path.write_text(f"name: '{name}'\nsteps:\n  - name: '{step}'\n    notebook: tiny.ipynb\n")
    return path


def test_pipeline_name_holding_a_path_exits_2_and_writes_nowhere(
    capsys, workspace, outside, tmp_path
):
    for name in (str(outside), "../../../precious"):
        path = pipeline_file(tmp_path, name)
        code, err = cli_run(capsys, "pipeline", str(path), "--no-progress")
        assert code == 2, err
        assert f"pipe.yaml:1: pipeline name must be {NAME_RULE}, got {name!r}" in err
        assert untouched(outside)
        assert not workspace.exists()


def test_step_name_holding_a_path_exits_2_and_writes_nowhere(capsys, workspace, tmp_path):
    path = pipeline_file(tmp_path, "fine", step="../../../../escaped")
    code, err = cli_run(capsys, "pipeline", str(path), "--no-progress")
    assert code == 2, err
    assert f"pipe.yaml:3: step name must be {NAME_RULE}, got '../../../../escaped'" in err
    assert not list(tmp_path.rglob("*escaped*")) and not workspace.exists()


def test_pipeline_file_without_name_whose_stem_is_no_name_says_to_add_one(
    capsys, workspace, tmp_path
):
    tiny_notebook(tmp_path)
    path = tmp_path / "my daily.yaml"
    path.write_text("steps:\n  - name: a\n    notebook: tiny.ipynb\n")
    code, err = cli_run(capsys, "pipeline", str(path), "--no-progress")
    assert code == 2, err
    assert "has no `name:` and its file name 'my daily' is not a name" in err
    assert "add a `name:` line" in err and not workspace.exists()


def test_grid_name_holding_a_path_never_overwrites_results_outside(
    capsys, workspace, outside, tmp_path
):
    tiny_notebook(tmp_path)
    path = tmp_path / "grid.yaml"
    path.write_text(f"name: {outside}\nnotebook: tiny.ipynb\ngrid:\n  seed: [1]\n")
    code, err = cli_run(capsys, "batch", "--grid", str(path), "--workers", "1", "--no-progress")
    assert code == 2, err
    assert f"grid.yaml:1: grid name must be {NAME_RULE}, got '{outside}'" in err
    assert untouched(outside), "results.csv outside the workspace was overwritten"
    assert not workspace.exists()


def test_grid_file_without_name_whose_stem_is_no_name_says_to_add_one(capsys, workspace, tmp_path):
    tiny_notebook(tmp_path)
    path = tmp_path / "back fill.yaml"
    path.write_text("notebook: tiny.ipynb\ngrid:\n  seed: [1]\n")
    code, err = cli_run(capsys, "batch", "--grid", str(path), "--no-progress")
    assert code == 2, err
    assert "has no `name:` and its file name 'back fill' is not a name" in err
    assert not workspace.exists()


def test_experiment_parameter_holding_a_path_exits_2(capsys, workspace, outside):
    # Held before this change too (RULES): kept here so every folder name has its test.
    code, err = cli_run(capsys, "run", "04", "-p", "experiment", str(outside))
    assert code == 2, err
    assert f"parameter experiment must be {NAME_RULE}" in err
    assert untouched(outside) and not workspace.exists()


@pytest.mark.parametrize("name", ["ABSOLUTE", "../up", "a/b", "..", ""])
def test_folder_makers_refuse_a_name_that_leaves_the_workspace(workspace, tmp_path, name):
    # Pipeline and Batch built by hand (as notebook 06 does), bypassing the file checks.
    name = str(tmp_path / "elsewhere") if name == "ABSOLUTE" else name
    pipe = pipeline.Pipeline(name, tmp_path / "p.yaml", [])
    with pytest.raises(ParameterError, match="pipeline name must be"):
        pipeline.new_run_dir(pipe)
    with pytest.raises(ParameterError, match="pipeline name must be"):
        pipeline.latest_run_dir(pipe)
    grid = batch.Batch(name, tmp_path / "g.yaml", [])
    with pytest.raises(ParameterError, match="grid name must be"):
        _ = grid.out_dir
    with pytest.raises(ParameterError, match="grid name must be"):
        batch.run_batch(grid, progress=False)
    assert not workspace.exists() and not (tmp_path / "elsewhere").exists()
