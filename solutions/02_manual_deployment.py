"""Worked solutions for notebook 02. Try each exercise yourself first."""

from mlops_helpers import training


def exercise_02_1(train) -> str:
    """The fingerprint of the exact rows the first model saw, shortened to 12 hex characters."""
    return training.data_fingerprint(train)[:12]
