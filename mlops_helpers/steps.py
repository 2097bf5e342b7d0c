"""The daily pipeline's steps: ETL, train, deploy, each a function with declared I/O.

Each step takes plain values (the artifacts the step before it produced) and returns a
plain dict (what it produced), like a Kedro node: no step reaches for data it was not
handed. The ETL step publishes day partitions into the workspace's warehouse and returns
each day's fingerprint (the SHA-256 its manifest commits); the train step reads exactly
those partitions, refusing any whose fingerprint changed, and registers a version; the
deploy step gates, serves, smoke-tests and promotes exactly that version. Every step is
safe to run again: the ETL skips unchanged days, a rerun of train registers a new version
of the same data (recorded, never overwriting), and deploy finishes or repeats its checks.
No step deletes a registered model or published data.

The same functions run as pipeline step notebooks (``pipelines/steps/*.ipynb``, run by
``mlops-workbook pipeline``) and as assets on the orchestrator (``mlops_helpers.orchestration``).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from mlops_helpers.config import ensure_workspace, workspace_path
from mlops_helpers.data import as_day, day_range, write_raw_dataset
from mlops_helpers.errors import WorkbookInputError
from mlops_helpers.storage import atomic_write

STEP_EXPERIMENT = "daily_pipeline"


class StepInputError(WorkbookInputError, ValueError):
    """A step was handed inputs it cannot use (missing, or changed since they were made)."""


def drift_on(day: str | dt.date, drift: float, drift_from: str = "", drift_days: int = 1) -> float:
    """The generator's drift on ``day`` in a world that drifts by ``drift``: from the start
    (no ``drift_from``), or ramping up over ``drift_days`` days from ``drift_from`` (0 before
    it, ``drift`` from its last day on), as notebook 07's second scenario does."""
    if not drift or not drift_from:
        return float(drift)
    k = (as_day(day) - as_day(drift_from)).days + 1
    return round(drift * min(max(k, 0), drift_days) / drift_days, 4)


def warehouse(
    seed: int, n_rows: int, drift: float = 0.0, drift_from: str = "", drift_days: int = 1
) -> Path:
    """The workspace folder a world's days are generated into and published from.

    A day is generated from ``seed``, the day and its drift (:func:`drift_on`), so one
    warehouse holds every day any run asks for: a later run or a backfill publishes more
    days beside them, and finds the days already published unchanged.
    """
    name = f"seed={seed}_rows={n_rows}_drift={drift:g}"
    if drift and drift_from:
        name += f"_from={as_day(drift_from).isoformat()}_over={drift_days}"
    return ensure_workspace("warehouse", name)


def _relative(path: Path) -> str:
    return Path(path).resolve().relative_to(workspace_path().resolve()).as_posix()


def _inside_workspace(text: str) -> Path:
    """A warehouse path a step was handed, refused if it leads outside the workspace."""
    root = workspace_path().resolve()
    path = (root / text).resolve()
    if not path.is_relative_to(root) or path == root:
        raise StepInputError(
            f"warehouse {text!r} is not inside the workspace; pass the `warehouse` the ETL "
            "step returned"
        )
    return path


def publish_day(
    seed: int,
    n_rows: int,
    day: str | dt.date,
    drift: float = 0.0,
    drift_from: str = "",
    drift_days: int = 1,
) -> dict[str, Any]:
    """Generate (once) and publish one day into its world's warehouse; skip it when unchanged.

    Returns ``{"warehouse", "day", "fingerprint", "status"}`` (status ``published`` or
    ``unchanged``); a day that fails its contract raises, publishing nothing.
    """
    from mlops_helpers import etl

    root = warehouse(seed, n_rows, drift, drift_from, drift_days)
    here = drift_on(day, drift, drift_from, drift_days)
    (the_day,) = write_raw_dataset(root / "raw", seed, n_rows, day, 1, drift=here)
    report = etl.run_day(root / "raw", root / "out", the_day)
    return {
        "warehouse": _relative(root),
        "day": report.day,
        "fingerprint": report.fingerprint,
        "status": report.status,
    }


def etl_step(
    seed: int,
    n_rows: int,
    start_day: str,
    n_days: int,
    gate_days: int = 1,
    drift: float = 0.0,
    drift_from: str = "",
    drift_days: int = 1,
) -> dict[str, Any]:
    """Publish ``n_days`` days from ``start_day``; the last ``gate_days`` are for the gate.

    Returns ``{"warehouse", "train": [{"day", "fingerprint"}, ...], "gate": [...],
    "published": n, "unchanged": n}``. A day whose raw inputs and ETL code are unchanged is
    skipped (its fingerprint is returned as it was published).
    """
    if not 1 <= gate_days < n_days:
        raise StepInputError(
            f"gate_days={gate_days} with n_days={n_days}: the gate needs at least one day the "
            "model did not train on and training at least one day; use 1 <= gate_days < n_days"
        )
    world = {"drift": drift, "drift_from": drift_from, "drift_days": drift_days}
    days = [publish_day(seed, n_rows, d, **world) for d in day_range(start_day, n_days)]
    parts = [{"day": d["day"], "fingerprint": d["fingerprint"]} for d in days]
    return {
        "warehouse": days[0]["warehouse"],
        "train": parts[:-gate_days],
        "gate": parts[-gate_days:],
        "published": sum(d["status"] == "published" for d in days),
        "unchanged": sum(d["status"] == "unchanged" for d in days),
    }


def read_exactly(warehouse_dir: str, partitions: list[dict]):
    """The table of exactly these partitions, each checked against the fingerprint given.

    StepInputError when a day is not published or was republished with other content since
    the step that handed it over read its fingerprint.
    """
    from mlops_helpers import etl

    if not partitions:
        raise StepInputError("no partitions were handed over; run the ETL step first")
    out = _inside_workspace(warehouse_dir) / "out"
    for part in partitions:
        manifest = etl.read_manifest(out, part["day"])
        if manifest is None:
            raise StepInputError(
                f"day {part['day']} is not published in {warehouse_dir}; run the ETL step for it"
            )
        if manifest["fingerprint"] != part["fingerprint"]:
            raise StepInputError(
                f"day {part['day']} changed since the ETL step handed it over (fingerprint "
                f"{manifest['fingerprint'][:12]}, expected {part['fingerprint'][:12]}); "
                "rerun the pipeline from the ETL step"
            )
    return etl.read_partitions(out, [p["day"] for p in partitions])


def train_step(
    warehouse: str,
    train: list[dict],
    model_name: str,
    seed: int,
    C: float = 1.0,
    experiment: str = STEP_EXPERIMENT,
    reason: str = "",
) -> dict[str, Any]:
    """Fit on exactly the ``train`` partitions, log the run with them, register a challenger.

    ``reason`` (why this training ran, e.g. the retraining trigger's) is tagged on the run
    as ``trigger`` and kept in the registry's alias history.

    Returns ``{"model_name", "model_version", "run_id", "data_fingerprint", "train_days",
    "metrics"}``.
    """
    from mlops_helpers import registry, tracking, training

    table = read_exactly(warehouse, train)
    result = training.fit_and_evaluate(table, seed, C=C)
    tracking.configure_tracking(experiment=experiment)
    days = [p["day"] for p in train]
    span = days[0] if len(days) == 1 else f"{days[0]}..{days[-1]}"
    run_id = tracking.log_training(
        result,
        f"train {span}",
        tags={
            "train_days": span,
            "warehouse": warehouse,
            **({"trigger": reason} if reason else {}),
        },
        inputs={"warehouse": warehouse, "train": train},
    )
    why = f"trained by the pipeline on {span}" + (f": {reason}" if reason else "")
    version = registry.register(run_id, model_name, reason=why)
    return {
        "model_name": model_name,
        "model_version": version,
        "run_id": run_id,
        "data_fingerprint": result.data_fingerprint,
        "train_days": days,
        "metrics": {k: round(v, 6) for k, v in result.metrics.items()},
    }


def deploy_step(
    warehouse: str, gate: list[dict], model_name: str, model_version: str
) -> dict[str, Any]:
    """Gate ``model_version`` on exactly the ``gate`` partitions; serve, smoke-test and
    promote it only if it passes (``serving.deploy``). A blocked version is an outcome, not a
    failure: the step returns it and the champion stays.

    Returns ``{"model_name", "model_version", "status", "failed_step", "champion",
    "message"}``.
    """
    from mlops_helpers import serving, tracking

    table = read_exactly(warehouse, gate)
    tracking.configure_tracking(experiment=STEP_EXPERIMENT)
    report = serving.deploy(model_name, model_version, table)
    return {
        "model_name": model_name,
        "model_version": str(model_version),
        "status": report.status,
        "failed_step": report.failed_step,
        "champion": report.champion_after,
        "message": report.message,
    }


def read_inputs(text: str) -> dict[str, Any]:
    """A step notebook's ``inputs`` parameter: the JSON object the runner passes."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise StepInputError(f"inputs is not JSON ({exc}); the pipeline runner passes it") from None
    if not isinstance(value, dict):
        raise StepInputError("inputs must be a JSON object of NAME: VALUE")
    return value


def write_outputs(outputs_file: str, outputs: dict[str, Any]) -> dict[str, Any]:
    """Write a step's outputs where the runner asked (atomically); return them for display."""
    if outputs_file:
        text = json.dumps(outputs, indent=2, sort_keys=True, default=str) + "\n"
        atomic_write(Path(outputs_file), lambda tmp: tmp.write_text(text))
    return outputs
