"""MLflow tracking: an absolute sqlite store in the workspace by default, any URI by argument.

Offline and quiet: telemetry off, logs at WARNING, no progress bars, explicit
``pip_requirements`` (no slow inference), skops serialization for sklearn models.
mlflow is imported inside the functions, after its environment is set.

A new sqlite store costs about 1.5 s of MLflow's schema migrations. The test suite, which
makes dozens of fresh workspaces, sets ``MLOPS_WORKBOOK_STORE_TEMPLATE``: the first new
store is migrated by MLflow as usual and kept there, empty; every later new store starts
as a copy of it (about 0.05 s). Without that variable (``make run``, notebooks, the CLI)
nothing changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import sys
import warnings
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pandas as pd

from mlops_helpers.config import (
    STORE_TEMPLATE_ENV,
    TRACKING_URI_ENV,
    apply_mlflow_env,
    ensure_workspace,
)
from mlops_helpers.processes import (
    LoopbackServer,
    ServerProcess,
    check_port_free,
    free_port,
    venv_env,
)
from mlops_helpers.training import FEATURES, TrainResult

JOB_EXECUTION_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"  # read by ``mlflow server``
MODEL_PACKAGES = ("mlflow", "scikit-learn", "skops", "pandas", "numpy", "scipy")


def import_mlflow() -> ModuleType:
    """Import mlflow after setting its quiet, offline environment; return the module.

    mlflow imports ``tqdm.auto``, which warns on stderr in a Jupyter kernel without
    ipywidgets ("IProgress not found"); that warning is silenced for this import only.
    """
    apply_mlflow_env()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import mlflow
    return mlflow


def default_tracking_uri() -> str:
    """``sqlite:///<absolute workspace>/mlflow.db`` (creates the workspace folder)."""
    return f"sqlite:///{ensure_workspace() / 'mlflow.db'}"


def artifact_root() -> Path:
    """Where experiments created by the workbook keep their artifacts."""
    return ensure_workspace("artifacts")


def configure_tracking(tracking_uri: str | None = None, experiment: str = "workbook") -> str:
    """Point MLflow at ``tracking_uri`` (default: ``$MLOPS_TRACKING_URI``, else the workspace
    sqlite store), select
    ``experiment`` (created with an absolute artifact location), and return the URI."""
    mlflow = import_mlflow()
    uri = tracking_uri or os.environ.get(TRACKING_URI_ENV) or default_tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_absolute():
        raise ValueError(
            f"tracking URI {uri!r} is relative, so it depends on the working directory; "
            "use an absolute path: sqlite:////abs/path/mlflow.db"
        )
    mlflow.set_tracking_uri(uri)
    _ensure_store(mlflow, uri)
    experiment_id = ensure_experiment(experiment)  # safe in parallel: see its last lines
    mlflow.set_experiment(experiment_id=experiment_id)
    return uri


def _ensure_store(mlflow, uri: str) -> None:
    """Make sure a sqlite store exists with MLflow's schema, made by one process at a time.

    MLflow creates and migrates the sqlite schema on first use. Parallel runs (a batch,
    notebooks on Dask) that open a fresh store at once race through the migrations and
    leave it broken ("duplicate column name: step"), so the store is made under an
    exclusive lock (:func:`store_lock`). A process that finds it made (its schema version
    recorded, read under a shared lock that waits for a maker) opens it without taking a
    turn: opening a made store only reads, and eight parallel runs no longer queue for
    about a second each. Later writes are safe: MLflow sets a 20 s sqlite busy timeout on
    every session.
    """
    db = _sqlite_path(uri)
    if db is None:
        return
    with store_lock(uri, shared=True):
        if _schema_version(db) is not None:
            return
    with store_lock(uri):
        if _schema_version(db) is None:  # nobody made it while we waited
            _make_store(mlflow, db)


@contextlib.contextmanager
def store_lock(uri: str, shared: bool = False) -> Iterator[None]:
    """Hold a file lock next to a sqlite store (no-op for other URIs): exclusive to make
    the store, ``shared`` to look at it while nobody makes it."""
    db = _sqlite_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(f"{db.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _schema_version(db: Path) -> str | None:
    """The MLflow schema revision a sqlite store records; None for no store or one whose
    schema was never made."""
    if not db.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(db)) as con:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def _make_store(mlflow, db: Path) -> None:
    """Let MLflow create and migrate the sqlite store ``db``. With a store template set
    (the tests): copy the template there instead, or, when there is none yet, keep the new
    store as the template before anything is written into it (it then holds only MLflow's
    ``Default`` experiment, which the workbook does not use)."""
    template = os.environ.get(STORE_TEMPLATE_ENV)
    if template and not db.exists() and Path(template).is_file():
        _sqlite_copy(Path(template), db)
        return
    fresh = not db.exists()
    mlflow.MlflowClient().get_experiment("0")  # MLflow creates and migrates it now
    if template and fresh:
        _sqlite_copy(db, Path(template))


def _sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a sqlite database (the backup API), renamed into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(tmp)) as dst,
    ):
        src.backup(dst)
    os.replace(tmp, target)


def ensure_experiment(name: str) -> str:
    """The id of experiment ``name``, created if needed with an absolute artifact location
    in the workspace (a tracking server over HTTP chooses its own, served artifacts)."""
    mlflow = import_mlflow()
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if not mlflow.get_tracking_uri().startswith(("http://", "https://")):
        location = (artifact_root() / name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        # Another process created it between our lookup and our create (parallel runs).
        return client.get_experiment_by_name(name).experiment_id


def pip_requirements() -> list[str]:
    """Exact versions of what the model needs to load, from this environment."""
    return [f"{name}=={metadata.version(name)}" for name in MODEL_PACKAGES]


def model_signature(result: TrainResult, rename_inputs: dict[str, str] | None = None):
    """The model's signature, inferred from a few test rows.

    ``rename_inputs`` deliberately mislabels input columns: a model that passes offline
    evaluation but is rejected by the scoring server (the deployment rollback drill).
    """
    import_mlflow()
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    example = result.test_frame.loc[:5, list(FEATURES)]
    with warnings.catch_warnings():
        # Our integer features never hold missing values: the ETL contract guarantees it.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        signature = infer_signature(example, result.model.predict_proba(example))
    if not rename_inputs:
        return signature
    inputs = Schema(
        [ColSpec(c.type, rename_inputs.get(c.name, c.name)) for c in signature.inputs.inputs]
    )
    return ModelSignature(inputs=inputs, outputs=signature.outputs)


def log_training(
    result: TrainResult,
    run_name: str,
    tags: dict[str, str] | None = None,
    rename_inputs: dict[str, str] | None = None,
) -> str:
    """Log a result as an MLflow run (params, metrics, fingerprint, model); return the run id.

    ``rename_inputs``: see :func:`model_signature` (only for the rollback drill).
    """
    mlflow = import_mlflow()
    example = result.test_frame.loc[:5, list(FEATURES)]
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({**result.params, "seed": result.seed})
        mlflow.log_metrics(result.metrics)
        mlflow.set_tags(
            {
                "data_fingerprint": result.data_fingerprint,
                "n_train": str(result.n_train),
                "n_test": str(result.n_test),
                **(tags or {}),
            }
        )
        mlflow.sklearn.log_model(
            result.model,
            name="model",
            signature=model_signature(result, rename_inputs),
            input_example=None if rename_inputs else example,
            pip_requirements=pip_requirements(),
            pyfunc_predict_fn="predict_proba",
        )
    return run.info.run_id


def runs_for_fingerprint(fingerprint: str, experiment: str = "workbook") -> pd.DataFrame:
    """Earlier runs trained on data with this fingerprint: params and metrics, oldest first."""
    mlflow = import_mlflow()
    runs = mlflow.search_runs(
        experiment_names=[experiment],
        filter_string=f"tags.data_fingerprint = '{fingerprint}'",
        order_by=["attributes.start_time ASC"],
    )
    return runs


class TrackingServer(LoopbackServer):
    """A real ``mlflow server`` on 127.0.0.1 for a team: sqlite backend and served
    artifacts in the workspace (PostgreSQL and an object store in production: see README)."""

    def __init__(self, port: int | None = None, name: str = "server", ready_timeout: float = 60):
        if port is None:
            port = free_port()
        else:
            check_port_free(port)
        self.port = port
        root = ensure_workspace("tracking-server", name)
        self.backend_uri = f"sqlite:///{root / 'mlflow.db'}"
        self.artifacts = root / "artifacts"
        self.ready_timeout = ready_timeout
        self.server = None

    def start(self) -> TrackingServer:
        """Start ``mlflow server`` and wait until ``/health`` answers.

        Without MLflow's job execution (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` unless
        set): by default the server also starts a job runner and eight huey consumers for
        GenAI jobs, each importing MLflow (about 13 s of CPU per start, nine processes more),
        and the workbook runs no MLflow jobs. Set the variable to ``true`` to have them."""
        env = venv_env()
        env.setdefault(JOB_EXECUTION_ENV, "false")
        command = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
            "--port", str(self.port), "--backend-store-uri", self.backend_uri,
            "--artifacts-destination", str(self.artifacts), "--serve-artifacts",
            "--workers", "1",
        ]  # fmt: skip
        self.server = ServerProcess(
            "the MLflow tracking server",
            command,
            f"{self.url}/health",
            self.artifacts.parent / f"server-{self.port}.log",
            env,
            self.ready_timeout,
        )
        self.server.start()
        return self
