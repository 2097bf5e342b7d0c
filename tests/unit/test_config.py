"""config: where the workspace is, that nothing is created on import, paths shown relative."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mlops_helpers
from mlops_helpers import config

# Every module of the package, lessons and machinery: none may create anything on import.
MODULES = ("mlops_helpers",) + tuple(
    sorted(m.name for m in pkgutil.walk_packages(mlops_helpers.__path__, "mlops_helpers."))
)


def test_workspace_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "ws"))
    assert config.workspace_path() == (tmp_path / "ws").resolve()


def test_relative_home_is_made_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(config.HOME_ENV, "rel/ws")
    assert config.workspace_path() == (tmp_path / "rel" / "ws").resolve()
    assert config.workspace_path().is_absolute()


@pytest.mark.parametrize("value", [None, "", "   "])
def test_workspace_defaults_to_project_folder(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(config.HOME_ENV, raising=False)
    else:
        monkeypatch.setenv(config.HOME_ENV, value)
    root = config.project_root()
    assert (root / "pyproject.toml").is_file()
    assert (root / "mlops_helpers" / "config.py").is_file()
    assert config.workspace_path() == root / "workspace"
    assert config.notebooks_dir() == root / "notebooks"


def test_workspace_path_does_not_create_anything(monkeypatch, tmp_path):
    monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "ws"))
    config.workspace_path()
    assert not (tmp_path / "ws").exists()


def test_importing_the_package_creates_nothing(tmp_path):
    home = tmp_path / "never-created"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {**os.environ, config.HOME_ENV: str(home)}
    code = "import " + ", ".join(MODULES)
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert not home.exists(), "importing mlops_helpers created the workspace"
    assert list(cwd.iterdir()) == [], "importing mlops_helpers wrote into the working directory"


def test_ensure_workspace_creates_on_demand(monkeypatch, tmp_path):
    monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "ws"))
    assert not (tmp_path / "ws").exists()
    made = config.ensure_workspace("datasets", "one")
    assert made == (tmp_path / "ws" / "datasets" / "one").resolve()
    assert made.is_dir()
    assert config.ensure_workspace("datasets", "one") == made  # idempotent
    assert config.ensure_workspace() == (tmp_path / "ws").resolve()


@pytest.mark.parametrize(
    ("under", "why"),
    [("", "it is a file, not a folder"), ("ws", "a part of it is a file, not a folder")],
)
def test_a_workspace_where_a_file_is_fails_naming_variable_value_and_fix(
    monkeypatch, tmp_path, under, why
):
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    home = str(blocker / under) if under else str(blocker)
    monkeypatch.setenv(config.HOME_ENV, home)
    for call in (config.check_workspace, config.ensure_workspace):
        with pytest.raises(config.WorkspaceError) as err:
            call()
        assert str(err.value) == (
            f"MLOPS_WORKBOOK_HOME={home} is not a usable workspace: {why}; set "
            "MLOPS_WORKBOOK_HOME to a folder you can write, e.g. export "
            "MLOPS_WORKBOOK_HOME=$HOME/mlops-workspace"
        )
    assert blocker.read_text() == "mine"


def test_check_workspace_creates_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "new" / "ws"))
    assert config.check_workspace() == (tmp_path / "new" / "ws").resolve()
    assert list(tmp_path.iterdir()) == []


def test_show_path_inside_workspace(monkeypatch, tmp_path):
    monkeypatch.setenv(config.HOME_ENV, str(tmp_path))
    assert config.show_path(tmp_path / "raw" / "day=2024-01-01") == "<workspace>/raw/day=2024-01-01"
    assert config.show_path(tmp_path) == "<workspace>"


def test_show_path_inside_project(monkeypatch, tmp_path):
    monkeypatch.setenv(config.HOME_ENV, str(tmp_path))
    root = config.project_root()
    assert config.show_path(root / "pyproject.toml") == "<project>/pyproject.toml"


def test_show_path_prefers_workspace_when_it_is_inside_the_project(monkeypatch):
    monkeypatch.delenv(config.HOME_ENV, raising=False)
    path = config.project_root() / "workspace" / "mlflow.db"
    assert config.show_path(path) == "<workspace>/mlflow.db"


def test_show_path_elsewhere_shows_only_the_name(monkeypatch, tmp_path):
    monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "ws"))
    assert config.show_path(tmp_path / "other" / "file.csv") == "file.csv"


_part = st.text(
    alphabet=st.characters(codec="ascii", categories=("L", "N")) | st.sampled_from("._- ="),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))


@settings(max_examples=60, deadline=None)
@given(
    base=st.sampled_from(["workspace", "project", "tmp", "root"]),
    parts=st.lists(_part, max_size=4),
)
def test_show_path_never_prints_an_absolute_path(base, parts):
    bases = {
        "workspace": config.workspace_path(),
        "project": config.project_root(),
        "tmp": Path("/tmp/some/where"),
        "root": Path("/"),
    }
    path = bases[base].joinpath(*parts)
    shown = config.show_path(path)
    assert not Path(shown).is_absolute()
    assert str(config.workspace_path()) not in shown
    assert str(config.project_root()) not in shown


def test_kernels_nobody_watches_are_marked_headless_so_notebooks_skip_progress_bars(monkeypatch):
    monkeypatch.delenv(config.HEADLESS_ENV, raising=False)
    assert config.interactive(), "a learner's JupyterLab kernel shows progress bars"
    config.mark_headless()
    assert not config.interactive()
    assert os.environ[config.HEADLESS_ENV] == "1", "kernels started now inherit it"
