"""Batch scoring on a real MLflow store: unlabelled days scored into prediction partitions
that name their version and data, byte-identical on a rerun, one folder per version; a
day that is not published, a version or alias that does not exist, a torn or changed
file: each refused or repaired with the fix named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlops_helpers import data, etl, registry, scoring, training
from mlops_helpers.errors import WorkbookInputError

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("on_store")]

SEED, ROWS, DAYS = 1, 400, ["2026-01-09", "2026-01-10"]


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    """Two new days' raw extracts, their impressions published without labels."""
    root = tmp_path_factory.mktemp("scoring")
    raw, unlabelled = root / "raw", root / "unlabelled"
    data.write_raw_dataset(raw, SEED, ROWS, DAYS[0], len(DAYS))
    etl.run_days(raw, unlabelled, [data.as_day(d) for d in DAYS], labelled=False)
    return root, raw, unlabelled


@pytest.fixture(scope="module")
def scored(pointed, days, make_champion, good_run):
    """The champion scored both days, once."""
    root, _, unlabelled = days
    name, version = make_champion(good_run, "score")
    with pointed():
        first = [scoring.score_day(unlabelled, root / "predictions", d, name) for d in DAYS]
    return name, version, first


def test_predictions_are_the_champions_on_the_published_rows(scored, days):
    root, _, unlabelled = days
    name, version, first = scored
    assert [s.version for s in first] == [version, version] and {s.status for s in first} == {
        "scored"
    }
    rows = etl.read_partitions(unlabelled, [DAYS[0]])
    got = scoring.read_predictions(root / "predictions", DAYS[0])
    model = registry.load_sklearn(name, version)
    assert list(got["impression_id"]) == list(rows["impression_id"])
    np.testing.assert_allclose(got["proba"], training.predict(model, rows), rtol=0, atol=1e-12)
    assert set(got["model_version"]) == {version}
    manifest = json.loads(
        (
            scoring.prediction_dir(root / "predictions", DAYS[0], version) / "_manifest.json"
        ).read_text()
    )
    assert manifest["data_fingerprint"] == etl.read_manifest(unlabelled, DAYS[0])["fingerprint"]
    assert manifest["model"] == name and manifest["rows"] == len(rows) and manifest["scored_at"]


def test_scoring_again_changes_no_byte(scored, days):
    root, _, unlabelled = days
    name, version, first = scored
    folder = scoring.prediction_dir(root / "predictions", DAYS[0], version)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    again = scoring.score_day(unlabelled, root / "predictions", DAYS[0], name, version)
    assert again.status == "unchanged" and again.scored_at == first[0].scored_at
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_second_version_scores_beside_the_first(scored, days, store, good_run):
    root, _, unlabelled = days
    name, version, _ = scored
    second = registry.register(good_run, name)  # the challenger alias points here now
    result = scoring.score_day(unlabelled, root / "predictions", DAYS[1], name, "challenger")
    assert result.version == second != version
    assert scoring.scored_versions(root / "predictions", DAYS[1]) == [version, second]
    both = scoring.read_predictions(root / "predictions", DAYS[1])
    assert both.groupby("model_version").size().to_dict() == {
        version: result.rows,
        second: result.rows,
    }


def test_a_torn_write_is_scored_again_and_a_changed_file_refused(scored, days):
    root, _, unlabelled = days
    name, version, _ = scored
    folder = scoring.prediction_dir(root / "predictions", DAYS[0], version)
    good = (folder / "part.parquet").read_bytes()
    (folder / "part.parquet").write_bytes(good[: len(good) // 2])  # killed between renames
    with pytest.raises(
        scoring.ScoringError, match="do not match their manifest.*score the day again"
    ):
        scoring.read_predictions(root / "predictions", DAYS[0], version)
    again = scoring.score_day(unlabelled, root / "predictions", DAYS[0], name, version)
    assert again.status == "scored" and (folder / "part.parquet").read_bytes() == good


def test_a_day_not_published_is_refused_with_the_fix(scored, days):
    root, raw, unlabelled = days
    name, _, _ = scored
    data.write_raw_dataset(raw, SEED, ROWS, "2026-01-20", 1, "schema_change")
    with pytest.raises(Exception, match="page_load_ms"):  # the contract blocks the day
        etl.run_day(raw, unlabelled, "2026-01-20", labelled=False)
    for day in ("2026-01-20", "2026-02-01"):
        with pytest.raises(scoring.ScoringError, match=f"day {day} is not published") as err:
            scoring.score_day(unlabelled, root / "predictions", day, name)
        assert isinstance(err.value, WorkbookInputError)
    assert not (root / "predictions" / "day=2026-01-20").exists(), "nothing half-written"


@pytest.mark.parametrize(
    ("model", "words"), [("7", "has no version 7"), ("canary", "has no alias 'canary'")]
)
def test_a_version_or_alias_that_does_not_exist_is_refused(scored, days, model, words):
    root, _, unlabelled = days
    name, _, _ = scored
    with pytest.raises(registry.ModelNotFound, match=words):
        scoring.score_day(unlabelled, root / "predictions", DAYS[0], name, model)


def test_performance_counts_matured_labels_only(scored, days):
    root, raw, _ = days
    _, version, _ = scored
    predictions = scoring.read_predictions(root / "predictions", DAYS[0], version)
    by_day = {}
    for as_of in ("2026-01-09", "2026-01-11", "2026-01-14"):
        labels = scoring.matured_labels(raw, DAYS[0], as_of, delay_days=2, seed=SEED)
        by_day[as_of] = scoring.day_performance(scoring.attach_labels(predictions, labels))
    assert by_day["2026-01-09"]["matured"] == 0 and by_day["2026-01-09"]["roc_auc"] is None
    assert 0 < by_day["2026-01-11"]["matured"] < by_day["2026-01-14"]["matured"]
    every_label = scoring.matured_labels(raw, DAYS[0], "2027-01-01", 2, SEED)
    assert (
        by_day["2026-01-14"]["matured"]
        == predictions["impression_id"].isin(every_label["impression_id"]).sum()
    ), "four days after the delay, every label the vendor has is in"
    week = by_day["2026-01-14"]
    assert week["low"] < week["roc_auc"] < week["high"]
