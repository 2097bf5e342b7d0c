"""Real components for the integration tests: an MLflow sqlite store in a throw-away
workspace, models trained and logged once per pytest process, real scoring servers.

Tests that use the store ask for ``on_store`` (their modules list it in ``pytestmark``);
each gets its own registered model name, so tests never see each other's aliases.
After the session, no ``mlflow models serve`` process started from this session's
temporary folders may be left running: ``no_server_left`` kills any it finds and fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest

from mlops_helpers import config, etl, registry, serving, tracking, training
from tests.support import server_processes

EXPERIMENT = "integration"
TRAIN_DAYS = {"seed": 1, "n_rows": 400, "start_day": "2026-01-05", "n_days": 3}
HELD_OUT_DAY = {"seed": 1, "n_rows": 400, "start_day": "2026-01-08", "n_days": 1}
# Generous: tests check behaviour, never timing (the machine may be busy).
LATENCY_BUDGET_MS = 10_000.0


@contextlib.contextmanager
def pointed_at(store):
    """Point the workbook (env) and MLflow (tracking URI, experiment) at the test store."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(config.HOME_ENV, str(store.workspace))
        mlflow.set_tracking_uri(store.uri)
        mlflow.set_experiment(EXPERIMENT)
        yield


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """A real sqlite tracking store and the data: three training days and a later held-out day."""
    workspace = tmp_path_factory.mktemp("integration-ws").resolve()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(config.HOME_ENV, str(workspace))
        uri = tracking.configure_tracking(experiment=EXPERIMENT)
        table = etl.build_training_table(**TRAIN_DAYS)
        held_out = etl.build_training_table(**HELD_OUT_DAY)
    return SimpleNamespace(workspace=workspace, uri=uri, table=table, held_out=held_out)


@pytest.fixture(scope="session", autouse=True)
def no_server_left(tmp_path_factory):
    """After the session: fail (and kill them) if scoring servers of this session still run."""
    yield
    left = server_processes(tmp_path_factory.getbasetemp().resolve())
    for pid, _ in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"scoring servers left running after the tests (now killed): {left}"


@pytest.fixture(scope="session")
def servers_on(store):
    """A function: pids of the scoring-server processes on ``port`` still alive after
    waiting up to ``timeout`` s."""

    def alive(port: int, timeout: float = 0.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while (found := server_processes(store.workspace, port)) and time.monotonic() < deadline:
            time.sleep(0.05)
        return [pid for pid, _ in found]

    return alive


@pytest.fixture(scope="session")
def scoring_servers_in():
    """A function: the scoring-server processes (pid, command) whose workspace is a folder."""
    return server_processes


@pytest.fixture(scope="session")
def pointed(store):
    """A context manager for module fixtures: point the workbook and MLflow at the store."""
    return lambda: pointed_at(store)


@pytest.fixture
def on_store(store):
    """The test starts pointed at the store, whatever ran before it in this process."""
    with pointed_at(store):
        yield


def _log(store, run_name: str, table, **kwargs) -> str:
    result = training.fit_and_evaluate(table, seed=1)
    with pointed_at(store):
        return tracking.log_training(result, run_name, **kwargs)


@pytest.fixture(scope="session")
def good_run(store) -> str:
    """A run that logged a good model (AUC well above the gate's floor)."""
    return _log(store, "good", store.table)


@pytest.fixture(scope="session")
def shuffled_run(store) -> str:
    """A regressed model: trained on the same rows with shuffled labels (AUC ~0.5)."""
    table = store.table.copy()
    table[training.TARGET] = np.random.default_rng(0).permutation(table[training.TARGET])
    return _log(store, "shuffled-labels", table)


@pytest.fixture(scope="session")
def renamed_run(store) -> str:
    """A model that passes offline evaluation but that the server rejects (mislabelled input)."""
    return _log(
        store, "breaks-in-serving", store.table, rename_inputs={"scroll_depth": "scroll_depth_pct"}
    )


def new_name(prefix: str) -> str:
    """A registered model name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def make_champion(store):
    """A function: register a run under a new name, gate and promote it -> (name, version)."""

    def make(run_id: str, prefix: str) -> tuple[str, str]:
        with pointed_at(store):
            name = new_name(prefix)
            version = registry.register(run_id, name)
            assert registry.gate(name, version, store.held_out).passed
            registry.promote(name, version, "first champion of the test", require_smoke=False)
            return name, version

    return make


@pytest.fixture(scope="session")
def http_predictions(store):
    """A function: start a real server for a model URI, score a frame over HTTP, stop it."""

    def predict(model_uri: str, frame) -> np.ndarray:
        with pointed_at(store), serving.ScoringServer(model_uri) as server:
            return server.predict(frame)

    return predict


@pytest.fixture
def fresh_name(request) -> str:
    """A registered model name for this test alone."""
    return new_name(request.node.originalname.removeprefix("test_")[:30])
