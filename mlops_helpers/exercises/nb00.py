"""Exercises of notebook 00 (start here): two look-ups to try the checks."""

from __future__ import annotations

from mlops_helpers import data
from mlops_helpers.exercises import value_exercise

EXERCISES = [
    value_exercise(
        "00.1",
        task="count the rows of a generated day, everyday mess included",
        hint="every day adds exact duplicates: data.BASE_DUPLICATES of the rows, rounded",
        expected=lambda seed, day: len(data.generate_day(seed, 2000, day).impressions),
    ),
    value_exercise(
        "00.2",
        task="name the fault that renames a column",
        hint="read data.FAULT_DESCRIPTIONS above",
        expected=lambda: next(
            f for f, text in data.FAULT_DESCRIPTIONS.items() if "renamed" in text
        ),
    ),
]
