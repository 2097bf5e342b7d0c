"""Exercises of notebook 09 (proof of concept)."""

from __future__ import annotations

import math

from mlops_helpers.exercises import Case, Exercise, value_exercise

# (label, arguments, the months it takes, hint)
BREAK_EVEN = [
    (
        "a team with two faults a month",
        dict(
            build_hours=40,
            upkeep_hours_per_month=2,
            faults_per_month=2,
            manual_hours_per_fault=6,
            automated_hours_per_fault=0.5,
        ),
        40 / (2 * 5.5 - 2),
        "saved per month = faults * (manual - automated hours) - upkeep; months = build / saved",
    ),
    (
        "upkeep larger than what is saved",
        dict(
            build_hours=10,
            upkeep_hours_per_month=8,
            faults_per_month=1,
            manual_hours_per_fault=4,
            automated_hours_per_fault=1,
        ),
        math.inf,
        "when nothing is saved per month it never pays: return math.inf",
    ),
    (
        "nothing to build",
        dict(
            build_hours=0,
            upkeep_hours_per_month=0,
            faults_per_month=3,
            manual_hours_per_fault=2,
            automated_hours_per_fault=0.25,
        ),
        0.0,
        "no build cost: it pays from month 0",
    ),
    (
        "a fraction of a month",
        dict(
            build_hours=5,
            upkeep_hours_per_month=1,
            faults_per_month=4,
            manual_hours_per_fault=3,
            automated_hours_per_fault=0.5,
        ),
        5 / 9,
        "return the months as a float, not rounded",
    ),
    (
        "saving exactly the upkeep",
        dict(
            build_hours=12,
            upkeep_hours_per_month=3,
            faults_per_month=1,
            manual_hours_per_fault=4,
            automated_hours_per_fault=1,
        ),
        math.inf,
        "saving only the upkeep is saving nothing: math.inf",
    ),
]


def _break_even_cases() -> list[Case]:
    def accept(got, want) -> bool:
        if not isinstance(got, int | float) or isinstance(got, bool):
            return False
        return got == want if math.isinf(want) else math.isclose(got, want, rel_tol=1e-9)

    return [
        Case(label, lambda f, a=args: f(**a), lambda got, w=want: accept(got, w), hint)
        for label, args, want, hint in BREAK_EVEN
    ]


EXERCISES = [
    value_exercise(
        "09.1",
        task="say which faults the automated path caught by blocking the whole day",
        hint="read the automated 'check' column: which checks say the day was blocked?",
        expected=lambda records: {
            r.fault
            for r in records
            if r.path == "automated" and r.outcome.startswith("day blocked")
        },
    ),
    value_exercise(
        "09.2",
        task="count the manual steps to recover from every fault, by hand and automated",
        hint="add up the 'manual steps' and the 'automated steps' columns of the matrix in section 7",
        expected=lambda frame: tuple(
            int(frame.loc[frame["path"] == p, "manual_steps"].sum())
            for p in ("manual", "automated")
        ),
    ),
    Exercise(
        "09.3",
        task="write months_to_break_even(...): when the automation pays for your team",
        kind="code",
        cases=_break_even_cases,
        hint="hours saved per month = faults * (manual - automated) - upkeep; never pays: math.inf",
    ),
]
