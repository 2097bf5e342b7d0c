"""Worked solutions for notebook 05. Try each exercise yourself first."""


def exercise_05_1(champion_moves) -> str:
    """A rollback moves the champion back to the version it replaced last. The broken version
    was never promoted (deploy smoke-tests before the alias moves), so the last champion move
    is the challenger replacing the first model: a rollback brings the first model back, which
    is why a rollback is a decision to record, not a button to press."""
    return str(champion_moves.iloc[-1]["previous"])


def exercise_05_2(frame, champion_proba, challenger_proba, column, tolerance=0.02) -> set:
    """The slices where the challenger's ROC AUC is more than ``tolerance`` below the
    champion's; a slice with a single class has no ROC AUC, so it cannot be judged."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    worse = set()
    y = frame["viewable"].to_numpy()
    for value, rows in frame.groupby(column).indices.items():
        if len(np.unique(y[rows])) < 2:
            continue
        drop = roc_auc_score(y[rows], champion_proba[rows]) - roc_auc_score(
            y[rows], challenger_proba[rows]
        )
        if drop > tolerance:
            worse.add(value)
    return worse
