"""MLflow tracking: an absolute sqlite store in the workspace by default, any URI by argument.

Offline and quiet: telemetry off, logs at WARNING, no progress bars, explicit
``pip_requirements`` (no slow inference), skops serialization for sklearn models.
mlflow is imported inside the functions, after its environment is set.

A new sqlite store runs all of MLflow's schema migrations, which is slow next to copying a
file. The test suite, which makes dozens of fresh workspaces, sets
``MLOPS_WORKBOOK_STORE_TEMPLATE``: the first new store is migrated by MLflow as usual and
kept there, empty; every later new store starts as a copy of it.
Without that variable (``make run``, notebooks, the CLI) nothing changes.
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import functools
import json
import os
import shlex
import sqlite3
import sys
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from importlib import metadata, util
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from mlops_helpers import config
from mlops_helpers.config import (
    STORE_TEMPLATE_ENV,
    TRACKING_URI_ENV,
    apply_mlflow_env,
    ensure_workspace,
    shell_path,
)
from mlops_helpers.errors import WorkbookInputError
from mlops_helpers.storage import atomic_write
from mlops_helpers.workbook.processes import (
    LoopbackServer,
    ServerProcess,
    check_port_free,
    free_port,
    venv_env,
)

if TYPE_CHECKING:  # doctor imports this module: no pandas or scikit-learn at import
    import pandas as pd

    from mlops_helpers.training import TrainResult

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


class TrackingStoreError(WorkbookInputError):
    """The tracking URI or the store it points at cannot be used; the message says why and
    what to do."""


def configure_tracking(tracking_uri: str | None = None, experiment: str = "workbook") -> str:
    """Point MLflow at ``tracking_uri`` (default: ``$MLOPS_TRACKING_URI``, else the workspace
    sqlite store), select ``experiment`` (created with an absolute artifact location), and
    return the URI. A URI or store it cannot use raises :class:`TrackingStoreError` first."""
    mlflow = import_mlflow()
    uri = tracking_uri or os.environ.get(TRACKING_URI_ENV) or default_tracking_uri()
    check_tracking_uri(uri)
    _ensure_store(mlflow, uri)
    mlflow.set_tracking_uri(uri)
    experiment_id = ensure_experiment(experiment)  # safe in parallel: see its last lines
    mlflow.set_experiment(experiment_id=experiment_id)
    return uri


# -- what is wrong with a tracking URI or store (doctor asks the same questions) ----------

DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")  # MLflow's own database backends
SERVER_TIMEOUT = 3.0  # seconds a tracking server gets to answer before we give up
SQLITE_MAGIC = b"SQLite format 3\x00"
USE_INSTEAD = "use sqlite:////abs/path/mlflow.db or a tracking server's URL (http://host:port)"
ELSEWHERE = f"point --tracking-uri (or {TRACKING_URI_ENV}) at another store"
LOSES = "its runs and registered models are lost"


def check_tracking_uri(uri: str) -> None:
    """Raise :class:`TrackingStoreError` for a URI the workbook does not use, or a server
    that does not answer as MLflow within :data:`SERVER_TIMEOUT` seconds."""
    problem = uri_problem(uri)
    if problem is None and uri.startswith(("http://", "https://")):
        why = server_problem(uri)
        if why is not None:
            fix = "start one (mlops-workbook tracking-server) or point --tracking-uri at one"
            problem = why, fix
    if problem is not None:
        what, fix = problem
        raise TrackingStoreError(f"tracking URI {redact(uri)!r} {what}: {fix}")


def uri_problem(uri: str) -> tuple[str, str] | None:
    """(why the workbook cannot use ``uri`` as written, the fix), without I/O; None if it can."""
    scheme = uri.split(":", 1)[0].lower() if "://" in uri else ""
    if scheme in ("", "file"):
        return "is MLflow's file store (a plain path or file://), not used here", USE_INSTEAD
    if scheme == "sqlite":
        path = uri.removeprefix("sqlite:///").split("?", 1)[0]
        if not uri.startswith("sqlite:///") or not Path(path).is_absolute():
            return (
                "is not an absolute sqlite path, so it depends on the working directory",
                "use an absolute path: sqlite:////abs/path/mlflow.db",
            )
        if Path(path).is_dir():
            return "names a folder, not a database file", USE_INSTEAD
        return None
    if scheme in ("http", "https"):
        return None if urlsplit(uri).hostname else ("has no host", USE_INSTEAD)
    if scheme.split("+", 1)[0] in DATABASE_SCHEMES:
        return None
    return (
        f"has scheme {scheme!r}, not one the workbook uses",
        f"{USE_INSTEAD}, or a database URL (postgresql://, mysql://, mssql://)",
    )


def server_problem(uri: str, timeout: float = SERVER_TIMEOUT) -> str | None:
    """Why ``uri`` is not a reachable MLflow tracking server; None when it answers as one.

    One GET of an MLflow REST endpoint, with a short timeout (MLflow's own client retries
    for minutes). An MLflow server answers JSON: the experiment, or an ``error_code``; a
    401 or 403 is left to MLflow's client, which sends the credentials it is configured with.
    """
    local = urlsplit(uri).hostname in ("127.0.0.1", "localhost", "::1")
    # a proxy would answer for a loopback address, or refuse it: go direct
    opener = urllib.request.build_opener(*([urllib.request.ProxyHandler({})] if local else []))
    probe = f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
    try:
        with opener.open(probe, timeout=timeout) as resp:
            status, body = resp.status, resp.read(65536)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(65536)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        why = getattr(reason, "strerror", None) or reason
        return f"does not answer within {timeout:g} s ({why})"
    if status in (401, 403):
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and ("experiment" in answer or "error_code" in answer):
        return None
    return f"answers (HTTP {status}) but is not an MLflow tracking server"


def redact(uri: str) -> str:
    """A URI without its password (team servers and databases may carry one)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    return uri.replace(f":{parts.password}@", ":***@", 1)


@functools.cache
def mlflow_schema() -> tuple[str, frozenset[str], str] | None:
    """(head revision, every known revision, mlflow version) from the installed mlflow's
    migration files, without importing mlflow; None when mlflow is not installed.

    The head is the one revision no other revision names as its ``down_revision``: what
    mlflow.store.db.utils._get_latest_schema_revision computes with alembic (which costs
    far more, and this runs in every notebook).
    """
    spec = util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        return None
    versions = Path(spec.submodule_search_locations[0]) / "store" / "db_migrations" / "versions"
    revisions, downs = set(), set()
    for file in versions.glob("*.py"):
        for node in ast.parse(file.read_text()).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            else:
                continue
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                found = ast.literal_eval(value)
                names = found if isinstance(found, tuple | list) else (found,)
                (revisions if target.id == "revision" else downs).update(n for n in names if n)
    heads = revisions - downs
    if len(heads) != 1:
        raise RuntimeError(f"mlflow's migrations in {versions} have {len(heads)} heads, not 1")
    return heads.pop(), frozenset(revisions), metadata.version("mlflow")


def sqlite_revision(db: Path) -> str | None:
    """The alembic revision stored in an existing SQLite file, opened read-only.

    None for an empty database (MLflow initialises it on first use); raises ValueError
    saying what is wrong when it is not a whole MLflow store.
    """
    with open(db, "rb") as file:
        header = file.read(100)
    if not header:
        return None
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        raise ValueError("is not an SQLite database")
    page_size = int.from_bytes(header[16:18])
    page_size = 65536 if page_size == 1 else page_size  # SQLite writes 1 for 65536
    pages = int.from_bytes(header[28:32])
    valid = header[24:28] == header[92:96]  # else the header's page count is stale
    expected, actual = page_size * pages, db.stat().st_size
    wal = db.with_name(f"{db.name}-wal").exists()  # pages may still be in the WAL
    if valid and not wal and actual < expected:
        raise ValueError(f"is truncated ({actual} bytes of the {expected} its header records)")
    try:
        with contextlib.closing(
            sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=2)
        ) as con:
            tables = {
                r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if not tables:
                return None
            if "alembic_version" not in tables:
                raise ValueError("has tables but no alembic_version: it is not an MLflow store")
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"cannot be read as SQLite ({exc})") from None
    if row is None:
        raise ValueError("has an empty alembic_version table: it is not a whole MLflow store")
    return row[0]


def store_problem(db: Path) -> tuple[str, str] | None:
    """(what is wrong, the fix) for the sqlite store ``db``; None when this MLflow can use
    it (or make it). The fix offers ``rm`` only for a store in the workspace."""
    if not db.is_file():
        return None
    schema = mlflow_schema()
    if schema is None:
        raise RuntimeError("mlflow is not installed")
    head, known, version = schema
    try:
        revision = sqlite_revision(db)
    except ValueError as exc:
        return str(exc), _remove_or(db, ELSEWHERE)
    if revision is None or revision == head:
        return None
    mlflow_bin = shell_path(Path(sys.executable).parent / "mlflow")
    keep = (
        f"to keep its runs, back it up (cp {shell_path(db)} {shell_path(f'{db}.bak')}), "
        f"then run: {mlflow_bin} db upgrade {shlex.quote(f'sqlite:///{db}')}"
    )
    if revision in known:
        what = f"has schema {revision} from an older MLflow; MLflow {version} expects {head}"
        return what, _remove_or(db, keep, first=keep)
    what = f"has schema {revision} from a newer or unknown MLflow; MLflow {version} expects {head}"
    return what, _remove_or(db, f"use the MLflow that made it, or {ELSEWHERE}")


def _remove_or(db: Path, otherwise: str, first: str = "") -> str:
    """The smallest fix: ``rm`` of just ``db`` (and its journal, if any) for a store in the
    workspace, saying what that loses; ``otherwise`` for a file the user chose."""
    if not db.absolute().is_relative_to(config.workspace_path().absolute()):
        return otherwise
    files = [db] + [
        side
        for ext in ("-journal", "-wal", "-shm")
        if (side := db.with_name(db.name + ext)).exists()
    ]
    rm = f"rm {' '.join(shell_path(f) for f in files)}"
    fresh = f"to start afresh ({LOSES}; MLflow makes a new, empty store on the next run), run: {rm}"
    return f"{first}; or, {fresh}" if first else fresh


def _ensure_store(mlflow, uri: str) -> None:
    """Check a sqlite store, and make it if missing, one process at a time.

    MLflow creates and migrates the sqlite schema on first use. Parallel runs (a batch,
    notebooks on Dask) that open a fresh store at once race through the migrations and
    leave it broken ("duplicate column name: step"), so the store is made under an
    exclusive lock (:func:`store_lock`). The check runs under a shared lock, which waits for
    a maker: a store half made is never reported broken. A process that finds it made opens
    it without taking a turn: opening a made store only reads. Later writes are safe: MLflow
    sets a 20 s sqlite busy timeout on every session.
    """
    db = _sqlite_path(uri)
    if db is None:
        return
    with store_lock(uri, shared=True):
        problem = store_problem(db)
        if problem is not None:
            what, fix = problem
            raise TrackingStoreError(f"tracking store {config.show_path(db)} {what}: {fix}")
        if _schema_version(db) is not None:
            return
    with store_lock(uri):
        if _schema_version(db) is None:  # nobody made it while we waited
            _make_store(mlflow, uri)


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


def _make_store(mlflow, uri: str) -> None:
    """Let MLflow create and migrate the sqlite store of ``uri``. With a store template set
    (the tests): copy the template there instead, or, when there is none yet, keep the new
    store as the template before anything is written into it (it then holds only MLflow's
    ``Default`` experiment, which the workbook does not use)."""
    db = _sqlite_path(uri)
    template = os.environ.get(STORE_TEMPLATE_ENV)
    if template and not db.exists() and Path(template).is_file():
        _sqlite_copy(Path(template), db)
        return
    fresh = not db.exists()
    mlflow.MlflowClient(tracking_uri=uri).get_experiment("0")  # MLflow makes it now
    if template and fresh:
        _sqlite_copy(db, Path(template))


def _sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a sqlite database (the backup API), written atomically."""

    def backup(tmp: Path) -> None:
        with (
            contextlib.closing(sqlite3.connect(source)) as src,
            contextlib.closing(sqlite3.connect(tmp)) as dst,
        ):
            src.backup(dst)

    atomic_write(target, backup)


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

    from mlops_helpers.training import FEATURES

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
    inputs: dict | None = None,
) -> str:
    """Log a result as an MLflow run (params, metrics, fingerprint, model); return the run id.

    ``rename_inputs``: see :func:`model_signature` (only for the rollback drill).
    ``inputs``: what the run trained on (a pipeline step's partitions and their
    fingerprints), kept as the run's ``inputs.json``.
    """
    from mlops_helpers.training import FEATURES

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
                **dict(zip(("data_first_day", "data_last_day"), result.data_days, strict=False)),
                **(tags or {}),
            }
        )
        if inputs is not None:
            mlflow.log_dict(inputs, "inputs.json")
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
        self.picked = port is None
        if self.picked:
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
        GenAI jobs, nine processes more, each importing MLflow at start, and the workbook
        runs no MLflow jobs. Set the variable to ``true`` to have them.

        A server that loses a port picked here (none given) before it binds it is started
        again on another, twice at most (:meth:`LoopbackServer._on_a_picked_port`)."""
        return self._on_a_picked_port(self.picked, self._start, free_port)

    def _start(self) -> TrackingServer:
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
