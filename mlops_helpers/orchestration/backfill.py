"""``mlops-workbook backfill``: materialize the ``daily`` job's partitions over a range of days.

One Dagster run per day, oldest first, on the instance in the workspace (``DAGSTER_HOME``),
as a Dagster backfill launches them. Days run in order because champion[D] gates against
the champion that day D-1 left, and trained_model[D] reads the days before D. Inside a day's
run, published_day[D] and trained_model[D] do not depend on each other (the model trains
on the days *before* D), so with ``workers`` of 2 or more the run uses Dagster's
multiprocess executor (``max_concurrent`` = workers) and they run at once; champion[D]
waits for both. ``workers`` 1 runs each day's steps one after another, in process.

The ``window`` days before the first day that no run has published yet are published
first (published_day alone), so trained_model has its window. Everything about the range
is checked before any run starts: a reversed range, or days outside the partitions, are
:class:`BackfillError` (the CLI's exit 2).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlops_helpers.config import show_path
from mlops_helpers.errors import WorkbookInputError
from mlops_helpers.orchestration.settings import SETTINGS_ENV, Settings

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
BACKFILL_TAG = "mlops/backfill"
# Step processes fork from a server that has imported these once (Dagster's forkserver
# start method), instead of each importing pandas, scikit-learn and MLflow afresh.
PRELOAD = [
    "mlops_helpers.orchestration.definitions",
    "mlops_helpers.steps",
    "mlops_helpers.etl",
    "mlops_helpers.training",
    "mlops_helpers.serving",
    "mlops_helpers.registry",
    "mlops_helpers.tracking",
    "mlflow",  # after config.apply_mlflow_env (run_day): the server inherits that env
    "mlflow.sklearn",
]
FORKSERVER = {"forkserver": {"preload_modules": PRELOAD}}


class BackfillError(WorkbookInputError, ValueError):
    """The range of a backfill is empty, reversed or outside the partitions."""


@dataclass
class Plan:
    """The days to run the job for, and the window days to publish first."""

    days: list[str]
    publish_first: list[str] = field(default_factory=list)


@dataclass
class DayResult:
    """One run of the backfill: its day, what ran, and what came out."""

    day: str
    run_id: str
    success: bool
    seconds: float
    what: str  # "job" or "published_day"
    outputs: dict = field(default_factory=dict)  # asset -> its materialization metadata
    error: str = ""


def last_partition(settings: Settings) -> str:
    """The last daily partition: the last day that has ended (UTC)."""
    import dagster as dg

    return dg.DailyPartitionsDefinition(start_date=settings.start_day).get_last_partition_key()


def plan_backfill(settings: Settings, first: str, last: str, instance=None) -> Plan:
    """The plan for ``first``..``last`` (ISO days); BackfillError before anything runs."""
    try:
        start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    except ValueError as exc:
        raise BackfillError(f"days are written YYYY-MM-DD: {exc}") from None
    if start > end:
        raise BackfillError(
            f"empty range: --from {first} is after --to {last}; give --from the earlier day"
        )
    newest = last_partition(settings)
    if start < dt.date.fromisoformat(settings.start_day) or newest is None or last > newest:
        raise BackfillError(
            f"{first}..{last} is outside the daily partitions, {settings.start_day}.."
            f"{newest or '(none yet)'} (start_day in {show_path(Path(settings.source))}; a day is a partition "
            "once it has ended); choose days in that range"
        )
    days = [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    window = [(start - dt.timedelta(days=k)).isoformat() for k in range(settings.window, 0, -1)]
    window = [d for d in window if d >= settings.start_day]
    if window and instance is not None:
        import dagster as dg

        done = instance.get_materialized_partitions(dg.AssetKey("published_day"))
        window = [d for d in window if d not in done]
    return Plan(days, window)


def _metadata(result) -> dict:
    """``asset: metadata`` of what a run materialized."""
    import dagster as dg

    out = {}
    for event in result.all_events:
        if event.event_type != dg.DagsterEventType.ASSET_MATERIALIZATION:
            continue
        mat = event.event_specific_data.materialization
        out[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
    return out


def run_day(instance, settings: Settings, day: str, workers: int, assets=None, tag="") -> DayResult:
    """One run of the job (or of ``assets`` only) for partition ``day``."""
    import dagster as dg

    from mlops_helpers import config
    from mlops_helpers.orchestration import definitions

    config.apply_mlflow_env()  # before the step processes (and their forkserver) start
    os.environ[SETTINGS_ENV] = settings.source  # the step processes rebuild the same defs
    executor = (
        {"multiprocess": {"max_concurrent": workers, "start_method": FORKSERVER}}
        if workers > 1
        else {"in_process": {}}
    )
    run_config = {**QUIET, "execution": {"config": executor}}
    tags = {"dagster/partition": day, **({BACKFILL_TAG: tag} if tag else {})}
    start = time.perf_counter()
    result = dg.execute_job(
        dg.reconstructable(definitions.daily_job),
        instance,
        run_config=run_config,
        tags=tags,
        asset_selection=[dg.AssetKey(a) for a in assets] if assets else None,
    )
    seconds = time.perf_counter() - start
    error = ""
    if not result.success:
        failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        error = (
            f"step {failures[-1].step_key} failed: {failures[-1].event_specific_data.error.message.strip()}"
            if failures
            else "the run failed"
        )
    return DayResult(
        day,
        result.run_id,
        result.success,
        seconds,
        "published_day" if assets else "job",
        _metadata(result),
        error,
    )


def run_backfill(
    settings: Settings, first: str, last: str, workers: int = 2, say=print, instance=None
) -> list[DayResult]:
    """Publish the missing window days, then run the job for every day of the range in
    order; stop at the first failed run (the days after it need its champion)."""
    from mlops_helpers.orchestration import home

    instance = instance or home.instance()
    plan = plan_backfill(settings, first, last, instance)
    tag = f"{first}..{last}"
    results = []
    for day in plan.publish_first:
        say(f"publishing {day} first (trained_model[{plan.days[0]}] trains on it)")
        results.append(run_day(instance, settings, day, workers, ["published_day"], tag))
        if not results[-1].success:
            return results
    for day in plan.days:
        results.append(run_day(instance, settings, day, workers, None, tag))
        r = results[-1]
        say(summary_line(r))
        if not r.success:
            break
    return results


def summary_line(r: DayResult) -> str:
    """``day  ok  12.3 s  published <fp>  v3 deployed`` for one run."""
    if not r.success:
        return f"{r.day}  FAILED  {r.seconds:6.1f} s  {r.error}"
    pub = r.outputs.get("published_day", {})
    model = r.outputs.get("trained_model", {})
    champ = r.outputs.get("champion", {})
    parts = [f"published {pub.get('fingerprint', '?')[:12]} ({pub.get('status', '?')})"]
    if model:
        parts.append(f"trained v{model['model_version']}")
    if champ:
        parts.append(f"{champ['status']}, champion v{champ['champion']}")
    elif r.what == "job":
        parts.append("no window yet: published only")
    return f"{r.day}  ok      {r.seconds:6.1f} s  " + "; ".join(parts)
