"""Worked solutions for notebook 01. Try each exercise yourself first."""

import pandas as pd


def exercise_01_1(extract: pd.DataFrame, day: str) -> pd.DataFrame:
    """The rows whose event time is not on ``day``: the check a careful engineer adds to the
    hand ETL. ``ts`` is text when read from a CSV, so parse it first; compare calendar days,
    so a row from just before midnight and one from just after are both caught."""
    return extract[pd.to_datetime(extract["ts"]).dt.normalize() != pd.Timestamp(day)]


def exercise_01_2(steps: pd.DataFrame) -> int:
    """Rows going into the inner join with the labels, minus the rows coming out of it."""
    rows = steps.groupby("step")["rows"].sum()
    return int(rows["join placements (left)"] - rows["join labels (inner)"])
