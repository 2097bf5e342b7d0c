"""Worked solutions for notebook 11_batch_scoring (try each exercise first)."""

from __future__ import annotations

from sklearn.metrics import roc_auc_score


def exercise_11_1(frame):
    """Only the rows whose label has arrived can be scored against it: the others are not
    wrong, they are unknown. With one label value among them ROC AUC is undefined."""
    matured = frame[frame["viewable"].notna()]
    if matured["viewable"].nunique() < 2:
        return None, len(matured)
    return float(roc_auc_score(matured["viewable"], matured["proba"])), len(matured)


def exercise_11_2(decisions) -> list[str]:
    """The shifted days: their inputs drifted (PSI above the threshold), yet on matured
    labels the champion ranks them as well as ever. A trigger on drift alone would have
    retrained there, on a model that needed nothing."""
    drifted = decisions["drifted"] != "-"
    return sorted(decisions.index[drifted & (decisions["decision"] == "no retrain")])
