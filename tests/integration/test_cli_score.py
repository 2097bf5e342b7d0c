"""``mlops-workbook score`` in process, on a workspace of its own: the champion scores a day
published without labels; a rerun changes nothing; a missing alias or version and a day its
contract blocks exit 2 before anything is written."""

from __future__ import annotations

import pytest

from mlops_helpers import etl, registry, scoring, tracking, training
from mlops_helpers.workbook import cli

pytestmark = pytest.mark.slow

DAY = "2026-01-08"


def score(*args: str) -> int:
    return cli.main(["score", "--n-rows", "500", *args])


def test_score_a_day_then_refuse_what_cannot_be_scored(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLOPS_WORKBOOK_HOME", str(tmp_path / "ws"))
    assert score() == 2
    assert "model 'viewability' has no alias 'champion'; deploy a version first" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "ws" / "datasets").exists(), "refused before any day was generated"

    tracking.configure_tracking(experiment="cli")
    table = etl.build_training_table(42, 500, "2026-01-05", 3)
    version = registry.register(
        tracking.log_training(training.fit_and_evaluate(table, 42), "cli"), "viewability"
    )
    registry.set_alias("viewability", "champion", version, "the test's champion")

    assert score() == 0
    first = capsys.readouterr().out
    assert first.startswith(f"scored: day {DAY}, ") and f"viewability version {version}" in first
    world = etl.dataset(42, 500, DAY, 1)
    predictions = world.root / "predictions"
    assert scoring.scored_versions(predictions, DAY) == [version]
    assert (
        len(scoring.read_predictions(predictions, DAY))
        == etl.read_manifest(world.root / "unlabelled", DAY)["rows_out"]
    )
    assert score("--version", version) == 0
    assert capsys.readouterr().out.startswith(f"unchanged: day {DAY}, ")

    assert score("--version", "9") == 2
    assert "model 'viewability' has no version 9; name a version it has" in capsys.readouterr().err
    assert score("--day", "2026-01-09", "--fault", "schema_change") == 2
    err = capsys.readouterr().err
    assert "day 2026-01-09 cannot be scored, its impressions were blocked" in err
    assert "page_load_time_ms" in err
    blocked = etl.dataset(42, 500, "2026-01-09", 1, "schema_change").root
    assert not (blocked / "predictions").exists()
    assert not list(blocked.glob("unlabelled/processed/day=*/_manifest.json")), "nothing published"
