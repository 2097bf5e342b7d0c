"""monitoring: drift statistics on known distributions, and a trigger that fires only over threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_helpers import etl, monitoring
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
