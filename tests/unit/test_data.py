"""data: seeded synthetic extracts, their size, each injected fault, immutable raw files."""

from __future__ import annotations

import datetime as dt
import inspect

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_helpers import data, etl

DAY = dt.date(2024, 3, 5)
N = 400


def day_frame(fault: str = "none", *, seed: int = 3, n_rows: int = N) -> pd.DataFrame:
    return data.generate_day(seed, n_rows, DAY, fault).impressions


def changed_rows(clean: pd.DataFrame, faulty: pd.DataFrame, column: str) -> pd.Index:
    """Rows (same length frames) whose ``column`` differs, nulls counted as a difference."""
    a, b = clean[column], faulty[column]
    differs = (a != b) & ~(a.isna() & b.isna())
    return clean.index[differs.to_numpy()]


def expected_fault_rows(n: int) -> int:
    return round(n * data.FAULT_FRACTION)


def test_same_seed_and_day_give_identical_frames():
    a = data.generate_day(11, N, DAY)
    b = data.generate_day(11, N, DAY)
    pd.testing.assert_frame_equal(a.impressions, b.impressions)
    pd.testing.assert_frame_equal(a.labels, b.labels)
    pd.testing.assert_frame_equal(data.generate_placements(11), data.generate_placements(11))


def test_other_seed_or_day_gives_different_frames():
    base = data.generate_day(11, N, DAY).impressions
    other_seed = data.generate_day(12, N, DAY).impressions
    other_day = data.generate_day(11, N, DAY + dt.timedelta(days=1)).impressions
    assert not base["scroll_depth"].equals(other_seed["scroll_depth"])
    assert not base["scroll_depth"].equals(other_day["scroll_depth"])
    assert not data.generate_placements(11).equals(data.generate_placements(12))


def test_a_day_is_independent_of_the_days_generated_before_it():
    first = data.generate_day(5, N, DAY).impressions
    data.generate_day(5, N, DAY - dt.timedelta(days=1))
    pd.testing.assert_frame_equal(first, data.generate_day(5, N, DAY).impressions)


@settings(max_examples=25, deadline=None)
@given(n_rows=st.integers(1, 600), seed=st.integers(0, 2**32 - 1))
def test_n_rows_sets_the_number_of_distinct_impressions(n_rows, seed):
    raw = data.generate_day(seed, n_rows, DAY)
    imp = raw.impressions
    assert imp["impression_id"].nunique() == n_rows
    assert n_rows <= len(imp) <= n_rows * 1.01 + 1  # only a little baseline duplication
    assert list(imp.columns) == list(data.IMPRESSION_COLUMNS)
    assert list(raw.labels.columns) == list(data.LABEL_COLUMNS)
    assert set(raw.labels["impression_id"]) <= set(imp["impression_id"])
    assert len(raw.labels) >= n_rows * 0.98 - 1  # only a few labels missing
    assert set(raw.labels["viewable"]) <= {0, 1}


@pytest.mark.parametrize("n_rows", [0, -5])
def test_non_positive_n_rows_is_rejected(n_rows):
    with pytest.raises(ValueError, match=f"n_rows must be a positive int, got {n_rows}"):
        data.generate_day(1, n_rows, DAY)


def test_clean_day_values_are_in_range():
    imp = day_frame()
    assert imp["scroll_depth"].between(0, 1).all()
    assert imp["device"].isin(data.DEVICES).all()
    assert (imp["time_on_page_s"] >= 0).all()
    placements = set(data.generate_placements(3)["placement_id"])
    assert set(imp["placement_id"]) <= placements


def test_unknown_fault_names_the_allowed_values():
    with pytest.raises(ValueError) as err:
        data.generate_day(1, N, DAY, fault="gremlins")
    message = str(err.value)
    assert "'gremlins'" in message
    for name in ("none", *data.FAULTS):
        assert name in message
    with pytest.raises(ValueError, match="gremlins"):
        data.check_fault("gremlins")


def test_every_fault_has_a_description():
    assert set(data.FAULT_DESCRIPTIONS) == set(data.FAULTS)


def test_schema_change_renames_page_load_ms():
    imp = day_frame("schema_change")
    assert "page_load_ms" not in imp.columns
    assert "page_load_time_ms" in imp.columns
    clean = day_frame()
    pd.testing.assert_series_equal(
        imp["page_load_time_ms"], clean["page_load_ms"], check_names=False
    )


def test_duplicates_adds_five_percent_duplicate_ids():
    clean, faulty = day_frame(), day_frame("duplicates")
    added = len(faulty) - len(clean)
    assert added == expected_fault_rows(len(clean))
    extra_dupes = (
        faulty["impression_id"].duplicated().sum() - clean["impression_id"].duplicated().sum()
    )
    assert extra_dupes == added
    # they are exact copies of delivered rows
    assert faulty.duplicated().sum() >= added


def test_nulls_blank_placement_or_device():
    clean, faulty = day_frame(), day_frame("nulls")
    assert len(faulty) == len(clean)
    null_rows = faulty[faulty["placement_id"].isna() | faulty["device"].isna()]
    assert len(null_rows) == expected_fault_rows(len(clean))
    assert faulty["placement_id"].isna().sum() > 0
    assert faulty["device"].isna().sum() > 0
    assert clean["placement_id"].notna().all() and clean["device"].notna().all()


def test_out_of_range_sends_scroll_depth_in_percent():
    clean, faulty = day_frame(), day_frame("out_of_range")
    rows = changed_rows(clean, faulty, "scroll_depth")
    assert len(rows) == expected_fault_rows(len(clean))
    assert (faulty.loc[rows, "scroll_depth"] > 1).all()
    assert faulty.drop(index=rows)["scroll_depth"].between(0, 1).all()


def test_late_rows_belong_to_the_previous_day():
    clean, faulty = day_frame(), day_frame("late_rows")
    rows = changed_rows(clean, faulty, "ts")
    assert len(rows) == expected_fault_rows(len(clean))
    moved = faulty.loc[rows, "ts"]
    assert (moved < pd.Timestamp(DAY)).all()
    assert (moved.dt.date < DAY).all()


def test_empty_day_has_no_rows():
    raw = data.generate_day(3, N, DAY, fault="empty_day")
    assert len(raw.impressions) == 0
    assert len(raw.labels) == 0
    assert list(raw.impressions.columns) == list(data.IMPRESSION_COLUMNS)


def test_unknown_category_names_devices_or_placements_not_in_reference():
    clean, faulty = day_frame(), day_frame("unknown_category")
    placements = set(data.generate_placements(3)["placement_id"])
    unknown = ~faulty["device"].isin(data.DEVICES) | ~faulty["placement_id"].isin(placements)
    assert unknown.sum() == expected_fault_rows(len(clean))
    assert (~faulty["device"].isin(data.DEVICES)).sum() > 0
    assert (~faulty["placement_id"].isin(placements)).sum() > 0


def test_fault_leaves_other_columns_alone():
    clean, faulty = day_frame(), day_frame("out_of_range")
    pd.testing.assert_frame_equal(
        clean.drop(columns="scroll_depth"), faulty.drop(columns="scroll_depth")
    )


def test_inject_fault_does_not_modify_its_input():
    clean = day_frame()
    before = clean.copy()
    data.inject_fault(clean, "nulls", np.random.default_rng(0))
    pd.testing.assert_frame_equal(clean, before)


def test_day_range_is_consecutive():
    days = data.day_range("2024-02-28", 3)
    assert days == [dt.date(2024, 2, 28), dt.date(2024, 2, 29), dt.date(2024, 3, 1)]


def test_write_raw_dataset_writes_each_day_and_faults_the_last(tmp_path):
    days = data.write_raw_dataset(tmp_path, 4, 120, "2024-01-01", 2, fault="empty_day")
    assert days == data.day_range("2024-01-01", 2)
    assert (tmp_path / "placements.csv").is_file()
    first = data.raw_day_dir(tmp_path, days[0])
    last = data.raw_day_dir(tmp_path, days[1])
    assert len(pd.read_csv(first / "impressions.csv")) >= 120
    assert len(pd.read_csv(last / "impressions.csv")) == 0
    assert not list(tmp_path.rglob("*.tmp"))


def test_write_raw_dataset_leaves_existing_raw_files_untouched(tmp_path):
    data.write_raw_dataset(tmp_path, 4, 100, "2024-01-01", 2)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    # other settings for the same days must not rewrite what has already arrived
    days = data.write_raw_dataset(tmp_path, 99, 250, "2024-01-01", 3, fault="duplicates")
    assert len(days) == 3
    for path, (content, mtime) in before.items():
        assert path.read_bytes() == content, f"{path.name} was rewritten"
        assert path.stat().st_mtime_ns == mtime
    assert (data.raw_day_dir(tmp_path, days[2]) / "labels.csv").is_file()


def test_the_data_functions_take_seed_n_rows_then_the_days_in_one_order():
    """One order to remember: seed, n_rows, start_day (or day), n_days, fault; the rest by name."""

    def leading(fn, skip: int = 0) -> list[str]:
        params = list(inspect.signature(fn).parameters.values())[skip:]
        return [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]

    order = ["seed", "n_rows", "start_day", "n_days", "fault"]
    assert leading(etl.dataset) == order
    assert leading(data.write_raw_dataset, skip=1) == order  # after the folder it writes to
    assert leading(etl.build_training_table) == order[:4]
    assert leading(data.generate_day) == ["seed", "n_rows", "day", "fault"]
