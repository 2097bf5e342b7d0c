"""Worked solutions for notebook 10_orchestrator (try each exercise first)."""

from __future__ import annotations

import datetime as dt


def exercise_10_1() -> int:
    """9 partitions, a window of 3: partitions 1 to 3 have fewer than 3 published days
    before them (the partitions start on the first one), so they only publish; partitions 4
    to 9 each train on the 3 days before them: 6."""
    return 9 - 3


def exercise_10_2(day: str, window: int) -> list[str]:
    """The days D - window to D - 1: training never sees the day the model is gated on."""
    end = dt.date.fromisoformat(day)
    return [(end - dt.timedelta(days=k)).isoformat() for k in range(window, 0, -1)]
