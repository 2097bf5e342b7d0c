"""The workbook's curriculum: its notebooks, in order, with their maturity level and minutes,
and how a notebook is named on the command line (``03``, ``03_automated_etl``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlops_helpers.config import notebooks_dir
from mlops_helpers.parameters import ParameterError


@dataclass(frozen=True)
class Chapter:
    """One notebook in the curriculum: its maturity level, minutes for a learner, its point."""

    title: str
    level: str
    minutes: int
    shows: str


# The map of the workbook, shown by notebook 00 and the README (a test keeps them in step).
# Levels: Google's "MLOps: continuous delivery and automation pipelines in ML" (0 manual,
# 1 pipeline automation and continuous training, 2 CI/CD). Minutes: reading, running and
# the exercises at a learner's pace; a headless run takes seconds.
CURRICULUM = {
    "00_start_here": Chapter(
        "Start here", "-", 10, "environment check, the data, parameters and papermill, this map"
    ),
    "01_manual_etl": Chapter(
        "Manual ETL",
        "0",
        20,
        "hand-run extract, clean and join; every injected fault passes silently",
    ),
    "02_manual_deployment": Chapter(
        "Manual deployment",
        "0",
        25,
        "train, pickle, copy, serve by hand: retrains differ, no gate, no rollback",
    ),
    "03_automated_etl": Chapter(
        "Automated ETL",
        "1",
        30,
        "data contracts, quarantine with reasons, atomic idempotent partitions, lineage, backfill",
    ),
    "04_tracked_training": Chapter(
        "Tracked training",
        "1",
        20,
        "reproducible training in MLflow: same seed, data and parameters, identical metrics",
    ),
    "05_automated_deployment": Chapter(
        "Automated deployment",
        "1-2",
        30,
        "registry aliases, evaluation gate, the candidate served and smoke-tested before promotion, rollback",
    ),
    "06_notebook_pipeline": Chapter(
        "Notebook pipeline",
        "1",
        20,
        "step notebooks that hand each other artifacts, under papermill; a parallel backfill on Dask",
    ),
    "07_monitoring_and_retraining": Chapter(
        "Monitoring and retraining",
        "1",
        25,
        "drift on new days triggers retraining; the champion changes only through the gate",
    ),
    "08_testing_in_ci": Chapter(
        "Testing in CI",
        "1-2",
        25,
        "how the workbook tests itself: nbval, papermill, data and behavioural model tests, CI (level 2's CD is not here)",
    ),
    "09_proof_of_concept": Chapter(
        "Proof of concept",
        "-",
        20,
        "the business case, measured live: faults caught, time to detect and recover, steps",
    ),
    "10_orchestrator": Chapter(
        "The pipeline on an orchestrator",
        "1-2",
        20,
        "the steps as Dagster assets of daily partitions: a backfill, a drift sensor, retries",
    ),
    "11_batch_scoring": Chapter(
        "Batch scoring and late labels",
        "1",
        25,
        "unlabelled days scored by version, labels that arrive days later, drift with performance",
    ),
    "12_live_endpoint": Chapter(
        "A live endpoint: canary, shadow, rollback",
        "2",
        25,
        "nginx in front of scoring servers: versions switched under live traffic, no request failed",
    ),
}


def list_notebooks() -> list[Path]:
    """The workbook's notebooks (``NN_name.ipynb``), in order."""
    return sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))


def find_notebook(name: str) -> Path:
    """Resolve ``03``, ``03_automated_etl``, ``03_automated_etl.ipynb`` or a path to a notebook."""
    path = Path(name)
    if path.suffix == ".ipynb" and path.is_file():
        return path.resolve()
    stem = path.name.removesuffix(".ipynb")
    matches = [p for p in list_notebooks() if p.stem == stem or p.stem.split("_")[0] == stem]
    if len(matches) != 1:
        known = ", ".join(p.stem for p in list_notebooks())
        raise ParameterError(f"no notebook named {name!r}; choose one of: {known}")
    return matches[0]
