"""`mlops-workbook` exit codes, in real subprocesses: the workbook's own input errors are
exit 2 and one line; a bug is a traceback and exit 1; a bad workspace is refused at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import CLI

# The command with one of its functions replaced by one that fails inside pandas: a bug,
# not bad input. A subprocess, so that what a user sees (stderr, exit code) is measured.
WITH_A_PANDAS_BUG = """
import sys
import pandas as pd
from mlops_helpers.workbook import cli

def cmd_params(args):
    pd.Series(["not a number"]).astype(float)

cli.cmd_params = cmd_params
sys.exit(cli.main(["params", "03"]))
"""


def _run(args: list[str], workspace: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLOPS_WORKBOOK_HOME": str(workspace)}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)


def test_a_valueerror_inside_pandas_is_a_bug_with_a_traceback_and_exit_1(tmp_path):
    done = _run([sys.executable, "-c", WITH_A_PANDAS_BUG], tmp_path / "ws")
    assert done.returncode == 1, done.stderr
    assert "Traceback (most recent call last)" in done.stderr
    assert "ValueError: could not convert string to float" in done.stderr
    assert "error: could not convert" not in done.stderr, "a bug must not read as bad input"


def test_a_bad_notebook_name_is_exit_2_and_one_line(tmp_path):
    done = _run([*CLI, "params", "99"], tmp_path / "ws")
    assert done.returncode == 2
    assert done.stderr.startswith("error: no notebook named '99'; choose one of: 00_start_here")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("home", "why"),
    [
        ("/etc/hostname", "it is a file, not a folder"),
        ("/etc/hostname/ws", "a part of it is a file, not a folder"),
    ],
)
def test_a_workspace_that_is_a_file_is_refused_at_once_naming_variable_value_and_fix(
    tmp_path, home, why
):
    start = time.monotonic()
    done = _run([*CLI, "run", "03", "--no-progress"], Path(home))
    assert time.monotonic() - start < 30
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"error: MLOPS_WORKBOOK_HOME={home} is not a usable workspace: {why}; set "
        "MLOPS_WORKBOOK_HOME to a folder you can write, e.g. export "
        "MLOPS_WORKBOOK_HOME=$HOME/mlops-workspace\n"
    )


def test_an_unwritable_workspace_is_refused_before_anything_is_written(tmp_path):
    # root can write almost anywhere; sysfs refuses a new folder even to root
    done = _run([*CLI, "deploy", "--train"], Path("/sys/mlops-workbook-ws"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        "error: MLOPS_WORKBOOK_HOME=/sys/mlops-workbook-ws is not a usable workspace: "
        "it cannot be written"
    )
    assert "set MLOPS_WORKBOOK_HOME to a folder you can write" in done.stderr
    assert not Path("/sys/mlops-workbook-ws").exists()


WITH_A_SERVER_THAT_FAILS = """
import sys
from mlops_helpers.workbook import cli, processes

def cmd_params(args):
    raise processes.ServerError("the MLflow tracking server exited with code 1 before it was ready")

cli.cmd_params = cmd_params
sys.exit(cli.main(["params", "03"]))
"""


def test_a_server_that_fails_to_start_is_its_message_and_exit_1_without_traceback(tmp_path):
    """Not bad input (exit 2) and not a bug (a traceback): what failed, in its message."""
    done = _run([sys.executable, "-c", WITH_A_SERVER_THAT_FAILS], tmp_path / "ws")
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("failed: the MLflow tracking server exited with code 1")
    assert "Traceback" not in done.stderr
