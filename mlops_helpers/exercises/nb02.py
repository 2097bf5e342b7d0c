"""Exercises of notebook 02 (manual deployment)."""

from __future__ import annotations

import functools

import numpy as np
from sklearn.dummy import DummyClassifier

from mlops_helpers import training
from mlops_helpers.exercises import Case, Exercise, fresh_table, value_exercise

FLOOR = 0.6  # the notebook's stated bar: a model fit to ship ranks at least this well


@functools.lru_cache(maxsize=1)
def _models() -> dict:
    """Models of seeds no notebook uses, trained on good, flipped and mostly shuffled labels."""
    train = fresh_table(911, 900, "2026-03-02", 2)
    trusted = fresh_table(912, 700, "2026-03-05", 1)
    x, y = train.loc[:, list(training.FEATURES)], train[training.TARGET]
    # every column but the ad's width shuffled: a model that learned almost nothing
    width_only = x.assign(
        **{c: x[c].sample(frac=1.0, random_state=1).to_numpy() for c in x if c != "ad_width"}
    )
    return {
        "trusted": trusted,
        "good": training.build_model(seed=0).fit(x, y),
        "flipped": training.build_model(seed=0).fit(x, 1 - y),
        "weak": training.build_model(seed=0).fit(width_only, y),
        "constant": DummyClassifier(strategy="prior").fit(x, y),
    }


def _case(label: str, model: str, ship: bool, hint: str) -> Case:
    def call(fit_to_ship):
        m = _models()
        return fit_to_ship(m[model], m["trusted"].copy())

    return Case(label, call, lambda got: isinstance(got, bool | np.bool_) and got == ship, hint)


def _fit_to_ship_cases() -> list[Case]:
    return [
        _case("a well-trained model", "good", True, "a good model ranks viewable rows first"),
        _case(
            "a model trained on flipped labels",
            "flipped",
            False,
            "score the model on the trusted labels in `rows`, not on anything it was trained on",
        ),
        _case(
            "a model that always predicts the average",
            "constant",
            False,
            "predictions in [0, 1] say nothing: a constant model has ROC AUC 0.5",
        ),
        _case(
            "a model that learned little more than the ad's width",
            "weak",
            False,
            f"better than chance is not enough: the bar is ROC AUC >= {FLOOR}",
        ),
    ]


EXERCISES = [
    value_exercise(
        "02.1",
        task="record the data fingerprint of the rows the first model saw",
        hint="call training.data_fingerprint on the training rows `train` and keep the first 12 characters",
        expected=lambda train: training.data_fingerprint(train)[:12],
    ),
    Exercise(
        "02.2",
        task="write fit_to_ship(model, rows): the behavioural test the hurried team never ran",
        kind="code",
        cases=_fit_to_ship_cases,
        hint=f"score `rows` (trusted labels) with the model; ship only at ROC AUC >= {FLOOR}",
    ),
]
