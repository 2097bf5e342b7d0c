"""Exercises of notebook 08 (testing in CI)."""

from __future__ import annotations

import pandas as pd

from mlops_helpers import etl
from mlops_helpers.etl import OUTPUT_COLUMNS
from mlops_helpers.exercises import Case, Exercise, value_exercise


def _fill_with_zero(df: pd.DataFrame) -> pd.DataFrame:
    """Mutant: a missing page load time becomes 0 ms instead of the day's median."""
    return etl.add_features(df.assign(page_load_ms=df["page_load_ms"].fillna(0.0)))


def _hour_in_another_zone(df: pd.DataFrame) -> pd.DataFrame:
    """Mutant: the hour taken one time zone off."""
    out = etl.add_features(df)
    return out.assign(hour=(out["hour"] + 1) % 24)


def _rows_reordered(df: pd.DataFrame) -> pd.DataFrame:
    """Mutant: the rows come back sorted by time, not in the order they came in."""
    out = etl.add_features(df)
    return out.sort_values("ts", kind="stable").reset_index(drop=True)


def _column_dropped(df: pd.DataFrame) -> pd.DataFrame:
    """Mutant: scroll_depth went missing from the output."""
    return etl.add_features(df).drop(columns=["scroll_depth"])


MUTANTS = {
    "nulls filled with 0": _fill_with_zero,
    "the hour one time zone off": _hour_in_another_zone,
    "rows reordered": _rows_reordered,
    "a column dropped": _column_dropped,
}


def _passes(test, function) -> bool | str:
    """True when ``test(function)`` returns; otherwise what it raised."""
    try:
        test(function)
    except NotImplementedError:  # the placeholder: not attempted
        raise
    except Exception as exc:  # a failed assert, or the test tripping over the bug
        return f"{type(exc).__name__}: {exc}"[:120]
    return True


def _test_cases() -> list[Case]:
    cases = [
        Case(
            "the real etl.add_features",
            lambda test: _passes(test, etl.add_features),
            lambda got: got is True,
            "your test must pass on the function as it is: build input rows it can take",
            show=lambda got: f"your test failed on it ({got})",
        )
    ]
    for name, mutant in MUTANTS.items():
        cases.append(
            Case(
                f"a bug: {name}",
                lambda test, m=mutant: _passes(test, m),
                lambda got: got is not True,
                f"assert what add_features promises: its docstring, OUTPUT_COLUMNS ({len(OUTPUT_COLUMNS)} columns), row order",
                show=lambda got: "your test passed on the buggy function" if got is True else got,
            )
        )
    return cases


EXERCISES = [
    value_exercise(
        "08.1",
        task="say which sanitize regexes hide only what changes between runs",
        hint="nbval replaces every match in both outputs before comparing: what is left must be equal for the timestamp, and different for the sum",
        expected=lambda candidates, committed, rerun: {
            letter
            for letter, regex in candidates.items()
            if _same(regex, committed, rerun, 2) and not _same(regex, committed, rerun, 1)
        },
    ),
    value_exercise(
        "08.2",
        task="say which changes of the rows an invariance test may demand",
        hint="a row's score can only move through the columns the model reads: training.FEATURES",
        expected=lambda changes, invariant: {
            letter for letter in changes if invariant(changes[letter])
        },
    ),
    Exercise(
        "08.3",
        task="write a test that catches bugs in etl.add_features",
        kind="code",
        cases=_test_cases,
        hint="test_add_features(add_features) builds a few rows, calls add_features and asserts what it promises",
    ),
]


def _same(regex: str, committed: list[str], rerun: list[str], cell: int) -> bool:
    import re

    return re.sub(regex, "X", committed[cell]) == re.sub(regex, "X", rerun[cell])
