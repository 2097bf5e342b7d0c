"""Exercises of notebook 10 (the pipeline on an orchestrator)."""

from __future__ import annotations

from mlops_helpers.exercises import Case, Exercise, value_exercise

# The backfill 10.1 asks about: its size and window (not the notebook's own parameters).
BACKFILL_DAYS, WINDOW = 9, 3


def _mapped(day: str, window: int) -> list[str]:
    """What Dagster's own partition mapping gives: the published days trained_model[day]
    reads, with the same mapping as mlops_helpers/orchestration/definitions.py."""
    import warnings

    import dagster as dg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        mapping = dg.TimeWindowPartitionMapping(start_offset=-window, end_offset=-1)
    partitions = dg.DailyPartitionsDefinition(start_date="2020-01-01")
    subset = partitions.empty_subset().with_partition_keys([day])
    found = mapping.get_upstream_mapped_partitions_result_for_partitions(
        subset, partitions, partitions
    ).partitions_subset
    return sorted(found.get_partition_keys())


def _window_cases() -> list[Case]:
    cases = []
    for label, day, window in (
        ("a week's window in the middle of a month", "2025-06-17", 7),
        ("a window across a month's end", "2025-03-02", 3),
        ("a window across a leap day", "2024-03-01", 2),
        ("a window of one day", "2025-11-09", 1),
    ):
        want = _mapped(day, window)
        cases.append(
            Case(
                label,
                lambda fn, d=day, w=window: fn(d, w),
                lambda got, want=want: got == want,
                "the `window` days that end the day before `day`, oldest first, never `day` itself",
                show=repr,
            )
        )
    return cases


EXERCISES = [
    value_exercise(
        "10.1",
        task=f"count the trained_model partitions of a {BACKFILL_DAYS}-day backfill that train "
        f"(window {WINDOW})",
        hint="the first `window` partitions have no `window` days before them: they only publish",
        expected=lambda: BACKFILL_DAYS - WINDOW,
    ),
    Exercise(
        "10.2",
        task="write window_days(day, window): the days trained_model[day] reads",
        kind="code",
        cases=_window_cases,
        hint="the `window` days that end the day before `day`, oldest first, as YYYY-MM-DD text",
    ),
]
