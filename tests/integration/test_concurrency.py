"""Eight runs logging at once, from eight processes, to the embedded sqlite store and to a
real tracking server: every run is recorded with all its params and metrics.

The sqlite case starts on a fresh store, as a batch in a new workspace does: without the
file lock in ``tracking.configure_tracking`` the processes race through MLflow's schema
migrations and fail ("duplicate column name: step") or leave the store broken.
"""

from __future__ import annotations

import multiprocessing
import os

import mlflow
import psutil
import pytest

from mlops_helpers import config, tracking

pytestmark = pytest.mark.slow

RUNS = 8
STEPS = 10  # metric steps per run: many small write transactions at once
EXPERIMENT = "parallel"

_start = None


def _init(home: str, barrier) -> None:
    """Each process: the test's workspace, and a barrier so all eight write at once."""
    global _start
    os.environ[config.HOME_ENV] = home
    os.environ.pop(config.STORE_TEMPLATE_ENV, None)  # the real migrations, raced: no template
    _start = barrier


def _log_one(args: tuple[str, int]) -> str:
    """One run: set up tracking, then params, a metric history and final metrics."""
    uri, i = args
    _start.wait(timeout=60)
    tracking.configure_tracking(uri, experiment=EXPERIMENT)
    with mlflow.start_run(run_name=f"parallel-{i}") as run:
        mlflow.log_params({"worker": i, "C": 0.1 * (i + 1)})
        for step in range(STEPS):
            mlflow.log_metric("loss", 1.0 / (step + 1 + i), step=step)
        mlflow.log_metrics({"score": i / 10, "rows": 100.0 * i})
    return run.info.run_id


def log_in_parallel(uri: str, home: str) -> list[str]:
    """Eight processes (forked from a server that has mlflow imported already) log at once."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["mlflow", "mlops_helpers.tracking"])
    barrier = ctx.Barrier(RUNS)
    with ctx.Pool(RUNS, initializer=_init, initargs=(home, barrier)) as pool:
        return pool.map(_log_one, [(uri, i) for i in range(RUNS)])


def check_all_recorded(uri: str, run_ids: list[str]) -> None:
    """All eight runs, finished, each with its params, final metrics and full history."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert sorted(r.info.run_id for r in runs) == sorted(run_ids)
    assert len(set(run_ids)) == RUNS
    for run in runs:
        i = int(run.data.params["worker"])
        assert run.info.run_name == f"parallel-{i}"
        assert run.info.status == "FINISHED"
        assert run.data.metrics == {"score": i / 10, "rows": 100.0 * i, "loss": 1.0 / (STEPS + i)}
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted(m.step for m in history) == list(range(STEPS)), "no metric step lost"


def test_eight_parallel_runs_on_a_fresh_sqlite_store_all_recorded(monkeypatch, tmp_path):
    ws = tmp_path / "ws"
    monkeypatch.setenv(config.HOME_ENV, str(ws))
    uri = tracking.default_tracking_uri()
    assert not (ws / "mlflow.db").exists(), "the processes race to create the store"

    run_ids = log_in_parallel(uri, str(ws))

    check_all_recorded(uri, run_ids)


def test_eight_parallel_runs_on_a_tracking_server_all_recorded(monkeypatch, tmp_path):
    ws = tmp_path / "ws"
    monkeypatch.setenv(config.HOME_ENV, str(ws))
    with tracking.TrackingServer() as server:
        assert server.url.startswith("http://127.0.0.1:")
        started = psutil.Process(server.process.pid).children(recursive=True)
        commands = [" ".join(p.cmdline()[1:3]) for p in started]
        assert commands == ["-m uvicorn"], "one uvicorn worker, no MLflow job runners"

        run_ids = log_in_parallel(server.url, str(ws))

        check_all_recorded(server.url, run_ids)
        process = server.process
    assert process.poll() is not None, "the server is stopped after the test"
    artifacts = ws / "tracking-server" / "server" / "artifacts"
    assert not (ws / "mlflow.db").exists(), "runs went to the server, not the embedded store"
    assert artifacts.parent.joinpath("mlflow.db").is_file()
