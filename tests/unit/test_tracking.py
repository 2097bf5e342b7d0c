"""tracking: a real sqlite MLflow store in a temporary workspace (no mocks)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse
from urllib.request import url2pathname

import mlflow
import numpy as np
import pytest

from mlops_helpers import config, etl, tracking, training
from mlops_helpers.errors import WorkbookInputError
from mlops_helpers.workbook.processes import free_port


def shared_folder(tmp_path_factory) -> Path:
    """A folder of this pytest session that every xdist worker sees."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A real store, made once per session: tracking configured in a fresh workspace from an
    unrelated working directory, and one training run logged. Workers only read it after."""
    table = etl.build_training_table(seed=2, n_rows=400, start_day="2024-01-01", n_days=1)
    result = training.fit_and_evaluate(table, seed=4)
    shared = shared_folder(tmp_path_factory) / "tracking"
    shared.mkdir(exist_ok=True)
    workspace, cwd, run_file = shared / "ws", shared / "cwd", shared / "run_id"
    with pytest.MonkeyPatch.context() as mp, open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one worker creates, the others wait, then read
        mp.setenv(config.HOME_ENV, str(workspace))
        cwd.mkdir(exist_ok=True)
        mp.chdir(cwd)
        fresh = not run_file.exists()
        if fresh:
            assert not workspace.exists()
        uri = tracking.configure_tracking()
        if fresh:
            run_file.write_text(tracking.log_training(result, "unit-test", {"purpose": "unit"}))
        fcntl.flock(lock, fcntl.LOCK_UN)
        yield SimpleNamespace(
            workspace=workspace.resolve(),
            cwd=cwd,
            uri=uri,
            result=result,
            run_id=run_file.read_text(),
        )


@pytest.fixture(autouse=True)
def _tracking_selected(tracked):
    """Every test starts pointed at the module's store and experiment."""
    mlflow.set_tracking_uri(tracked.uri)
    mlflow.set_experiment("workbook")


def file_uri_path(uri: str) -> Path:
    parsed = urlparse(uri)
    assert parsed.scheme == "file", uri
    return Path(url2pathname(parsed.path))


def test_default_uri_is_an_absolute_sqlite_file_in_the_workspace(tracked):
    assert tracked.uri.startswith("sqlite:///")
    db = Path(tracked.uri.removeprefix("sqlite:///"))
    assert db.is_absolute()
    assert db == tracked.workspace / "mlflow.db"
    assert db.is_file()
    assert mlflow.get_tracking_uri() == tracked.uri


def test_experiment_keeps_artifacts_in_the_workspace(tracked):
    experiment = mlflow.MlflowClient().get_experiment_by_name("workbook")
    location = file_uri_path(experiment.artifact_location)
    assert location.is_absolute()
    assert location == tracked.workspace / "artifacts" / "workbook"
    assert location.is_dir()  # the logged model landed there


def test_nothing_is_written_to_the_working_directory(tracked):
    assert not (tracked.cwd / "mlruns").exists()
    assert not (tracked.cwd / "mlartifacts").exists()
    assert list(tracked.cwd.iterdir()) == []


def test_relative_sqlite_uri_is_rejected(tracked, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(tracking.TrackingStoreError, match="working directory") as err:
        tracking.configure_tracking("sqlite:///mlflow.db")
    assert "sqlite:////abs/path/mlflow.db" in str(err.value)
    assert not (tmp_path / "mlflow.db").exists()
    assert mlflow.get_tracking_uri() == tracked.uri  # still pointed where it was


def test_an_explicit_absolute_uri_is_used(tracked, tmp_path, monkeypatch):
    monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "ws"))
    db = tmp_path / "team.db"
    shutil.copy(tracked.workspace / "mlflow.db", db)  # an already migrated store
    uri = f"sqlite:///{db}"
    assert tracking.configure_tracking(uri, experiment="team") == uri
    assert mlflow.get_tracking_uri() == uri
    experiment = mlflow.MlflowClient().get_experiment_by_name("team")
    assert file_uri_path(experiment.artifact_location) == (tmp_path / "ws").resolve() / (
        "artifacts/team"
    )


def _experiments(uri: str) -> dict[str, str]:
    client = mlflow.MlflowClient(tracking_uri=uri)
    return {e.name: e.artifact_location for e in client.search_experiments()}


def test_a_store_template_is_kept_empty_then_copied_into_new_workspaces(
    tracked, tmp_path, monkeypatch
):
    template = tmp_path / "template" / "mlflow.db"
    monkeypatch.setenv(config.STORE_TEMPLATE_ENV, str(template))
    first, second = tmp_path / "ws1", tmp_path / "ws2"
    monkeypatch.setenv(config.HOME_ENV, str(first))
    tracking.configure_tracking(experiment="one")
    assert template.is_file(), "the first new store is kept as the template"
    assert _experiments(f"sqlite:///{template}").keys() == {"Default"}, "kept before any write"

    monkeypatch.setenv(config.HOME_ENV, str(second))
    uri = tracking.configure_tracking(experiment="two")
    with mlflow.start_run(run_name="in the copy") as run:
        mlflow.log_metric("m", 1.0)
    experiments = _experiments(uri)
    assert experiments.keys() == {"Default", "two"}, "nothing of the first workspace came along"
    assert file_uri_path(experiments["two"]) == second.resolve() / "artifacts" / "two"
    assert mlflow.get_run(run.info.run_id).data.metrics == {"m": 1.0}
    assert _experiments(f"sqlite:///{first / 'mlflow.db'}").keys() == {"Default", "one"}


def test_without_the_template_variable_no_template_is_written(tracked, tmp_path, monkeypatch):
    monkeypatch.delenv(config.STORE_TEMPLATE_ENV, raising=False)
    monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "ws"))
    tracking.configure_tracking(experiment="plain")
    assert sorted(p.name for p in (tmp_path / "ws").iterdir()) == [
        "artifacts",
        "mlflow.db",
        "mlflow.db.lock",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws"]


def test_configuring_again_keeps_the_experiment(tracked):
    before = mlflow.MlflowClient().get_experiment_by_name("workbook").experiment_id
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(config.HOME_ENV, str(tracked.workspace))
        assert tracking.configure_tracking() == tracked.uri
    assert mlflow.MlflowClient().get_experiment_by_name("workbook").experiment_id == before


def test_log_training_records_params_metrics_and_fingerprint(tracked):
    run = mlflow.get_run(tracked.run_id)
    result = tracked.result
    assert run.info.run_name == "unit-test"
    assert run.data.params == {
        "C": str(result.params["C"]),
        "max_iter": str(result.params["max_iter"]),
        "test_fraction": str(result.params["test_fraction"]),
        "seed": str(result.seed),
    }
    assert run.data.metrics == pytest.approx(result.metrics, rel=1e-12)
    assert run.data.tags["data_fingerprint"] == result.data_fingerprint
    assert run.data.tags["n_train"] == str(result.n_train)
    assert run.data.tags["n_test"] == str(result.n_test)
    assert run.data.tags["purpose"] == "unit"


def test_logged_model_predicts_like_the_trained_model(tracked):
    model = mlflow.pyfunc.load_model(f"runs:/{tracked.run_id}/model")
    frame = tracked.result.test_frame.loc[:, list(training.FEATURES)]
    logged = np.asarray(model.predict(frame))
    expected = training.predict_proba(tracked.result.model, frame)
    if logged.ndim == 2:
        logged = logged[:, 1]
    np.testing.assert_allclose(logged, expected, rtol=0, atol=1e-12)


def test_logged_model_is_stored_with_skops_and_a_signature(tracked):
    info = mlflow.models.get_model_info(f"runs:/{tracked.run_id}/model")
    assert info.flavors["sklearn"]["serialization_format"] == "skops"
    assert info.signature is not None
    assert info.signature.inputs.input_names() == list(training.FEATURES)


def test_logged_model_requirements_are_the_explicit_pins(tracked):
    requirements = Path(mlflow.pyfunc.get_model_dependencies(f"runs:/{tracked.run_id}/model"))
    lines = [
        line.strip()
        for line in requirements.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines == tracking.pip_requirements()


def test_pip_requirements_pin_exact_versions():
    pins = tracking.pip_requirements()
    assert [p.split("==")[0] for p in pins] == list(tracking.MODEL_PACKAGES)
    assert all(p.count("==") == 1 and p.split("==")[1] for p in pins)
    assert f"mlflow=={mlflow.__version__}" in pins


def test_runs_for_fingerprint_finds_the_run(tracked):
    runs = tracking.runs_for_fingerprint(tracked.result.data_fingerprint)
    assert tracked.run_id in set(runs["run_id"])
    assert tracking.runs_for_fingerprint("0" * 64).empty


def test_telemetry_is_off_even_if_the_caller_turned_it_on(monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "DEBUG")
    config.apply_mlflow_env()
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
    assert os.environ["MLFLOW_LOGGING_LEVEL"] == "DEBUG"  # a caller's own choice is kept


# -- a broken or unreachable store: one clear WorkbookInputError, fast, nothing changed ------


def _broken_store(tracked, workspace: Path, how: str) -> Path:
    """``workspace/mlflow.db`` broken in one of the ways a user meets: random bytes, the first
    half of a real store, or a real store whose schema revision is ``how``."""
    db = workspace / "mlflow.db"
    workspace.mkdir(parents=True)
    real = (tracked.workspace / "mlflow.db").read_bytes()
    if how == "random":
        db.write_bytes(np.random.default_rng(0).bytes(len(real)))
    elif how == "truncated":
        db.write_bytes(real[: len(real) // 2])
    else:
        db.write_bytes(real)
        with contextlib.closing(sqlite3.connect(db)) as con, con:
            con.execute("UPDATE alembic_version SET version_num = ?", (how,))
    return db


def _refused(uri: str | None = None) -> str:
    """configure_tracking's one-line input error for ``uri``, checked to come within seconds
    and to leave MLflow pointed where it was."""
    before = mlflow.get_tracking_uri()
    start = time.perf_counter()
    with pytest.raises(WorkbookInputError) as err:
        tracking.configure_tracking(uri)
    assert time.perf_counter() - start < 10
    assert mlflow.get_tracking_uri() == before, "a refused store must not become the current one"
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize(
    ("how", "what"),
    [
        ("random", "not an SQLite database"),
        ("truncated", "truncated"),
        ("ffffffffffff", "newer or unknown MLflow"),
    ],
)
def test_a_broken_workspace_store_is_refused_with_the_rm_that_regenerates_it(
    tracked, tmp_path, monkeypatch, how, what
):
    workspace = tmp_path / "my work $HOME"
    monkeypatch.setenv(config.HOME_ENV, str(workspace))
    monkeypatch.delenv(config.TRACKING_URI_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    db = _broken_store(tracked, workspace, how)
    broken = db.read_bytes()
    message = _refused()
    assert what in message
    assert f"rm {shlex.quote('my work $HOME/mlflow.db')}" in message
    assert "runs and registered models" in message, "say what removing it loses"
    assert db.read_bytes() == broken, "the check must not write the store"


def test_an_older_workspace_store_offers_the_upgrade_and_the_rm(tracked, tmp_path, monkeypatch):
    from mlflow.store.db.utils import _get_latest_schema_revision

    head = _get_latest_schema_revision()
    _, known, _ = tracking.mlflow_schema()
    monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "ws"))
    monkeypatch.delenv(config.TRACKING_URI_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    _broken_store(tracked, tmp_path / "ws", sorted(known - {head})[0])
    message = _refused()
    assert "older MLflow" in message and f"db upgrade sqlite:///{tmp_path}" in message
    assert "rm ws/mlflow.db" in message


def test_a_broken_store_outside_the_workspace_is_not_offered_for_removal(
    tracked, tmp_path, monkeypatch
):
    notes = tmp_path / "notes.db"
    notes.write_text("not sqlite at all, just text that is long enough to have a header")
    message = _refused(f"sqlite:///{notes}")
    assert "not an SQLite database" in message and "rm" not in message
    assert "--tracking-uri" in message


@pytest.mark.parametrize(
    ("uri", "what"),
    [
        ("foo", "MLflow's file store"),
        ("file:///tmp/mlruns", "MLflow's file store"),
        ("/tmp/mlruns", "MLflow's file store"),
        ("htp://x", "scheme 'htp'"),
        ("http://", "no host"),
        ("sqlite://relative.db", "absolute"),
    ],
)
def test_a_tracking_uri_the_workbook_does_not_use_is_refused(
    tracked, tmp_path, monkeypatch, uri, what
):
    monkeypatch.chdir(tmp_path)
    message = _refused(uri)
    assert repr(uri) in message and what in message
    assert "sqlite:////abs/path/mlflow.db" in message
    assert list(tmp_path.iterdir()) == [], "nothing written where the command ran"


def test_an_unreachable_server_is_refused_within_seconds(tracked, tmp_path):
    # In a child process: before the check, MLflow retried for about 4 minutes, and a
    # timeout can only stop a process, not a call.
    uri = f"http://127.0.0.1:{free_port()}"
    code = (
        "from mlops_helpers import tracking\n"
        "from mlops_helpers.errors import WorkbookInputError\n"
        "try:\n"
        f"    tracking.configure_tracking({uri!r})\n"
        "except WorkbookInputError as exc:\n"
        "    print(exc)\n"
    )
    env = {**os.environ, config.HOME_ENV: str(tmp_path / "ws")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert uri in done.stdout and "does not answer" in done.stdout
    assert "tracking-server" in done.stdout, "say how to start one"


def test_a_server_that_is_not_mlflow_is_refused(tracked):
    class NotMlflow(BaseHTTPRequestHandler):
        """Answers /health like many services do, and 404 in HTML for the rest."""

        def do_GET(self):
            ok = self.path == "/health"
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "text/plain" if ok else "text/html")
            self.end_headers()
            self.wfile.write(b"OK" if ok else b"<html>not here</html>")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), NotMlflow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        uri = f"http://127.0.0.1:{server.server_port}"
        message = _refused(uri)
    finally:
        server.shutdown()
        server.server_close()
    assert uri in message and "not an MLflow tracking server" in message
