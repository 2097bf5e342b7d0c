"""Exercises of notebook 03 (automated ETL)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_helpers import data
from mlops_helpers.exercises import Case, Exercise, value_exercise

SECONDS_BELOW = 60.0  # no page loads in under 60 ms, and none takes over a minute


def _extract(seed: int, n_rows: int = 800) -> pd.DataFrame:
    """An impressions extract of a seed no notebook uses, every load time present (the
    case about missing values adds its own)."""
    extract = data.generate_day(seed, n_rows, "2026-04-06").impressions
    return extract.assign(page_load_ms=extract["page_load_ms"].fillna(800.0))


def _in_seconds(frame: pd.DataFrame, share: float, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """``frame`` with a share of its (non-null) rows sent in seconds; and which rows those are."""
    rows = frame["page_load_ms"].notna() & (np.random.default_rng(seed).random(len(frame)) < share)
    out = frame.copy()
    out.loc[rows, "page_load_ms"] = (out.loc[rows, "page_load_ms"] / 1000).round(3)
    return out, rows


def _flags(expected: pd.Series):
    """Accept a boolean Series on the extract's own index that flags exactly ``expected``."""

    def accept(got) -> bool:
        return (
            isinstance(got, pd.Series)
            and got.dtype == bool
            and got.index.equals(expected.index)
            and bool((got == expected).all())
        )

    return accept


def _show(got) -> str:
    if isinstance(got, pd.Series) and got.dtype == bool:
        return f"a Series flagging {int(got.sum())} of {len(got)} rows"
    return f"{type(got).__name__} {str(got)[:60]!r}"


def _seconds_cases() -> list[Case]:
    clean = _extract(921)
    some, some_rows = _in_seconds(_extract(922), 0.05, 1)
    nulls = _extract(923)
    nulls.loc[nulls.index[::7], "page_load_ms"] = np.nan
    nulls, null_rows = _in_seconds(nulls, 0.1, 2)
    whole, whole_rows = _in_seconds(_extract(924), 1.0, 3)
    edges = pd.DataFrame(
        {"page_load_ms": [61.0, 59.9, 119_000.0, 0.05, 12.5, 800.0]},
        index=[10, 3, 7, 99, 42, 5],  # not 0..n-1: the flags must line up with the rows
    )
    cases = [
        (
            clean,
            pd.Series(False, index=clean.index),
            "a clean day",
            "a real day in ms has nothing under 60 ms",
        ),
        (some, some_rows, "a day with 5% of rows in seconds", "values under 60 are seconds"),
        (
            nulls,
            null_rows,
            "a day with missing load times",
            "a missing value is the nulls rule's business: do not flag it",
        ),
        (
            whole,
            whole_rows,
            "a day sent wholly in seconds",
            "up to a minute in seconds is a value under 60",
        ),
        (
            edges,
            edges["page_load_ms"] < SECONDS_BELOW,
            "hand-picked edge values on a shuffled index",
            "flag per row, on the extract's own index",
        ),
    ]
    return [
        Case(label, lambda rule, f=frame: rule(f.copy()), _flags(want), hint, _show)
        for frame, want, label, hint in cases
    ]


EXERCISES = [
    value_exercise(
        "03.1",
        task="say which faults block the whole day",
        hint="look for the faults whose outcome is 'blocked': they break the extract's shape",
        expected=lambda outcomes: {o["fault"] for o in outcomes if o["outcome"] == "blocked"},
    ),
    value_exercise(
        "03.2",
        task="count the rows quarantined on the last published day",
        hint="the report table of section 2 or the manifest of section 8 has the number",
        expected=lambda quarantined: len(quarantined),
    ),
    Exercise(
        "03.3",
        task="write a contract rule for page load times sent in seconds",
        kind="code",
        cases=_seconds_cases,
        hint="flag the values no page load in milliseconds could have; leave missing values alone",
    ),
]
