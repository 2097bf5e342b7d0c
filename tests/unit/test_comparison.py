"""comparison: the paired intervals the gate decides on, checked against sklearn's metrics
and against a paired bootstrap (the interval a reviewer would compute by hand)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from mlops_helpers import comparison


def scored(n: int, seed: int = 0):
    """Labels and two correlated models' scores, as two models scored on the same rows."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-1.2 * signal))).astype(int)
    first = 1 / (1 + np.exp(-(signal + rng.normal(scale=0.8, size=n))))
    second = np.round(1 / (1 + np.exp(-(signal + rng.normal(scale=0.8, size=n)))), 2)  # ties
    return y, first, second


def test_estimates_are_sklearns_metrics():
    y, first, second = scored(1500)
    assert comparison.roc_auc_interval(y, second).estimate == pytest.approx(
        roc_auc_score(y, second), abs=1e-12
    )
    diff = comparison.roc_auc_difference(y, first, second)
    assert diff.estimate == pytest.approx(
        roc_auc_score(y, first) - roc_auc_score(y, second), abs=1e-12
    )
    rise = comparison.log_loss_difference(y, first, second)
    assert rise.estimate == pytest.approx(log_loss(y, first) - log_loss(y, second), abs=1e-12)


def test_delongs_paired_interval_agrees_with_a_paired_bootstrap():
    y, first, second = scored(2000)
    rng = np.random.default_rng(1)
    boot = []
    for _ in range(1000):
        i = rng.integers(0, len(y), len(y))
        boot.append(roc_auc_score(y[i], first[i]) - roc_auc_score(y[i], second[i]))
    diff = comparison.roc_auc_difference(y, first, second)
    half_width = (diff.high - diff.low) / 2
    assert half_width / (1.96 * np.std(boot)) == pytest.approx(1, abs=0.1)


def test_the_interval_shrinks_like_one_over_root_n():
    widths = {}
    for n in (1000, 16000):
        d = comparison.roc_auc_difference(*scored(n))
        widths[n] = d.high - d.low
    assert widths[1000] / widths[16000] == pytest.approx(4, rel=0.2)


def test_pairing_makes_the_difference_sharper_than_two_separate_intervals():
    y, first, second = scored(2000)
    diff = comparison.roc_auc_difference(y, first, second)
    a, b = comparison.roc_auc_interval(y, first), comparison.roc_auc_interval(y, second)
    unpaired = np.hypot(a.high - a.low, b.high - b.low)  # as if scored on different rows
    assert diff.high - diff.low < 0.8 * unpaired


def test_a_slice_that_a_model_ranks_at_random_is_found_and_named():
    y, good, _ = scored(3000)
    frame = pd.DataFrame({"device": np.where(np.arange(3000) % 10 == 0, "tablet", "desktop")})
    bad = good.copy()
    tablet = frame["device"].eq("tablet").to_numpy()
    bad[tablet] = np.random.default_rng(2).random(tablet.sum())  # random scores on tablets
    slices = comparison.slice_auc_drops(frame, y, bad, good, columns=("device",))
    assert slices.loc["device=tablet", "low"] > 0.1, "a drop the interval is sure of"
    assert abs(slices.loc["device=desktop", "drop"]) < 1e-12, "the other slice is untouched"


def test_slices_too_small_or_with_one_label_are_listed_not_compared():
    y = np.array([0, 1] * 100 + [1] * 30)
    frame = pd.DataFrame({"device": ["desktop"] * 200 + ["tablet"] * 30})
    scores = np.linspace(0, 1, len(y))
    slices = comparison.slice_auc_drops(frame, y, scores, scores, columns=("device",))
    assert slices.loc["device=desktop", "compared"]
    assert not slices.loc["device=tablet", "compared"]
    assert slices.loc["device=tablet", "rows"] == 30
    assert np.isnan(slices.loc["device=tablet", "low"])


def test_one_label_only_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="needs both labels; these 5 rows all have label 1"):
        comparison.roc_auc_interval(np.ones(5, int), np.linspace(0, 1, 5))
