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
