"""``drift_sensor``: the monitoring trigger (:mod:`mlops_helpers.monitoring`) as a Dagster
sensor.

Reference: the days the current champion was trained on, read from its MLflow run (the
``inputs.json`` that :func:`mlops_helpers.steps.train_step` logs: warehouse, days and
fingerprints), each checked against its fingerprint. Current: the latest ``recent_days``
published partitions after those days, with the fingerprints their materializations
recorded. A day whose :func:`~mlops_helpers.monitoring.drift_report` triggers retraining
gets a run of the ``daily`` job for its partition (retrain on the window before it, gate on
the drifted day itself), tagged with the trigger's reason, which train_step records on
the MLflow run. The cursor keeps the days already requested, so a day fires once; calm days
are a SkipReason saying what was compared and the largest PSI.

Drift is part of the settings' world (``world.drift``, ``drift_from``, ``drift_days``):
the days of one world live in one warehouse (:func:`mlops_helpers.steps.warehouse`), so
the sensor reads the very partitions the assets published.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import dagster as dg

from mlops_helpers.orchestration.settings import Settings

PUBLISHED = dg.AssetKey("published_day")


@dataclass
class Decision:
    """What one evaluation decided: days to run (with the reason), or why not."""

    run_days: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    skip: str = ""
    requested: list[str] = field(default_factory=list)  # the cursor after this evaluation


def read_cursor(text: str | None) -> list[str]:
    """The days a cursor says were already requested."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return []
    days = value.get("requested", []) if isinstance(value, dict) else []
    return [d for d in days if isinstance(d, str)]


def published_partitions(instance: dg.DagsterInstance) -> dict[str, dict]:
    """``day: {"day", "fingerprint", "warehouse"}`` of every materialized published_day,
    from its latest materialization's metadata."""
    days = {}
    for day in sorted(instance.get_materialized_partitions(PUBLISHED)):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=PUBLISHED, asset_partitions=[day]), limit=1
        ).records
        if not records:
            continue
        meta = records[0].asset_materialization.metadata
        days[day] = {
            "day": day,
            "fingerprint": meta["fingerprint"].value,
            "warehouse": meta["warehouse"].value,
        }
    return days


def champion_training(model_name: str) -> tuple[str, dict] | None:
    """``(version, inputs.json)`` of the champion's training run, or None without one."""
    from mlops_helpers import registry, tracking

    mlflow = tracking.import_mlflow()
    version = registry.current_version(model_name, registry.CHAMPION)
    if version is None:
        return None
    run_id = registry.client().get_model_version(model_name, version).run_id
    artifact_uri = mlflow.get_run(run_id).info.artifact_uri
    try:
        inputs = mlflow.artifacts.load_dict(f"{artifact_uri}/inputs.json")
    except Exception:  # noqa: BLE001 - a champion not trained by the pipeline's train step
        inputs = {}
    return version, inputs


def decide(settings: Settings, instance: dg.DagsterInstance, cursor: str | None) -> Decision:
    """The sensor's decision for the current champion and published days."""
    from mlops_helpers import monitoring, steps, tracking

    requested = read_cursor(cursor)
    tracking.configure_tracking(experiment="orchestrator")
    found = champion_training(settings.model_name)
    if found is None:
        return Decision(
            skip=f"model {settings.model_name!r} has no champion yet: materialize a partition "
            "of the daily job first",
            requested=requested,
        )
    version, inputs = found
    if not inputs.get("train"):
        return Decision(
            skip=f"champion v{version} of {settings.model_name!r} has no recorded training "
            "days (inputs.json): it was not trained by the daily pipeline",
            requested=requested,
        )
    trained = [p["day"] for p in inputs["train"]]
    published = published_partitions(instance)
    recent = [d for d in published if d > max(trained)][-settings.recent_days :]
    span = f"{trained[0]}..{trained[-1]}" if len(trained) > 1 else trained[0]
    if not recent:
        return Decision(
            skip=f"no day published after champion v{version}'s training days ({span})",
            requested=requested,
        )
    reference = steps.read_exactly(inputs["warehouse"], inputs["train"])
    tables = {d: steps.read_exactly(published[d]["warehouse"], [published[d]]) for d in recent}
    daily = monitoring.daily_drift(
        reference, tables, monitoring.DriftThresholds(settings.psi_threshold)
    )
    reasons = {}
    for day, report in daily.groupby(level="day", sort=False):
        trigger = monitoring.retrain_trigger(report)
        if trigger.retrain:
            reasons[day] = f"{trigger.reason()} on {day} vs champion v{version} ({span})"
    compared = f"{recent[0]}..{recent[-1]}" if len(recent) > 1 else recent[0]
    if not reasons:
        calm = monitoring.retrain_trigger(daily)
        return Decision(
            skip=f"calm: {calm.reason()} on {compared} against champion v{version}'s training "
            f"days {span} (PSI threshold {settings.psi_threshold:g}, higher on a day too small for it)",
            requested=requested,
        )
    new = [d for d in reasons if d not in requested]
    if not new:
        return Decision(
            skip=f"drift on {', '.join(reasons)} already requested a run (cursor); nothing new",
            requested=requested,
        )
    return Decision(
        run_days=new,
        reasons={d: reasons[d] for d in new},
        requested=sorted({*requested, *new}),
    )


def build_sensor(settings: Settings, job: dg.UnresolvedAssetJobDefinition) -> dg.SensorDefinition:
    """``drift_sensor`` over ``job`` for these settings."""
    from mlops_helpers.orchestration.definitions import TRIGGER_TAG

    @dg.sensor(
        name="drift_sensor",
        job=job,
        minimum_interval_seconds=settings.sensor_interval,
        description="Requests a run of the daily job for a published day that drifted from "
        f"the champion's training days (PSI above {settings.psi_threshold:g}, or above the "
        "noise of a smaller day; the latest "
        f"{settings.recent_days} days); once per day (cursor).",
    )
    def drift_sensor(context: dg.SensorEvaluationContext):
        decision = decide(settings, context.instance, context.cursor)
        if not decision.run_days:
            return dg.SkipReason(decision.skip)
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"drift-{day}",
                    partition_key=day,
                    tags={TRIGGER_TAG: decision.reasons[day][:500]},
                )
                for day in decision.run_days
            ],
            cursor=json.dumps({"requested": decision.requested}),
        )

    return drift_sensor
