"""monitoring: drift statistics on known distributions, and a trigger that fires only over threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_helpers import etl, monitoring, training
from mlops_helpers.parameters import ParameterError
from mlops_helpers.training import CATEGORICAL_FEATURES, NUMERIC_FEATURES


def test_psi_of_identical_distributions_is_zero_and_grows_with_the_shift():
    rng = np.random.default_rng(0)
    ref = pd.Series(rng.normal(0, 1, 20_000))
    same = pd.Series(rng.normal(0, 1, 20_000))
    assert monitoring.numeric_psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert monitoring.numeric_psi(ref, same) < 0.01
    shifts = [
        monitoring.numeric_psi(ref, pd.Series(rng.normal(mu, 1, 20_000))) for mu in (0.25, 0.5, 1.0)
    ]
    assert shifts == sorted(shifts) and shifts[0] > 0.03 and shifts[-1] > 0.5


def test_categorical_psi_sees_a_new_category_and_a_changed_mix():
    ref = pd.Series(["mobile"] * 50 + ["desktop"] * 50)
    assert monitoring.categorical_psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert monitoring.categorical_psi(ref, pd.Series(["mobile"] * 90 + ["desktop"] * 10)) > 0.2
    assert monitoring.categorical_psi(ref, pd.Series(["smart_tv"] * 30 + ["mobile"] * 70)) > 0.2


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_WORKBOOK_HOME", str(tmp_path_factory.mktemp("ws")))
        yield etl.build_training_table(42, 3000, "2026-01-05", 2)


def test_new_days_without_drift_trigger_nothing(reference):
    current = etl.build_training_table(42, 3000, "2026-01-08", 1)
    report = monitoring.drift_report(reference, current)
    assert set(report.index) == {*NUMERIC_FEATURES, *CATEGORICAL_FEATURES}
    assert report["psi"].max() < 0.05
    trigger = monitoring.retrain_trigger(report)
    assert not trigger.retrain and trigger.reason().startswith("no feature drifted")


def test_generated_drift_is_detected_on_the_features_it_shifts(reference):
    current = etl.build_training_table(42, 3000, "2026-01-08", 1, drift=1.0)
    report = monitoring.drift_report(reference, current)
    trigger = monitoring.retrain_trigger(report)
    assert trigger.retrain
    assert {"page_load_ms", "scroll_depth"} <= set(trigger.drifted)
    assert not report.loc[["ad_width", "device", "position"], "drifted"].any()
    assert report.loc["scroll_depth", "ks_pvalue"] < 1e-6


def test_trigger_fires_only_over_the_threshold(reference):
    current = etl.build_training_table(42, 3000, "2026-01-08", 1, drift=1.0)
    worst = monitoring.drift_report(reference, current)["psi"].max()
    above = monitoring.DriftThresholds(psi_threshold=worst + 0.01)
    below = monitoring.DriftThresholds(psi_threshold=worst - 0.01)
    assert not monitoring.retrain_trigger(
        monitoring.drift_report(reference, current, above)
    ).retrain
    assert monitoring.retrain_trigger(monitoring.drift_report(reference, current, below)).retrain


def test_missing_columns_and_empty_data_are_clear_errors(reference):
    with pytest.raises(ValueError, match=r"lacks feature columns \['scroll_depth'\]"):
        monitoring.drift_report(reference, reference.drop(columns=["scroll_depth"]))
    with pytest.raises(ValueError, match="needs rows on both sides"):
        monitoring.drift_report(reference, reference.iloc[0:0])


def test_small_samples_give_no_stderr_warning(recwarn):
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({c: rng.integers(0, 5, 300) for c in NUMERIC_FEATURES}).assign(
        **{c: "x" for c in CATEGORICAL_FEATURES}
    )
    monitoring.drift_report(ref, ref.iloc[:150])
    assert [str(w.message) for w in recwarn] == []


@pytest.fixture(scope="module")
def new_days(reference):
    """Three days arriving after the reference (same seed, same workspace): no drift, some, more."""
    return {
        day: etl.build_training_table(42, 3000, day, 1, drift=drift)
        for day, drift in (("2026-01-08", 0.0), ("2026-01-09", 0.75), ("2026-01-10", 1.0))
    }


def test_daily_drift_stacks_one_report_per_day(reference, new_days):
    daily = monitoring.daily_drift(reference, new_days)
    assert daily.index.names == ["day", "feature"]
    assert list(daily.index.unique("day")) == list(new_days)
    for day, table in new_days.items():
        pd.testing.assert_frame_equal(
            daily.loc[day], monitoring.drift_report(reference, table), check_names=False
        )
    with pytest.raises(ValueError, match="no days to monitor"):
        monitoring.daily_drift(reference, {})


def test_psi_grows_day_by_day_with_the_drift(reference, new_days):
    summary = monitoring.daily_summary(monitoring.daily_drift(reference, new_days))
    assert list(summary.columns) == ["max_psi", "worst_feature", "drifted", "retrain"]
    assert summary["max_psi"].is_monotonic_increasing
    assert summary["retrain"].tolist() == [False, True, True]
    assert summary.loc["2026-01-08", "drifted"] == "-"
    assert summary.loc["2026-01-10", "worst_feature"] == "scroll_depth"


def test_a_window_triggers_when_any_day_drifted(reference, new_days):
    daily = monitoring.daily_drift(reference, new_days)
    trigger = monitoring.retrain_trigger(daily)
    assert trigger.retrain and trigger.max_psi == daily["psi"].max()
    assert set(trigger.drifted) == set(daily.index[daily["drifted"]].get_level_values("feature"))
    calm = monitoring.daily_drift(reference, {"2026-01-08": new_days["2026-01-08"]})
    assert not monitoring.retrain_trigger(calm).retrain


def test_a_window_names_each_drifted_feature_once_in_the_order_it_drifted():
    daily = pd.DataFrame(
        {
            "day": ["d1", "d1", "d2", "d2", "d3", "d3"],
            "feature": ["a", "b", "a", "b", "a", "b"],
            "psi": [0.01, 0.02, 0.05, 0.3, 0.4, 0.5],
        }
    ).set_index(["day", "feature"])
    daily["drifted"] = daily["psi"] > 0.2
    trigger = monitoring.retrain_trigger(daily)
    assert trigger == monitoring.Trigger(True, ("b", "a"), 0.5)
    assert trigger.reason() == "drift in b, a (max PSI 0.500)"


def test_daily_quality_scores_the_model_on_each_labelled_day(reference, new_days):
    model = training.fit_and_evaluate(reference, 42).model
    quality = monitoring.daily_quality(model, new_days)
    assert list(quality.index) == list(new_days)
    assert quality.loc["2026-01-09"].to_dict() == training.evaluate(model, new_days["2026-01-09"])
    # the label relation drifts too: the model trained before the drift fits drifted days worse
    assert quality.loc["2026-01-10", "log_loss"] > quality.loc["2026-01-08", "log_loss"]


def test_no_trigger_retrains_nothing_and_touches_no_store(monkeypatch, reference):
    def forbidden(*args, **kwargs):
        raise AssertionError("the retraining job did work without a trigger")

    for module, name in (
        (monitoring, "fit_and_evaluate"),
        (monitoring.tracking, "log_training"),
        (monitoring.registry, "register"),
        (monitoring.registry, "gate"),
        (monitoring.registry, "promote"),
    ):
        monkeypatch.setattr(module, name, forbidden)
    calm = monitoring.Trigger(False, (), 0.01)
    job = monitoring.retrain_if_triggered(calm, reference, reference, "m", 42)
    assert not job.retrained and job.version is None and job.gate is None and not job.promoted
    assert job.summary() == "nothing retrained: no feature drifted (max PSI 0.010)"


def test_days_too_small_to_monitor_are_refused():
    assert monitoring.check_rows_per_day(monitoring.MIN_ROWS_PER_DAY) == monitoring.MIN_ROWS_PER_DAY
    with pytest.raises(
        ParameterError, match="n_rows must be at least 100 to monitor drift, got 50"
    ):
        monitoring.check_rows_per_day(50)


def test_the_noise_threshold_grows_as_the_day_shrinks_and_is_reproducible(reference):
    noise = {n: monitoring.noise_psi(reference["page_load_ms"], n) for n in (100, 300, 1000)}
    assert noise[100] > 0.2 > noise[300] > noise[1000] > 0.0, noise
    assert noise[100] == monitoring.noise_psi(reference["page_load_ms"], 100), "seeded"
    assert monitoring.noise_psi(reference["device"], 100) > 0.0, "categorical features too"


@pytest.fixture(scope="module")
def small_days(reference):
    """Twenty unchanged days of 100 rows after the reference, one table each."""
    table = etl.build_training_table(42, 100, "2026-01-08", 20)
    return [day for _, day in table.groupby(table["ts"].dt.date)]


def test_small_unchanged_days_raise_alarms_at_02_but_not_at_their_own_noise(reference, small_days):
    fixed = monitoring.DriftThresholds(0.2, size_aware=False)
    false_at_02 = sum(
        monitoring.drift_report(reference, d, fixed)["drifted"].any() for d in small_days
    )
    reports = [monitoring.drift_report(reference, d) for d in small_days]
    assert false_at_02 >= 2, "the fixed line turns a small day's noise into alarms"
    assert sum(r["drifted"].any() for r in reports) <= 1, "about 1 day in 100 by design"
    assert all((r["threshold"] >= 0.2).all() for r in reports)
    assert all((r["threshold"] > 0.2).any() for r in reports), "raised where noise is higher"


def test_a_real_shift_on_a_small_day_is_still_caught(reference):
    drifted = etl.build_training_table(42, 100, "2026-01-30", 1, drift=1.0)
    report = monitoring.drift_report(reference, drifted)
    assert monitoring.retrain_trigger(report).retrain, report[["psi", "threshold"]]


def test_on_large_days_the_threshold_is_the_usual_line(reference, new_days):
    report = monitoring.drift_report(reference, new_days["2026-01-08"])
    assert (report["threshold"] == 0.2).all(), "3000 rows: the noise is far below 0.2"


def test_the_orchestrator_settings_refuse_the_same_small_days():
    from mlops_helpers.orchestration import settings

    assert settings.MIN_ROWS_PER_DAY == monitoring.MIN_ROWS_PER_DAY
