"""MLflow tracking: an absolute sqlite store in the workspace by default, any URI by argument.

Offline and quiet: telemetry off, logs at WARNING, no progress bars, explicit
``pip_requirements`` (no slow inference), skops serialization for sklearn models.
mlflow is imported inside the functions, after its environment is set.
"""

from __future__ import annotations

import warnings
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pandas as pd

from mlops_helpers.config import apply_mlflow_env, ensure_workspace
from mlops_helpers.training import FEATURES, TrainResult

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
    """Point MLflow at ``tracking_uri`` (default: the workspace sqlite store), select
    ``experiment`` (created with an absolute artifact location), and return the URI."""
    mlflow = import_mlflow()
    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_absolute():
        raise ValueError(
            f"tracking URI {uri!r} is relative, so it depends on the working directory; "
            "use an absolute path: sqlite:////abs/path/mlflow.db"
        )
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    if client.get_experiment_by_name(experiment) is None:
        location = (artifact_root() / experiment).as_uri()
        if uri.startswith(("http://", "https://")):
            location = None  # the server decides (served artifacts)
        client.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    return uri


def pip_requirements() -> list[str]:
    """Exact versions of what the model needs to load, from this environment."""
    return [f"{name}=={metadata.version(name)}" for name in MODEL_PACKAGES]


def log_training(result: TrainResult, run_name: str, tags: dict[str, str] | None = None) -> str:
    """Log a result as an MLflow run (params, metrics, fingerprint, model); return the run id."""
    mlflow = import_mlflow()
    from mlflow.models import infer_signature

    example = result.test_frame.loc[:5, list(FEATURES)]
    with warnings.catch_warnings():
        # Our integer features never hold missing values: the ETL contract guarantees it.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        signature = infer_signature(example, result.model.predict_proba(example))
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
            signature=signature,
            input_example=example,
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
