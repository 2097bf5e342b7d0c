"""Worked solutions for notebook 01. Try each exercise yourself first."""

import pandas as pd


def exercise_01_1(output_csv) -> int:
    """Rows whose impression_id an earlier row already has: all rows minus the distinct ids."""
    written = pd.read_csv(output_csv)
    return len(written) - written["impression_id"].nunique()


def exercise_01_2(steps: pd.DataFrame) -> int:
    """Rows going into the inner join with the labels, minus the rows coming out of it."""
    rows = steps.groupby("step")["rows"].sum()
    return int(rows["join placements (left)"] - rows["join labels (inner)"])
