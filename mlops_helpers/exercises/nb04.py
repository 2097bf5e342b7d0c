"""Exercises of notebook 04 (tracked training)."""

from __future__ import annotations

import pandas as pd

from mlops_helpers import training
from mlops_helpers.exercises import Case, Exercise, fresh_table, value_exercise


def _same_fingerprint(table: pd.DataFrame) -> set[str]:
    """The changes of the exercise's list that leave the table's fingerprint as it was."""
    variants = {
        "a": table.sample(frac=1.0, random_state=0),
        "b": table[table.columns[::-1]],
        "c": table.assign(page_load_ms=table["page_load_ms"].round()),
        "d": table.iloc[1:],
    }
    before = training.data_fingerprint(table)
    return {name for name, df in variants.items() if training.data_fingerprint(df) == before}


def _week() -> pd.DataFrame:
    """Four days of a seed no notebook uses, plus rows on the very edges of 2026-05-06."""
    table = fresh_table(931, 400, "2026-05-04", 4)
    edges = table.iloc[:2].assign(
        impression_id=["edge-midnight", "edge-last-moment"],
        ts=[pd.Timestamp("2026-05-06 00:00:00"), pd.Timestamp("2026-05-05 23:59:59.999")],
    )
    return pd.concat([table, edges], ignore_index=True).sample(frac=1.0, random_state=4)


def _ids(frame) -> set[str]:
    return set(frame["impression_id"])


def _split_case(label: str, test_day, hint: str) -> Case:
    day = pd.Timestamp(test_day)

    def call(split_by_time):
        table = _week()
        train, test = split_by_time(table.copy(), test_day)
        return table, train, test

    def accept(got) -> bool:
        table, train, test = got
        if not (isinstance(train, pd.DataFrame) and isinstance(test, pd.DataFrame)):
            return False
        when = table["ts"].dt.normalize()
        return _ids(train) == _ids(table[when < day]) and _ids(test) == _ids(table[when == day])

    def show(got) -> str:
        table, train, test = got
        if not (isinstance(train, pd.DataFrame) and isinstance(test, pd.DataFrame)):
            return f"({type(train).__name__}, {type(test).__name__})"
        late = int((train["ts"] >= day).sum())
        return f"{len(train)} train rows ({late} on or after the test day), {len(test)} test rows"

    return Case(label, call, accept, hint, show)


EXERCISES = [
    value_exercise(
        "04.1",
        task="say which changes to the training table keep its data fingerprint",
        hint="the fingerprint is about content: values, columns and types, not their order",
        expected=_same_fingerprint,
    ),
    Exercise(
        "04.2",
        task="write split_by_time(table, test_day): train on the past, test on one later day",
        kind="code",
        cases=lambda: [
            _split_case(
                "a week, tested on its third day",
                "2026-05-06",
                "train is every row before the test day: none of that day, none after it",
            ),
            _split_case(
                "the same week, the day given as a Timestamp",
                pd.Timestamp("2026-05-06"),
                "compare calendar days: a row at 00:00 of the test day is a test row",
            ),
            _split_case(
                "tested on the first day",
                "2026-05-04",
                "with nothing before the test day, train is empty (and not an error)",
            ),
        ],
        hint="compare calendar days, not timestamps; days after the test day go nowhere",
    ),
]
