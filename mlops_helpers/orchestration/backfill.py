"""``mlops-workbook backfill``: materialize the ``daily`` job's partitions over a range of days.

Runs on the instance in the workspace (``DAGSTER_HOME``), oldest day first. champion[D]
gates against the champion that day D-1 left, so the champions run in day order, one
after another. What does not wait for them is the rest: published_day[D] and
trained_model[D] (which trains on the ``window`` published days *before* D) need no
champion. So with ``workers`` 2 the backfill is a two-stage pipeline: a second process
runs published_day and trained_model for day after day, while this one runs champion[D]
as soon as trained_model[D] is stored (Dagster's filesystem IO manager hands it over
between the runs). Each stage runs its steps in process. ``workers`` 1 runs the whole job
for one day after another, in process.

Why not Dagster's multiprocess executor inside each day's run (the first design): each of
its step processes sets up Dagster again, which cost more than the overlap saved (16 s a
day against 6.5 s in process at 100,000 rows, benchmarks/orchestrator_backfill.py).

The ``window`` days before the first day that no run has published yet are published
first (published_day alone), so trained_model has its window. Everything about the range
is checked before any run starts: a reversed range, or days outside the partitions, are
:class:`BackfillError` (the CLI's exit 2).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlops_helpers.config import show_path
from mlops_helpers.errors import WorkbookInputError
from mlops_helpers.orchestration.settings import Settings

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
BACKFILL_TAG = "mlops/backfill"
AHEAD = ["published_day", "trained_model"]  # what the second process runs ahead


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
    run_id: str  # the day's runs, comma-separated (two when the backfill is pipelined)
    success: bool
    seconds: float
    what: str  # "job" (the day's assets) or "published_day" (a window day)
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


def daily_job(settings: Settings):
    """The ``daily`` job for these settings, MLflow's environment applied first."""
    from mlops_helpers import config
    from mlops_helpers.orchestration import definitions

    config.apply_mlflow_env()
    return definitions.build_definitions(settings).resolve_job_def(definitions.JOB)


def run_day(instance, job, day: str, assets=None, tag="") -> DayResult:
    """One in-process run of ``job`` (or of ``assets`` only) for partition ``day``."""
    import dagster as dg

    start = time.perf_counter()
    result = job.execute_in_process(
        run_config=QUIET,
        instance=instance,
        partition_key=day,
        tags={BACKFILL_TAG: tag} if tag else None,
        raise_on_error=False,  # a failed step is a DayResult
        asset_selection=[dg.AssetKey(a) for a in assets] if assets else None,
    )
    seconds = time.perf_counter() - start
    error = "" if result.success else _failure(result)
    what = "published_day" if assets == ["published_day"] else "job"
    return DayResult(day, result.run_id, result.success, seconds, what, _metadata(result), error)


def _failure(result) -> str:
    """``step trained_model failed: InjectedFailure: ...``: the failed step and the error
    that caused it (Dagster's own message is "Exceeded max_retries of 0")."""
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    if not failures:
        return "the run failed"
    error = failures[-1].event_specific_data.error
    while error.cause is not None:
        error = error.cause
    text = error.message.strip().split(": ", 1)[-1] if error.cls_name else error.message.strip()
    return f"step {failures[-1].step_key} failed: {error.cls_name or 'error'}: {text}"


def _merge(ahead: DayResult, champion: DayResult | None) -> DayResult:
    """Day D's two runs (published_day and trained_model, then champion) as one result."""
    if champion is None:
        return ahead
    return DayResult(
        ahead.day,
        f"{ahead.run_id},{champion.run_id}",
        champion.success,
        ahead.seconds + champion.seconds,
        "job",
        {**ahead.outputs, **champion.outputs},
        champion.error,
    )


def _run_ahead(source: str, home_dir: str, days: list[tuple[str, list[str]]], tag: str, queue):
    """The second process of a pipelined backfill: each (day, assets) in order, each
    result on ``queue``; stop at the first failure (the later days train on it)."""
    import dagster as dg

    from mlops_helpers.orchestration.settings import load_settings

    # the parent checked the instance's folder (home.instance); this is the same one
    job = daily_job(load_settings(source))
    instance = dg.DagsterInstance.from_config(home_dir)
    for day, assets in days:
        try:
            result = run_day(instance, job, day, assets, tag)
        except Exception as exc:  # a bug, not a step failure: the parent reports it
            result = DayResult(day, "", False, 0.0, "job", error=f"{type(exc).__name__}: {exc}")
        queue.put(result)
        if not result.success:
            return


def run_backfill(
    settings: Settings, first: str, last: str, workers: int = 2, say=print, instance=None
) -> list[DayResult]:
    """Publish the missing window days, then run the job for every day of the range in
    order (pipelined over two processes when ``workers`` > 1, see the module); stop at the
    first failed run (the days after it need its champion)."""
    from mlops_helpers.orchestration import home

    instance = instance or home.instance()
    plan = plan_backfill(settings, first, last, instance)
    tag = f"{first}..{last}"
    for day in plan.publish_first:
        say(f"publishing {day} first (trained_model[{plan.days[0]}] trains on it)")
    job = daily_job(settings)
    if workers > 1:
        return _pipelined(instance, job, settings, plan, tag, say)
    results = []
    for day in plan.publish_first:
        results.append(run_day(instance, job, day, ["published_day"], tag))
        if not results[-1].success:
            return results
    for day in plan.days:
        results.append(run_day(instance, job, day, None, tag))
        say(summary_line(results[-1]))
        if not results[-1].success:
            break
    return results


def _pipelined(instance, job, settings: Settings, plan: Plan, tag: str, say) -> list[DayResult]:
    """published_day and trained_model of day after day in a second process; champion[D]
    here, in day order, once the second process has stored trained_model[D]."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked locks
    queue = context.Queue()
    work = [(d, ["published_day"]) for d in plan.publish_first] + [(d, AHEAD) for d in plan.days]
    ahead = context.Process(
        target=_run_ahead,
        args=(settings.source, instance.root_directory, work, tag, queue),
        daemon=True,  # ends with this process, whatever happens here
    )
    ahead.start()
    results, received = [], []
    try:
        for day, _ in work:
            early = _get(queue, ahead, day)
            received.append(early)
            if not early.success or early.what == "published_day":
                results.append(early)
                if early.what == "job":
                    say(summary_line(early))
                if not early.success:
                    break
                continue
            trained = "trained_model" in early.outputs  # the first window days only publish
            champion = run_day(instance, job, day, ["champion"], tag) if trained else None
            results.append(_merge(early, champion))
            say(summary_line(results[-1]))
            if not results[-1].success:
                break
    finally:
        # it ends by itself once it has sent everything, or its failure
        ends = len(received) == len(work) or (received and not received[-1].success)
        ahead.join(timeout=30 if ends else 0)
        if ahead.is_alive():  # still running: a champion failed here, or it hangs
            ahead.terminate()
            ahead.join()
    return results


def _get(queue, ahead, day: str) -> DayResult:
    """The second process's next result; a failed result if it died without one."""
    import queue as queues

    while True:
        try:
            return queue.get(timeout=1.0)
        except queues.Empty:
            if not ahead.is_alive() and queue.empty():
                return DayResult(
                    day, "", False, 0.0, "job",
                    error=f"the backfill's second process ended (exit code {ahead.exitcode})",
                )  # fmt: skip


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
