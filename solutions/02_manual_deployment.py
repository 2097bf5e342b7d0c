"""Worked solutions for notebook 02. Try each exercise yourself first."""

from mlops_helpers import training


def exercise_02_1(train) -> str:
    """The fingerprint of the exact rows the first model saw, shortened to 12 hex characters."""
    return training.data_fingerprint(train)[:12]


def exercise_02_2(model, rows) -> bool:
    """Fit to ship when it ranks the trusted rows well: ROC AUC of at least 0.6 on labels the
    team measured itself. Predictions in [0, 1] prove nothing (a constant model has them),
    and scoring on the vendor's labels would prefer the model trained on flipped ones."""
    from sklearn.metrics import roc_auc_score

    scores = model.predict_proba(rows.loc[:, list(training.FEATURES)])[:, 1]
    return bool(roc_auc_score(rows[training.TARGET], scores) >= 0.6)
