"""A broken, deleted or unreachable tracking store, through the real command and a real
``mlflow server``: exit 2 with one line that says what is broken and how to fix it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlops_helpers import config, tracking
from mlops_helpers.workbook import doctor
from mlops_helpers.workbook.processes import free_port

pytestmark = pytest.mark.slow
COMMAND = str(Path(sys.executable).parent / "mlops-workbook")


def _deploy(workspace: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != config.TRACKING_URI_ENV}
    env[config.HOME_ENV] = str(workspace)
    return subprocess.run(
        [COMMAND, "deploy", *args], capture_output=True, text=True, env=env, timeout=60,
        cwd=workspace.parent,
    )  # fmt: skip


def _one_line_exit_2(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    return done.stderr


def test_deploy_on_a_corrupt_store_exits_2_naming_the_rm_of_that_file(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "mlflow.db").write_bytes(os.urandom(65536))
    start = time.perf_counter()
    error = _one_line_exit_2(_deploy(workspace))
    assert time.perf_counter() - start < 30
    assert "not an SQLite database" in error and "rm ws/mlflow.db" in error


def test_deploy_with_an_unreachable_server_exits_2_within_seconds(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.perf_counter()
    error = _one_line_exit_2(_deploy(tmp_path / "ws", "--tracking-uri", uri))
    assert time.perf_counter() - start < 30, "MLflow's retries took about 4 minutes"
    assert uri in error and "does not answer" in error


LOG_A_RUN = """
import mlflow, sys
from mlops_helpers import tracking
tracking.configure_tracking(experiment="kept")
with mlflow.start_run() as run:
    mlflow.log_text(sys.argv[1], "note.txt")
print(run.info.run_id, mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/note.txt"))
"""


def test_a_deleted_store_is_made_afresh_beside_the_old_artifacts(tmp_path):
    # Fine, not an error: removing mlflow.db is the fix this workbook prints; run ids are
    # random, so the fresh store's runs never land on the old runs' artifact folders.
    # Each run in its own process, as the command and a restarted kernel are.
    env = {k: v for k, v in os.environ.items() if k != config.TRACKING_URI_ENV}
    env[config.HOME_ENV] = str(tmp_path / "ws")

    def log(text: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", LOG_A_RUN, text], capture_output=True, text=True, env=env,
            timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.split()

    old_id, _ = log("old")
    old_files = sorted(p for p in (tmp_path / "ws" / "artifacts").rglob("*") if p.is_file())
    (tmp_path / "ws" / "mlflow.db").unlink()
    new_id, new_text = log("new")
    assert new_id != old_id and new_text == "new"
    assert old_files and all(p.read_text() == "old" for p in old_files), "old artifacts kept"


def test_a_real_tracking_server_on_a_raced_port_passes_the_check(tmp_path, monkeypatch):
    monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "ws"))
    # free_port is replaced (only here) to make the race happen every time: the port it
    # picks first is taken, before the server binds it, by a listener that never answers
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        lost = taken.getsockname()[1]
        picks = iter([lost])
        monkeypatch.setattr(tracking, "free_port", lambda: next(picks, None) or free_port())
        server = tracking.TrackingServer(name="check").start()
    with server:
        assert server.port != lost, "started again on another port"
        assert tracking.server_problem(server.url) is None
        assert tracking.configure_tracking(server.url, experiment="team") == server.url
        monkeypatch.setenv(config.TRACKING_URI_ENV, server.url)
        check = doctor.check_tracking()
    assert check.ok and "answers as an MLflow tracking server" in check.detail, check.line()
