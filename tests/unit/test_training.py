"""training: reproducible fit and fingerprint, clear errors, and behavioural sanity of the model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_helpers import etl, training


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """Two clean published days (workbook-sized), read back from the ETL."""
    return etl.build_training_table(seed=5, n_rows=1500, start_day="2024-01-01", n_days=2)


def test_same_data_params_and_seed_give_identical_results(table):
    a = training.fit_and_evaluate(table, seed=3, C=0.5)
    b = training.fit_and_evaluate(table.copy(), seed=3, C=0.5)
    assert a.metrics == b.metrics
    assert a.data_fingerprint == b.data_fingerprint
    assert (a.n_train, a.n_test) == (b.n_train, b.n_test)
    np.testing.assert_array_equal(
        training.predict_proba(a.model, table), training.predict_proba(b.model, table)
    )


def test_row_order_changes_neither_fingerprint_nor_metrics(table):
    shuffled = table.sample(frac=1.0, random_state=1)
    assert not shuffled["impression_id"].equals(table["impression_id"])
    a = training.fit_and_evaluate(table, seed=3)
    b = training.fit_and_evaluate(shuffled, seed=3)
    assert b.data_fingerprint == a.data_fingerprint
    assert b.metrics == a.metrics


def test_extra_columns_and_column_order_do_not_change_the_fingerprint(table):
    reordered = table[list(reversed(table.columns))].assign(note="x")
    assert training.data_fingerprint(reordered) == training.data_fingerprint(table)


def test_a_changed_value_changes_the_fingerprint(table):
    edited = table.copy()
    edited.loc[0, "scroll_depth"] = edited.loc[0, "scroll_depth"] / 2 + 0.01
    assert training.data_fingerprint(edited) != training.data_fingerprint(table)
    assert training.data_fingerprint(table.iloc[1:]) != training.data_fingerprint(table)


def test_fingerprint_is_a_sha256_hex_digest(table):
    fingerprint = training.data_fingerprint(table)
    assert len(fingerprint) == 64
    int(fingerprint, 16)


def test_a_different_seed_gives_a_different_split_and_metrics(table):
    a = training.fit_and_evaluate(table, seed=1)
    b = training.fit_and_evaluate(table, seed=2)
    assert set(a.test_frame["impression_id"]) != set(b.test_frame["impression_id"])
    assert a.metrics != b.metrics
    assert a.data_fingerprint == b.data_fingerprint  # same data, other seed


def test_split_sizes_follow_test_fraction(table):
    result = training.fit_and_evaluate(table, seed=1, test_fraction=0.2)
    assert result.n_train + result.n_test == len(table)
    assert result.n_test == pytest.approx(0.2 * len(table), abs=1)
    assert result.params == {"C": 1.0, "max_iter": 200, "test_fraction": 0.2}
    assert result.seed == 1


def test_missing_column_is_named(table):
    with pytest.raises(ValueError, match=r"lacks columns \['scroll_depth'\]") as err:
        training.fit_and_evaluate(table.drop(columns="scroll_depth"), seed=0)
    assert "mlops_helpers.etl" in str(err.value)


def test_missing_target_is_named(table):
    with pytest.raises(ValueError, match=r"lacks columns \['viewable'\]"):
        training.fit_and_evaluate(table.drop(columns="viewable"), seed=0)


def test_too_few_rows_is_a_clear_error(table):
    with pytest.raises(ValueError, match="has 10 rows.*at least 20 rows"):
        training.fit_and_evaluate(table.head(10), seed=0)


def test_a_single_class_is_a_clear_error(table):
    one_class = table[table["viewable"] == 1]
    with pytest.raises(ValueError, match="1 label values.*both classes"):
        training.fit_and_evaluate(one_class, seed=0)


def test_metrics_are_in_their_ranges(table):
    metrics = training.fit_and_evaluate(table, seed=0).metrics
    assert set(metrics) == {"roc_auc", "accuracy", "log_loss", "brier"}
    assert 0 <= metrics["accuracy"] <= 1
    assert 0 <= metrics["brier"] <= 1
    assert metrics["log_loss"] > 0


def test_model_learns_something_useful(table):
    result = training.fit_and_evaluate(table, seed=0)
    assert result.metrics["roc_auc"] > 0.6
    base_rate = table["viewable"].mean()
    assert result.metrics["accuracy"] > max(base_rate, 1 - base_rate)


@pytest.mark.parametrize(
    ("column", "worse", "better"),
    [("scroll_depth", 0.1, 0.9), ("page_load_ms", 4000.0, 300.0)],
    ids=["deeper-scroll-scores-higher", "faster-page-scores-higher"],
)
def test_direction_of_the_score(table, column, worse, better):
    result = training.fit_and_evaluate(table, seed=0)
    rows = result.test_frame.head(50)
    low = training.predict_proba(result.model, rows.assign(**{column: worse}))
    high = training.predict_proba(result.model, rows.assign(**{column: better}))
    assert (high > low).all()
    assert (high - low).mean() > 0.05


def test_prediction_ignores_the_impression_id(table):
    result = training.fit_and_evaluate(table, seed=0)
    rows = result.test_frame.head(20)
    np.testing.assert_array_equal(
        training.predict_proba(result.model, rows),
        training.predict_proba(result.model, rows.assign(impression_id="renamed")),
    )


def test_unseen_category_still_scores(table):
    result = training.fit_and_evaluate(table, seed=0)
    proba = training.predict_proba(
        result.model, result.test_frame.head(5).assign(device="smart_tv")
    )
    assert np.isfinite(proba).all() and ((proba > 0) & (proba < 1)).all()
