"""Behavioural tests of the viewability model: invariance and direction (notebook 08).

A held-out metric says how often the model is right; these say it is right for the right
reasons. The model is trained once, in memory, on two generated days put through the ETL's
transform (no files written), so the whole module runs in about a second.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_helpers import data, etl, training

SEED = 13
N_ROWS = 600


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """Two clean days, validated, joined and featured by the ETL's transform, in memory."""
    placements = data.generate_placements(SEED)
    days = data.day_range("2024-02-01", 2)
    return pd.concat(
        [
            etl.transform_day(
                data.generate_day(SEED, N_ROWS, d, placements=placements), placements
            ).table
            for d in days
        ],
        ignore_index=True,
    )


@pytest.fixture(scope="module")
def fitted(table) -> training.TrainResult:
    return training.fit_and_evaluate(table, seed=SEED)


@pytest.fixture(scope="module")
def model(fitted):
    return fitted.model


@pytest.fixture(scope="module")
def rows(table) -> pd.DataFrame:
    """200 rows with every column of the published table, not just the model's features."""
    return table.sample(n=200, random_state=SEED)


def scores(model, df: pd.DataFrame) -> pd.Series:
    return pd.Series(training.predict_proba(model, df), index=df.index)


# --- invariance: what should not matter does not change a prediction ----------------------


@pytest.mark.parametrize(
    "change",
    [
        lambda df: df.assign(impression_id="renamed"),
        lambda df: df.assign(ts=df["ts"] + pd.Timedelta(days=1)),
        lambda df: df.assign(placement_id="P000"),
        lambda df: df.assign(browser="firefox"),
        lambda df: df[list(reversed(df.columns))],
    ],
    ids=["impression-id", "event-date", "placement-id-alone", "extra-column", "column-order"],
)
def test_prediction_ignores_columns_that_are_not_features(model, rows, change):
    pd.testing.assert_series_equal(scores(model, change(rows)), scores(model, rows))


def test_prediction_of_a_row_ignores_the_other_rows_and_their_order(model, rows):
    shuffled = rows.sample(frac=1.0, random_state=1)
    np.testing.assert_allclose(
        scores(model, shuffled).reindex(rows.index), scores(model, rows), rtol=0, atol=1e-12
    )
    one_by_one = [training.predict_proba(model, rows.iloc[[i]])[0] for i in range(5)]
    np.testing.assert_allclose(one_by_one, scores(model, rows).iloc[:5], rtol=0, atol=1e-12)


# --- direction: what the data generator makes more viewable raises the score --------------


@pytest.mark.parametrize(
    ("column", "low", "high"),
    [
        ("scroll_depth", 0.2, 0.8),
        ("page_load_ms", 4000.0, 300.0),
        ("position", "below_fold", "above_fold"),
    ],
    ids=["deeper-scroll", "faster-page", "above-the-fold"],
)
def test_direction_the_score_rises_for_every_row(model, rows, column, low, high):
    rise = scores(model, rows.assign(**{column: high})) - scores(
        model, rows.assign(**{column: low})
    )
    assert (rise > 0).all(), f"raising {column} from {low} to {high} lowered some scores"
    assert rise.mean() > 0.05, f"raising {column} barely moves the score ({rise.mean():+.3f})"


def test_direction_catches_a_feature_wired_backwards_that_the_metric_misses(table, fitted, rows):
    """Scroll depth measured from the bottom in training: same AUC, wrong behaviour."""
    flipped = training.fit_and_evaluate(table.assign(scroll_depth=1 - table["scroll_depth"]), SEED)
    assert flipped.metrics["roc_auc"] == pytest.approx(fitted.metrics["roc_auc"], abs=1e-6)
    rise = scores(flipped.model, rows.assign(scroll_depth=0.8)) - scores(
        flipped.model, rows.assign(scroll_depth=0.2)
    )
    assert (rise < 0).all()


# --- minimum functionality ---------------------------------------------------------------


def test_scores_are_probabilities_and_beat_the_base_rate(table, fitted):
    proba = training.predict_proba(fitted.model, fitted.test_frame)
    assert ((proba > 0) & (proba < 1)).all()
    base_rate = table["viewable"].mean()
    assert fitted.metrics["accuracy"] > max(base_rate, 1 - base_rate)
    assert fitted.metrics["roc_auc"] > 0.65
