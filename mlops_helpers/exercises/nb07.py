"""Exercises of notebook 07 (monitoring and retraining)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_helpers import monitoring
from mlops_helpers.exercises import Case, Exercise, value_exercise


def _samples():
    """(label, reference, current) pairs no notebook shows."""
    rng = np.random.default_rng(71)
    ref = pd.Series(rng.lognormal(6.7, 0.5, 3000))
    return [
        ("two samples of the same distribution", ref, pd.Series(rng.lognormal(6.7, 0.5, 800))),
        ("a shifted current day", ref, pd.Series(rng.lognormal(7.1, 0.5, 800))),
        ("the current day equal to the reference", ref, ref.copy()),
        (
            "a current day with an empty bin",
            ref,
            pd.Series(rng.lognormal(6.7, 0.5, 500)).clip(upper=700),
        ),
        (
            "missing values on both sides",
            ref.where(rng.random(3000) > 0.1),
            pd.Series(rng.lognormal(6.9, 0.6, 700)).where(rng.random(700) > 0.2),
        ),
        ("a small current day", ref, pd.Series(rng.lognormal(6.7, 0.5, 60))),
    ]


def _psi_cases() -> list[Case]:
    cases = []
    for label, reference, current in _samples():
        want = monitoring.numeric_psi(reference, current)

        def accept(got, want=want) -> bool:
            return isinstance(got, float | np.floating) and bool(
                np.isclose(got, want, rtol=1e-9, atol=1e-12)
            )

        cases.append(
            Case(
                label,
                lambda psi, r=reference, c=current: psi(r.copy(), c.copy(), 10),
                accept,
                f"bins are the reference's deciles (outer edges open), nulls dropped, shares clipped at {monitoring.EPS}",
                show=lambda got: (
                    f"{got:.4f}" if isinstance(got, float | np.floating) else repr(got)
                ),
            )
        )
    return cases


EXERCISES = [
    value_exercise(
        "07.1",
        task="find the largest threshold at which calm days would still retrain",
        hint="a threshold fires when some PSI of some day is above it: find scenario A's largest PSI",
        expected=lambda daily, candidates: max(
            [t for t in candidates if daily["psi"].max() > t], default=0.0
        ),
    ),
    Exercise(
        "07.2",
        task="write psi(reference, current, bins): the drift statistic, checked against monitoring",
        kind="code",
        cases=_psi_cases,
        hint="edges from the reference's quantiles (outer edges open), shares per bin, clip at EPS, sum (a - e) * ln(a / e)",
    ),
]
