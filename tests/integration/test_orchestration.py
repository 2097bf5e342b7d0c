"""The daily pipeline on Dagster, in process on a DagsterInstance in a temp workspace: the
partitions published with their fingerprints in the asset metadata, the version trained_model
reported registered in MLflow and made champion through the gate, the drift sensor calm and
then firing once for the drifted day, and a retry after an injected failure.

One module fixture materializes the partitions and evaluates the sensor; the tests read what
it recorded. Drift is part of the settings' world (drift 1.0 from 2026-01-08), so the days
before it are calm and the sensor reads the very warehouse the assets published into.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import dagster as dg
import pytest

from mlops_helpers import config, etl, registry, tracking
from mlops_helpers.orchestration import definitions, home, sensor
from mlops_helpers.orchestration.backfill import QUIET
from mlops_helpers.orchestration.settings import load_settings

pytestmark = pytest.mark.slow

CALM_DAYS = ["2026-01-05", "2026-01-06", "2026-01-07"]
DRIFTED_DAY = "2026-01-08"
SETTINGS = f"""\
seed: 3
n_rows: 500
model_name: orchestration-test
start_day: "{CALM_DAYS[0]}"
window: 2
retries: 2
retry_delay: 0
world:
  drift: 1.0
  drift_from: "{DRIFTED_DAY}"
  drift_days: 1
sensor:
  psi_threshold: 0.2
  recent_days: 2
"""


def materializations(instance, asset: str, day: str) -> dict:
    """The metadata of the latest materialization of ``asset[day]``."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day]), limit=1
    ).records
    assert records, f"{asset}[{day}] was not materialized"
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Three calm days through the job (two warm-up days, then one trained and deployed), the
    sensor on them, then a drifted day published and the sensor twice more."""
    root = tmp_path_factory.mktemp("orchestration")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(config.HOME_ENV, str(root / "ws"))
        path = root / "orchestrator.yaml"
        path.write_text(SETTINGS)
        settings = load_settings(path)
        defs = definitions.build_definitions(settings)
        job = defs.resolve_job_def(definitions.JOB)
        instance = home.instance()
        runs = {
            day: job.execute_in_process(partition_key=day, instance=instance, run_config=QUIET)
            for day in CALM_DAYS
        }
        drift_sensor = defs.resolve_sensor_def("drift_sensor")
        calm = drift_sensor(dg.build_sensor_context(instance=instance))
        job.execute_in_process(
            partition_key=DRIFTED_DAY,
            instance=instance,
            run_config=QUIET,
            asset_selection=[dg.AssetKey("published_day")],
        )
        fired = drift_sensor(dg.build_sensor_context(instance=instance))
        again = drift_sensor(dg.build_sensor_context(instance=instance, cursor=fired.cursor))
        tracking.configure_tracking(experiment=definitions.EXPERIMENT)
        yield SimpleNamespace(
            settings=settings, job=job, instance=instance, runs=runs, calm=calm, fired=fired,
            again=again, workspace=root / "ws",
        )  # fmt: skip


def test_each_day_is_published_with_the_fingerprint_its_manifest_commits(world):
    for day in [*CALM_DAYS, DRIFTED_DAY]:
        meta = materializations(world.instance, "published_day", day)
        manifest = etl.read_manifest(world.workspace / meta["warehouse"] / "out", day)
        assert manifest is not None and meta["fingerprint"] == manifest["fingerprint"]
        assert meta["drift"] == (1.0 if day == DRIFTED_DAY else 0.0)
    assert all(r.success for r in world.runs.values())


def test_the_first_window_days_only_publish(world):
    for day in CALM_DAYS[:2]:
        run = world.runs[day]
        done = {e.step_key for e in run.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
        skipped = {e.step_key for e in run.all_events if e.event_type_value == "STEP_SKIPPED"}
        assert done == {"published_day"} and skipped == {"champion"}, day


def test_trained_model_registers_the_version_it_reports_and_champion_deploys_exactly_it(world):
    day = CALM_DAYS[2]
    trained = materializations(world.instance, "trained_model", day)
    assert json.loads(trained["train_days"]) == CALM_DAYS[:2], "the window days before D"
    published = {d: materializations(world.instance, "published_day", d) for d in CALM_DAYS[:2]}
    assert trained["fingerprints"] == {d: m["fingerprint"] for d, m in published.items()}
    name = world.settings.model_name
    version = registry.client().get_model_version(name, trained["model_version"])
    assert version.run_id == trained["run_id"]
    champion = materializations(world.instance, "champion", day)
    assert champion["model_version"] == trained["model_version"]
    assert (champion["status"], champion["gate_day"]) == ("deployed", day)
    assert registry.current_version(name, registry.CHAMPION) == trained["model_version"]


def test_the_sensor_skips_calm_days_saying_what_it_compared(world):
    assert isinstance(world.calm, dg.SkipReason)
    reason = world.calm.skip_message
    assert reason.startswith("calm: no feature drifted (max PSI ")
    assert f"on {CALM_DAYS[2]} against champion v1's training days 2026-01-05..2026-01-06" in reason


def test_the_sensor_requests_one_run_for_the_drifted_day_and_not_twice(world):
    (request,) = world.fired.run_requests
    assert request.partition_key == DRIFTED_DAY
    assert request.tags[definitions.TRIGGER_TAG].startswith("drift in ")
    assert sensor.read_cursor(world.fired.cursor) == [DRIFTED_DAY]
    assert isinstance(world.again, dg.SkipReason)
    assert "already requested a run (cursor)" in world.again.skip_message


def test_an_injected_failure_is_retried_and_the_run_succeeds(world, monkeypatch):
    monkeypatch.setenv(config.HOME_ENV, str(world.workspace))
    home.inject_failure("published_day", attempts=1)
    try:
        result = world.job.execute_in_process(
            partition_key=CALM_DAYS[0],
            instance=world.instance,
            run_config=QUIET,
            asset_selection=[dg.AssetKey("published_day")],
            raise_on_error=False,
        )
    finally:
        home.clear_failure("published_day")
    kinds = [e.event_type_value for e in result.all_events if e.step_key == "published_day"]
    assert result.success
    assert kinds.count("STEP_UP_FOR_RETRY") == 1 and kinds.count("STEP_RESTARTED") == 1
    assert kinds[-1] == "STEP_SUCCESS"
    retry = next(e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY")
    cause = retry.event_specific_data.error.cause
    assert cause.cls_name == "InjectedFailure"
    assert "injected failure of published_day, attempt 1" in cause.message
