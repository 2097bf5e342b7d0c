"""Worked solutions for notebook 00. Try each exercise yourself first."""

from mlops_helpers import data


def exercise_00_1() -> int:
    """2000 generated impressions, plus the everyday duplicates: 0.5 % of them, rounded."""
    n_rows = 2000
    return n_rows + round(n_rows * data.BASE_DUPLICATES)


def exercise_00_2() -> str:
    """The fault whose description says a column was renamed."""
    return next(name for name, text in data.FAULT_DESCRIPTIONS.items() if "renamed" in text)
