"""The workbook's daily pipeline as Dagster assets: ``defs``, what ``dagster dev -m
mlops_helpers.orchestration.definitions`` loads (``mlops-workbook orchestrator``).

Three assets, partitioned by day, each calling one step function of
:mod:`mlops_helpers.steps` (the functions the pipeline's step notebooks call; dagstermill is
not used, it needs an older jupyter-client than the workbook's):

- ``published_day[D]``: :func:`~mlops_helpers.steps.publish_day` of day D; its metadata
  records the partition's fingerprint (the SHA-256 its manifest commits).
- ``trained_model[D]``: :func:`~mlops_helpers.steps.train_step` on the ``window``
  published days before D (a :class:`~dagster.TimeWindowPartitionMapping` on
  ``published_day``), handed over with their fingerprints and checked on read; records
  the registered version, the run id and the fingerprints. The first ``window``
  partitions have no such window: they only publish, and their trained_model and champion
  are skipped, not failed.
- ``champion[D]``: :func:`~mlops_helpers.steps.deploy_step` of exactly the version
  trained_model[D] registered, gated on day D (never trained on): served, smoke-tested and
  promoted only if it passes; a blocked version is an outcome recorded in the metadata.

The job ``daily`` runs the three for one day; ``daily_schedule`` runs it every day for the
day that has just ended; ``drift_sensor`` (:mod:`.sensor`) requests a run of it for a
published day that drifted away from the champion's training days. Every asset retries
(``retries`` and ``retry_delay`` of the settings). Schedule and sensor start stopped: turn
them on in the UI.

Settings come from ``pipelines/orchestrator.yaml`` (or ``$MLOPS_ORCHESTRATOR_SETTINGS``),
checked when this module is imported: a wrong value stops the import with the file and line.
"""

# No `from __future__ import annotations`: Dagster checks the `context` annotation itself.
import json
import warnings
from typing import Any

import dagster as dg

from mlops_helpers.orchestration import home
from mlops_helpers.orchestration.settings import Settings, load_settings

JOB = "daily"
EXPERIMENT = "orchestrator"
TRIGGER_TAG = "mlops/trigger"  # a run's reason (the sensor's drift), passed to train_step


class InjectedFailure(Exception):
    """The failure a marker file asked for (:func:`home.inject_failure`): the retry lesson."""


def fail_if_injected(context: dg.AssetExecutionContext, asset: str) -> None:
    """Raise on the first N attempts of ``asset`` while its marker file says N."""
    marker = home.failure_marker(asset)
    if not marker.is_file():
        return
    attempts = home._attempts(marker)
    if context.retry_number < attempts:
        raise InjectedFailure(
            f"injected failure of {asset}, attempt {context.retry_number + 1} of the first "
            f"{attempts} that fail (marker {marker.name} in DAGSTER_HOME/{home.INJECT_FOLDER}; "
            "remove it to stop)"
        )


def _by_day(context: dg.AssetExecutionContext, name: str, loaded: Any) -> dict[str, dict]:
    """An input of one or more published days as ``day: published_day output``."""
    keys = sorted(context.asset_partition_keys_for_input(name))
    if not keys or loaded is None:
        return {}
    if len(keys) == 1 and "fingerprint" in loaded:
        return {keys[0]: loaded}
    return {day: loaded[day] for day in keys}


def build_definitions(settings: Settings) -> dg.Definitions:
    """The assets, job, schedule and sensor for these settings."""
    from mlops_helpers.orchestration.sensor import build_sensor

    partitions = dg.DailyPartitionsDefinition(start_date=settings.start_day)
    retry = dg.RetryPolicy(max_retries=settings.retries, delay=settings.retry_delay or None)
    with warnings.catch_warnings():  # the first `window` days have no days before them
        warnings.simplefilter("ignore", dg.BetaWarning)
        window = dg.TimeWindowPartitionMapping(
            start_offset=-settings.window,
            end_offset=-1,
            allow_nonexistent_upstream_partitions=True,
        )

    @dg.asset(
        partitions_def=partitions,
        retry_policy=retry,
        group_name="daily_pipeline",
        kinds={"python"},
        description="Day D generated and published into the warehouse (steps.publish_day); "
        "its fingerprint in the metadata.",
    )
    def published_day(context: dg.AssetExecutionContext) -> dict:
        from mlops_helpers import steps

        fail_if_injected(context, "published_day")
        day = context.partition_key
        out = steps.publish_day(settings.seed, settings.n_rows, day, **settings.world())
        context.add_output_metadata(
            {
                "day": out["day"],
                "fingerprint": out["fingerprint"],
                "warehouse": out["warehouse"],
                "status": out["status"],
                "drift": steps.drift_on(day, **settings.world()),
            }
        )
        return out

    @dg.asset(
        partitions_def=partitions,
        retry_policy=retry,
        group_name="daily_pipeline",
        kinds={"mlflow"},
        ins={"published": dg.AssetIn("published_day", partition_mapping=window)},
        output_required=False,
        description=f"A model trained on the {settings.window} published days before D "
        "(steps.train_step), registered as challenger; version, run id and fingerprints in "
        "the metadata.",
    )
    def trained_model(context: dg.AssetExecutionContext, published):
        from mlops_helpers import steps

        fail_if_injected(context, "trained_model")
        days = _by_day(context, "published", published)
        if len(days) < settings.window:
            context.log.info(
                f"{context.partition_key} is within the first {settings.window} days of the "
                f"partitions ({len(days)} published days before it): nothing to train on yet; "
                "this day only publishes"
            )
            return
        train = [{"day": d, "fingerprint": days[d]["fingerprint"]} for d in sorted(days)]
        (warehouse,) = {p["warehouse"] for p in days.values()}
        out = steps.train_step(
            warehouse,
            train,
            settings.model_name,
            settings.seed,
            experiment=EXPERIMENT,
            reason=context.run.tags.get(TRIGGER_TAG, ""),
        )
        yield dg.Output(
            out,
            metadata={
                "model_name": out["model_name"],
                "model_version": out["model_version"],
                "run_id": out["run_id"],
                "data_fingerprint": out["data_fingerprint"],
                "train_days": json.dumps(out["train_days"]),
                "fingerprints": dg.MetadataValue.json({p["day"]: p["fingerprint"] for p in train}),
                "warehouse": warehouse,
                **{k: float(v) for k, v in out["metrics"].items()},
                "trigger": context.run.tags.get(TRIGGER_TAG, "") or "-",
            },
        )

    @dg.asset(
        partitions_def=partitions,
        retry_policy=retry,
        group_name="daily_pipeline",
        kinds={"mlflow"},
        ins={"trained_model": dg.AssetIn(), "published": dg.AssetIn("published_day")},
        description="Exactly the version trained_model[D] registered, gated on day D, served, "
        "smoke-tested and promoted only if it passed (steps.deploy_step).",
    )
    def champion(context: dg.AssetExecutionContext, trained_model: dict, published: dict):
        from mlops_helpers import steps

        fail_if_injected(context, "champion")
        gate = [{"day": published["day"], "fingerprint": published["fingerprint"]}]
        out = steps.deploy_step(
            published["warehouse"],
            gate,
            trained_model["model_name"],
            trained_model["model_version"],
        )
        context.add_output_metadata(
            {
                "model_version": out["model_version"],
                "status": out["status"],
                "champion": out["champion"] or "-",
                "failed_step": out["failed_step"] or "-",
                "message": out["message"],
                "gate_day": published["day"],
            }
        )
        return out

    job = dg.define_asset_job(
        JOB,
        selection=[published_day, trained_model, champion],
        description="Publish day D, train on the days before it, deploy that version gated on D.",
    )
    schedule = dg.build_schedule_from_partitioned_job(job, name="daily_schedule")
    return dg.Definitions(
        assets=[published_day, trained_model, champion],
        jobs=[job],
        schedules=[schedule],
        sensors=[build_sensor(settings, job)],
        resources={"io_manager": dg.FilesystemIOManager()},
    )


defs = build_definitions(load_settings())
