"""`mlops-workbook deploy` and `serve` in subprocesses: exit codes name the failed step."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from mlops_helpers import etl, registry, tracking, training
from tests.support import CLI


def _cli(workspace, *args, timeout=300):
    env = {**os.environ, "MLOPS_WORKBOOK_HOME": str(workspace)}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_deploy_trains_gates_serves_then_blocks_a_regressed_challenger(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    done = _cli(ws, "deploy", "--train", "--n-rows", "1500")
    assert done.returncode == 0, done.stderr
    assert "DEPLOYED: version 1 is champion" in done.stdout
    assert "same as in-process predict" in done.stdout

    monkeypatch.setenv("MLOPS_WORKBOOK_HOME", str(ws))
    tracking.configure_tracking(experiment="cli")
    table = etl.build_training_table(42, 1500, "2026-01-05", 3)
    table["viewable"] = table["viewable"].sample(frac=1.0, random_state=3).to_numpy()
    run_id = tracking.log_training(training.fit_and_evaluate(table, 42), "regressed")
    bad = registry.register(run_id, "viewability")

    blocked = _cli(ws, "deploy", "--n-rows", "1500")
    assert blocked.returncode == 3, blocked.stdout + blocked.stderr
    assert f"BLOCKED: gate blocked version {bad}" in blocked.stdout
    assert "failed step: gate (exit code 3)" in blocked.stderr
    assert registry.current_version("viewability", registry.CHAMPION) == "1"

    # serve on a port in use, then deploy and serve a version whose files were deleted
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = _cli(ws, "serve", "--port", str(port))
    assert busy.returncode == 2 and f"port {port} on 127.0.0.1 is already in use" in busy.stderr
    where = registry.client().get_model_version_download_uri("viewability", "1")
    shutil.rmtree(Path(urllib.parse.urlparse(where).path))
    for args in (("deploy", "--version", "1", "--n-rows", "1500"), ("serve",)):
        gone = _cli(ws, *args)
        assert gone.returncode == 2, gone.stderr
        assert "version 1: its files are gone (no MLmodel in <workspace>/" in gone.stderr
        assert "Traceback" not in gone.stderr and str(ws) not in gone.stderr


BAD_INPUT = [
    (("deploy", "--version", "999"), "model 'viewability' has no version 999"),
    (("deploy", "--version", "abc"), "--version: must be a version number of at least 1"),
    (("deploy", "--version", ""), "--version: must be a version number of at least 1"),
    (("deploy", "--model", "a/b"), "--model must be"),
    (("deploy", "--experiment", "../../.."), "--experiment must be"),
    (("serve", "--port", "70000"), "--port: must be a port from 1 to 65535"),
    (("serve", "--port", "-1"), "--port: must be a port from 1 to 65535"),
    (("serve", "--port", "0"), "--port: must be a port from 1 to 65535"),
]


@pytest.mark.parametrize(("args", "said"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_deploy_and_serve_input_exits_2_in_seconds_before_any_side_effect(tmp_path, args, said):
    ws = tmp_path / "ws"
    start = time.monotonic()
    done = _cli(ws, *args, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert said in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - start < 30
    db = ws / "mlflow.db"
    if db.exists():  # the store may be opened to look the version up; nothing is written
        with sqlite3.connect(db) as con:
            assert con.execute("select count(*) from runs").fetchone() == (0,)
            assert con.execute("select count(*) from model_version_tags").fetchone() == (0,)


def test_bad_deploy_and_serve_arguments_exit_2_with_the_fix(tmp_path, scoring_servers_in):
    ws = tmp_path / "ws"
    nothing = _cli(ws, "serve", "--alias", "nowhere")
    assert nothing.returncode == 2
    assert "alias 'nowhere' of model 'viewability' points nowhere" in nothing.stderr
    no_challenger = _cli(ws, "deploy")
    assert no_challenger.returncode == 2
    assert "has no challenger to deploy; pass --version N, or --train" in no_challenger.stderr
    bad_day = _cli(ws, "deploy", "--eval-day", "yesterday")
    assert (
        bad_day.returncode == 2 and "start_day must be a date written YYYY-MM-DD" in bad_day.stderr
    )
    assert not scoring_servers_in(ws), "no scoring server may be left running"
