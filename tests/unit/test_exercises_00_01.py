"""Exercises of notebooks 00 and 01: each check accepts the worked solution, refuses
plausible wrong answers with the hint of the case they failed, and calls the untouched
placeholder "not attempted". No notebook runs here: the checks build their own inputs."""

from __future__ import annotations

import pandas as pd
import pytest

from mlops_helpers import data
from tests.support import check_exercise, worked_solution


def refused(name, answer, case_words: str, **context) -> str:
    accepted, text = check_exercise(name, answer, **context)
    assert not accepted, text
    assert text.startswith(f"❌ Exercise {name}: not yet"), text
    assert case_words in text, text
    return text


def not_attempted(name, answer, **context) -> None:
    accepted, text = check_exercise(name, answer, **context)
    assert not accepted and text.startswith(f"📝 Exercise {name}: not attempted yet"), text


# 00.1 rows of a generated day, 00.2 the fault that renames a column ----------------------


@pytest.mark.parametrize("seed", [7, 42])
def test_00_1_the_worked_solution_is_right_for_the_seeds_the_tests_run(seed):
    accepted, text = check_exercise("00.1", worked_solution("00.1"), seed=seed, day="2026-01-05")
    assert accepted and text.startswith("✅ Exercise 00.1: solved"), text


def test_00_1_forgetting_the_everyday_duplicates_is_refused_with_the_hint():
    refused("00.1", 2000, "BASE_DUPLICATES", seed=42, day="2026-01-05")
    not_attempted("00.1", None, seed=42, day="2026-01-05")


def test_00_2_the_renaming_fault_is_accepted_and_another_fault_refused():
    accepted, text = check_exercise("00.2", worked_solution("00.2"))
    assert accepted and worked_solution("00.2") in data.FAULTS, text
    refused("00.2", "duplicates", "FAULT_DESCRIPTIONS")
    refused("00.2", "page_load_ms", "FAULT_DESCRIPTIONS")  # the column, not the fault
    not_attempted("00.2", None)


# 01.1 late_rows(extract, day) -----------------------------------------------------------


def placeholder(extract, day):
    raise NotImplementedError("write this check")


def test_01_1_the_worked_solution_passes_and_the_placeholder_is_not_attempted():
    accepted, text = check_exercise("01.1", worked_solution("01.1"))
    assert accepted and text.startswith("✅ Exercise 01.1: solved (5 cases passed)"), text
    not_attempted("01.1", placeholder)


def test_01_1_the_worked_solution_returns_the_late_rows_of_a_tiny_extract():
    extract = pd.DataFrame(
        {
            "impression_id": ["a", "b", "c"],
            "ts": ["2026-02-01 10:00:00", "2026-01-31 23:00:00", "2026-02-01 23:59:59"],
        },
        index=[4, 5, 6],
    )
    late = worked_solution("01.1")(extract, "2026-02-01")
    assert list(late.index) == [5] and list(late.columns) == ["impression_id", "ts"]


def test_01_1_comparing_a_date_with_the_day_string_returns_every_row():
    # a date object never equals the text "2026-06-10": every row looks late
    refused("01.1", lambda e, day: e[pd.to_datetime(e["ts"]).dt.date != day], "CSV")


def test_01_1_an_off_by_one_day_is_refused():
    def the_day_before(e, day):
        return e[pd.to_datetime(e["ts"]).dt.normalize() != pd.Timestamp(day) - pd.Timedelta("1D")]

    refused("01.1", the_day_before, "CSV")


def test_01_1_comparing_only_the_day_of_the_month_misses_another_month():
    def day_of_month(e, day):
        return e[pd.to_datetime(e["ts"]).dt.day != pd.Timestamp(day).day]

    text = refused("01.1", day_of_month, "the edges of the day")
    assert "another month" in text


def test_01_1_a_boolean_mask_instead_of_the_rows_is_refused():
    def mask(e, day):
        return pd.to_datetime(e["ts"]).dt.normalize() != pd.Timestamp(day)

    text = refused("01.1", mask, "CSV")
    assert "got Series" in text


def test_01_1_renumbering_the_rows_is_refused_with_what_is_wrong():
    def renumbered(e, day):
        return e[pd.to_datetime(e["ts"]).dt.normalize() != pd.Timestamp(day)].reset_index(drop=True)

    text = refused("01.1", renumbered, "CSV")
    assert "keep its index" in text


def test_01_1_dropping_columns_is_refused():
    def ids_only(e, day):
        return e.loc[pd.to_datetime(e["ts"]).dt.normalize() != pd.Timestamp(day), ["ts"]]

    text = refused("01.1", ids_only, "CSV")
    assert "keep them all" in text


# 01.2 rows the inner join dropped ---------------------------------------------------------


def _steps(joined: dict[str, int], kept: dict[str, int]) -> pd.DataFrame:
    """A checklist as notebook 01 keeps it, for days with these rows before and after the join."""
    rows = [{"day": "-", "step": "read placements CSV", "rows": 40}]
    for day in joined:
        rows += [
            {"day": day, "step": "read impressions CSV", "rows": joined[day]},
            {"day": day, "step": "read labels CSV", "rows": kept[day] - 3},
            {"day": day, "step": "join placements (left)", "rows": joined[day]},
            {"day": day, "step": "join labels (inner)", "rows": kept[day]},
        ]
    return pd.DataFrame(rows)


def test_01_2_the_drop_over_all_days_is_accepted_and_one_day_or_the_labels_refused():
    joined, kept = {"d1": 510, "d2": 498}, {"d1": 500, "d2": 481}
    steps = _steps(joined, kept)
    dropped = sum(joined.values()) - sum(kept.values())
    accepted, text = check_exercise("01.2", worked_solution("01.2", steps=steps), steps=steps)
    assert accepted and worked_solution("01.2", steps=steps) == dropped, text
    refused("01.2", joined["d2"] - kept["d2"], "checklist", steps=steps)  # the last day only
    labels = steps.loc[steps["step"] == "read labels CSV", "rows"].sum()
    refused("01.2", sum(joined.values()) - labels, "checklist", steps=steps)  # labels read
    not_attempted("01.2", None, steps=steps)
