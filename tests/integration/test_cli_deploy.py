"""`mlops-workbook deploy` and `serve` in subprocesses: exit codes name the failed step."""

from __future__ import annotations

import os
import subprocess
import sys

from mlops_helpers import etl, registry, tracking, training

CLI = [sys.executable, "-m", "mlops_helpers.cli"]


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
