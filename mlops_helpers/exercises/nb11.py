"""Exercises of notebook 11 (batch scoring with late labels)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from mlops_helpers.exercises import Case, Exercise, value_exercise


def _frame(seed: int, n: int, matured: float, only_label: int | None = None) -> pd.DataFrame:
    """Scored rows with a ``viewable`` label on a ``matured`` share of them (NaN on the rest)."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    label = (rng.random(n) < 1 / (1 + np.exp(-1.5 * signal))).astype(float)
    if only_label is not None:
        label[:] = only_label
    proba = 1 / (1 + np.exp(-(signal + rng.normal(scale=0.7, size=n))))
    late = rng.random(n) >= matured
    # The unmatured rows are the confident ones: an answer that counts them is far off.
    label[late] = np.nan
    return pd.DataFrame({"impression_id": [f"i{k:05d}" for k in range(n)], "proba": proba}).assign(
        viewable=label
    )


def _want(frame: pd.DataFrame):
    matured = frame[frame["viewable"].notna()]
    if matured["viewable"].nunique() < 2:
        return None, len(matured)
    return float(roc_auc_score(matured["viewable"], matured["proba"])), len(matured)


def _same(got, want) -> bool:
    if not isinstance(got, tuple) or len(got) != 2:
        return False
    auc, n = got
    if want[0] is None:
        return auc is None and n == want[1]
    return auc is not None and abs(float(auc) - want[0]) < 1e-9 and int(n) == want[1]


def _cases() -> list[Case]:
    cases = []
    for label, frame, hint in (
        ("every label matured", _frame(111, 400, 1.0), "ROC AUC of proba against viewable"),
        (
            "a third of the labels matured",
            _frame(112, 900, 0.33),
            "only rows whose label has arrived count: leave out the NaN ones",
        ),
        ("no label matured yet", _frame(113, 300, 0.0), "no label yet: (None, 0)"),
        (
            "only viewable ads matured so far",
            _frame(114, 300, 0.5, only_label=1),
            "one label value has no ROC AUC: (None, count)",
        ),
    ):
        want = _want(frame)
        cases.append(
            Case(
                label,
                lambda fn, f=frame: fn(f.copy()),
                lambda got, want=want: _same(got, want),
                hint,
                show=repr,
            )
        )
    return cases


EXERCISES = [
    Exercise(
        "11.1",
        task="write matured_auc(frame): ROC AUC over the matured labels only, and their count",
        kind="code",
        cases=_cases,
        hint="rows whose viewable is NaN have no label yet; one label value has no ROC AUC",
    ),
    value_exercise(
        "11.2",
        task="name the days a drift-only trigger would have retrained on for nothing",
        hint="the days whose inputs drifted while their matured labels show the model still performs",
        expected=lambda decisions: sorted(
            decisions.index[(decisions["drifted"] != "-") & (decisions["decision"] == "no retrain")]
        ),
    ),
]
