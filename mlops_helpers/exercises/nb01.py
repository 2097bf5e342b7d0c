"""Exercises of notebook 01 (manual ETL)."""

from __future__ import annotations

import pandas as pd

from mlops_helpers import data
from mlops_helpers.exercises import Case, Exercise, value_exercise

DAY = "2026-06-10"


def _extract(fault: str, seed: int, as_text: bool) -> pd.DataFrame:
    """An impressions extract no notebook shows; ``ts`` as text, as pd.read_csv gives it."""
    frame = data.generate_day(seed, 600, DAY, fault).impressions
    if as_text:
        frame = frame.assign(ts=frame["ts"].dt.strftime("%Y-%m-%d %H:%M:%S"))
    return frame


def _edges() -> pd.DataFrame:
    stamps = [
        "2026-06-09 23:59:59",
        "2026-06-10 00:00:00",
        "2026-06-10 23:59:59",
        "2026-06-11 00:00:00",
        "2026-05-10 12:00:00",  # the same day of another month
    ]
    return pd.DataFrame({"impression_id": list("vwxyz"), "ts": stamps}, index=[7, 3, 9, 1, 5])


def _late(frame: pd.DataFrame) -> set:
    return set(frame.index[pd.to_datetime(frame["ts"]).dt.normalize() != pd.Timestamp(DAY)])


def _case(label: str, frame: pd.DataFrame, hint: str) -> Case:
    want = _late(frame)

    def accept(got) -> bool:
        return (
            isinstance(got, pd.DataFrame)
            and set(got.index) == want
            and list(got.columns) == list(frame.columns)
        )

    def show(got) -> str:
        if isinstance(got, pd.DataFrame):
            if len(got) == len(want) and set(got.index) != want:
                return f"{len(got)} rows, but not the extract's own rows: keep its index"
            if set(got.index) == want:
                return f"the right rows, but columns {list(got.columns)[:4]}...: keep them all"
            return f"{len(got)} rows (the right answer has {len(want)})"
        return f"{type(got).__name__} {str(got)[:40]!r}"

    return Case(label, lambda late_rows: late_rows(frame.copy(), DAY), accept, hint, show)


EXERCISES = [
    Exercise(
        "01.1",
        task="write late_rows(extract, day): the rows that do not belong to the extract's day",
        kind="code",
        cases=lambda: [
            _case(
                "a day with the late_rows fault, read from CSV",
                _extract("late_rows", 951, True),
                "parse ts with pd.to_datetime: it is text when read from a CSV",
            ),
            _case(
                "the same kind of day with real timestamps",
                _extract("late_rows", 952, False),
                "pd.to_datetime leaves timestamps as they are: compare calendar days",
            ),
            _case(
                "a day with only the everyday mess",
                _extract("none", 953, True),
                "even a clean day has a few late rows: return them all",
            ),
            _case(
                "rows on the edges of the day",
                _edges(),
                "a row at 00:00 of the next day is late too, and one of another month: compare the "
                "whole date, both ways",
            ),
            _case(
                "an empty extract",
                _extract("none", 954, True).iloc[0:0],
                "an empty extract has no late rows: return an empty frame with the same columns",
            ),
        ],
        hint="ts is text when read from a CSV: parse it, then compare calendar days with `day`",
    ),
    value_exercise(
        "01.2",
        task="count the impressions the inner join dropped without a word",
        hint="compare two rows of the checklist table: before and after the inner join",
        expected=lambda steps: int(
            steps.groupby("step")["rows"].sum()["join placements (left)"]
            - steps.groupby("step")["rows"].sum()["join labels (inner)"]
        ),
    ),
]
