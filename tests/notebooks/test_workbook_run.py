"""`mlops-workbook run`, the command behind `make run`, end to end in a subprocess."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nbformat

from mlops_helpers.workbook import curriculum
from tests.support import CLI, make_notebook


def _cli(workspace: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLOPS_WORKBOOK_HOME": str(workspace)}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=600)


def test_workbook_runs_headless_two_at_a_time_into_a_new_run_folder(tmp_path):
    # Three notebooks stand for the workbook here: nbval and the browser test already run
    # every notebook; this test is about the command, its run folder and its report.
    names = ["00", "02", "03"]
    done = _cli(tmp_path, "run", *names, "--jobs", "2", "--no-progress")
    assert done.returncode == 0, done.stderr
    stems = [curriculum.find_notebook(n).stem for n in names]
    assert "wall clock" in done.stdout
    for stem in stems:
        line = next(ln for ln in done.stdout.splitlines() if ln.startswith(stem))
        assert line.split()[1] == "ok"
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert sorted(p.stem for p in run_dir.glob("*.ipynb")) == stems
    executed = nbformat.read(run_dir / f"{stems[0]}.ipynb", as_version=4)
    assert not [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert f"executed copies in {run_dir}" in done.stdout
    index = (run_dir / "index.html").read_text()
    for stem in stems:
        assert f'href="{stem}.html"' in index and (run_dir / f"{stem}.html").is_file()


def test_a_failing_notebook_names_itself_and_its_cell_and_exits_1(tmp_path):
    bad = tmp_path / "50_bad.ipynb"
    make_notebook(bad, "seed: int = 1", "raise ValueError('extract is empty')")
    done = _cli(tmp_path / "ws", "run", "00", str(bad), "01", "--no-progress", "-p", "seed", "3")
    assert done.returncode == 1
    assert "FAILED 50_bad at cell 2: ValueError: extract is empty" in done.stderr
    rows = [ln.split() for ln in done.stdout.splitlines()]
    status = {r[0]: r[1] for r in rows if len(r) == 3 and r[1] in ("ok", "failed", "skipped")}
    assert status == {"00_start_here": "ok", "50_bad": "failed", "01_manual_etl": "skipped"}
