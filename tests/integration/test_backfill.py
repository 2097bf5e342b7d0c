"""``mlops-workbook backfill`` end to end, on a DagsterInstance in a temp workspace.

Pipelined (the default ``--workers 2``): a second process publishes and trains the days
ahead while champion[D] runs in day order, so every day is published, trained on exactly
the window days before it and deployed with exactly the version it trained. ``--workers 1``
runs the whole job for a day in process. A step that fails in the second process stops the
backfill at that day with exit 1, the champion unchanged and the rerun command printed.
"""

from __future__ import annotations

import json

import dagster as dg
import pytest

from mlops_helpers import config, etl, registry, tracking
from mlops_helpers.orchestration import definitions, home
from mlops_helpers.workbook import cli

pytestmark = pytest.mark.slow

SETTINGS = """\
seed: 5
n_rows: 500
model_name: backfill-test
start_day: "2026-01-05"
window: 2
retries: 0
"""
WINDOW_DAYS = ["2026-01-05", "2026-01-06"]
PIPELINED = ["2026-01-07", "2026-01-08"]


def latest(instance, asset: str, day: str) -> dict | None:
    """The metadata of the latest materialization of ``asset[day]``, or None."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day]), limit=1
    ).records
    if not records:
        return None
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def backfill(settings, first: str, last: str, *more: str) -> int:
    return cli.main(["backfill", "--from", first, "--to", last, "--settings", str(settings), *more])


def test_a_pipelined_backfill_deploys_every_day_in_order_and_stops_at_a_failed_day(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "ws"))
    settings = tmp_path / "orchestrator.yaml"
    settings.write_text(SETTINGS)

    assert backfill(settings, PIPELINED[0], PIPELINED[-1]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "pipelined: a second process publishes and trains ahead" in out
    assert all(f"publishing {d} first" in out for d in WINDOW_DAYS)
    assert "4 of 4 runs succeeded" in out, "two window days, then two days of the job"

    instance = home.instance()
    published = {}
    for day in [*WINDOW_DAYS, *PIPELINED]:
        meta = latest(instance, "published_day", day)
        manifest = etl.read_manifest(tmp_path / "ws" / meta["warehouse"] / "out", day)
        assert meta["fingerprint"] == manifest["fingerprint"], day
        published[day] = meta["fingerprint"]
    all_days = [*WINDOW_DAYS, *PIPELINED]
    versions = []
    for i, day in enumerate(PIPELINED):
        trained = latest(instance, "trained_model", day)
        window = all_days[i : i + 2]
        assert json.loads(trained["train_days"]) == window, f"{day} trains on the 2 days before"
        assert trained["fingerprints"] == {d: published[d] for d in window}
        champion = latest(instance, "champion", day)
        assert champion["model_version"] == trained["model_version"], "exactly that version"
        assert champion["gate_day"] == day and champion["status"] in {"deployed", "blocked"}
        assert f"{day}  ok" in out and f"trained v{trained['model_version']}" in out
        versions.append(trained["model_version"])
    assert versions == ["1", "2"], "registered in day order although trained ahead"
    tracking.configure_tracking(experiment=definitions.EXPERIMENT)
    champion_before = registry.current_version("backfill-test", registry.CHAMPION)
    assert champion_before == latest(instance, "champion", PIPELINED[-1])["champion"]

    # one day after another, in process: the same job, the next day
    assert backfill(settings, "2026-01-09", "2026-01-09", "--workers", "1") == 0
    assert "the whole job for one day after another" in capsys.readouterr().out
    assert latest(instance, "champion", "2026-01-09")["model_version"] == "3"

    # trained_model fails in the second process: the backfill stops at that day
    home.inject_failure("trained_model", attempts=1)
    try:
        code = backfill(settings, "2026-01-10", "2026-01-11")
    finally:
        home.clear_failure("trained_model")
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert "FAILED 2026-01-10: step trained_model failed" in captured.err
    assert "InjectedFailure: injected failure of trained_model, attempt 1" in captured.err
    assert "Traceback" not in captured.err
    assert "mlops-workbook backfill --from 2026-01-10 --to 2026-01-11" in captured.err
    assert latest(instance, "champion", "2026-01-10") is None
    assert latest(instance, "trained_model", "2026-01-11") is None, "nothing after the failure"
    champion_now = registry.current_version("backfill-test", registry.CHAMPION)
    assert champion_now == latest(instance, "champion", "2026-01-09")["champion"]
