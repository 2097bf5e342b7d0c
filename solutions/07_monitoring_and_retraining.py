"""Worked solutions for notebook 07_monitoring_and_retraining (try each exercise first)."""

from __future__ import annotations

import pandas as pd

from mlops_helpers import monitoring


def exercise_07_1(daily: pd.DataFrame, candidates: tuple[float, ...]) -> float:
    """The largest candidate threshold at which scenario A's quiet days would have triggered.

    Scenario A's days come from the same generator as the reference, so every PSI above
    zero is sampling noise. Rerun the trigger over the daily drift table with each candidate
    threshold, from the highest down: the first one that fires is the answer (0.0 if none
    does). A threshold at or below that noise level retrains on false alarms; 0.2 sits well
    above it, which is why it is the usual "significant shift" line.
    """
    for threshold in sorted(candidates, reverse=True):
        flagged = daily.assign(drifted=daily["psi"] > threshold)
        if monitoring.retrain_trigger(flagged).retrain:
            return threshold
    return 0.0


def exercise_07_2(reference: pd.Series, current: pd.Series, bins: int = 10) -> float:
    """PSI on the reference's quantile bins: the outer edges open, so the current day's
    values outside the reference's range still land in a bin; shares clipped at EPS, so an
    empty bin costs a large but finite amount instead of infinity."""
    import numpy as np

    ref = reference.dropna().to_numpy(dtype=float)
    cur = current.dropna().to_numpy(dtype=float)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    edges[0], edges[-1] = -np.inf, np.inf
    e = np.clip(np.histogram(ref, edges)[0] / len(ref), monitoring.EPS, None)
    a = np.clip(np.histogram(cur, edges)[0] / len(cur), monitoring.EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))
