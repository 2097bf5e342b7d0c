"""Tiny notebooks written into a test's tmp_path, for tests whose point is the runner.

Each one appends a line to ``<workspace>/ran.log`` when it runs (so a test can count
what ran), and fails on purpose when ``n_rows`` is 13: a value that passes the type
check and the parameter rules but fails inside the notebook, as a real bug would.
"""

from __future__ import annotations

import collections
from pathlib import Path

import nbformat

UNLUCKY = 13
PARAMETERS = (
    "seed: int = 1  # random seed\n"
    "n_rows: int = 10  # rows; 13 fails inside the notebook\n"
    "pause: float = 0.0  # seconds to sleep, to keep a worker busy\n"
)


def write_notebook(path: Path, label: str) -> Path:
    """A notebook that logs ``label`` and its parameters, sleeps ``pause``, fails on 13."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import os, pathlib, time\n"
            "log = pathlib.Path(os.environ['MLOPS_WORKBOOK_HOME']) / 'ran.log'\n"
            "log.parent.mkdir(parents=True, exist_ok=True)\n"
            "with open(log, 'a') as f:\n"
            f"    f.write(f'{label} seed={{seed}} n_rows={{n_rows}}\\n')\n"
            "time.sleep(pause)"
        ),
        nbformat.v4.new_code_cell(
            f"if n_rows == {UNLUCKY}:\n"
            f"    raise ValueError(f'n_rows {{n_rows}} is unlucky: this step fails on purpose')\n"
            "print(f'done: seed {seed}, n_rows {n_rows}')"
        ),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def ran(workspace: Path) -> collections.Counter:
    """How many times each ``label seed=.. n_rows=..`` ran in ``workspace``."""
    log = Path(workspace) / "ran.log"
    lines = log.read_text().splitlines() if log.is_file() else []
    return collections.Counter(lines)
