"""validation: shape problems fail the day closed; bad rows go to quarantine with a reason."""

from __future__ import annotations

import datetime as dt
import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandera.errors import SchemaErrors

from mlops_helpers import data, etl
from mlops_helpers.validation import (
    LABELS_CONTRACT,
    ContractError,
    QuarantineThresholdError,
    check_columns,
    check_impressions,
    check_labels,
    duplicated,
    fast_contract,
    impressions_contract,
    quarantine_summary,
    sort_order,
)

DAY = dt.date(2024, 3, 5)
N = 300
SEED = 8
PLACEMENT_IDS = list(data.generate_placements(SEED)["placement_id"])
FIX = "fix the upstream extract or update the contract in mlops_helpers.validation"


def impressions(fault: str = "none", *, seed: int = SEED, n_rows: int = N) -> pd.DataFrame:
    return data.generate_day(seed, n_rows, DAY, fault).impressions


def check(df: pd.DataFrame):
    return check_impressions(df, DAY, PLACEMENT_IDS)


def assert_partition(df: pd.DataFrame, result) -> None:
    """rows in = rows valid + rows quarantined; no row in both; every reason non-empty."""
    assert len(df) == len(result.valid) + len(result.quarantine)
    assert set(result.valid.index).isdisjoint(result.quarantine.index)
    assert set(result.valid.index) | set(result.quarantine.index) == set(df.index)
    reasons = result.quarantine["reason"]
    assert reasons.map(lambda r: isinstance(r, str) and r.strip() != "").all()


# --- shape problems: the whole day fails closed ------------------------------------------


def test_clean_day_passes_with_only_baseline_mess():
    df = impressions()
    result = check(df)
    assert_partition(df, result)
    assert len(result.quarantine) < 0.02 * len(df)
    assert set(result.quarantine["reason"]) <= {
        "duplicate impression_id",
        "late row (event time not on this day)",
    }


def test_schema_change_fails_closed_naming_both_columns_and_the_fix():
    with pytest.raises(ContractError) as err:
        check(impressions("schema_change"))
    message = str(err.value)
    assert "page_load_ms" in message
    assert "page_load_time_ms" in message
    assert DAY.isoformat() in message
    assert FIX in message


def test_missing_column_fails_closed():
    with pytest.raises(ContractError, match=r"missing columns \['scroll_depth'\]") as err:
        check(impressions().drop(columns="scroll_depth"))
    assert FIX in str(err.value)


def test_extra_column_fails_closed():
    with pytest.raises(ContractError, match=r"unexpected columns \['browser'\]") as err:
        check(impressions().assign(browser="firefox"))
    assert FIX in str(err.value)


def test_retyped_column_fails_closed_naming_the_column():
    df = impressions().astype({"scroll_depth": "str"})
    with pytest.raises(ContractError, match="scroll_depth") as err:
        check(df)
    assert FIX in str(err.value)


def test_empty_extract_fails_closed_with_the_fix():
    with pytest.raises(ContractError, match="no rows") as err:
        check(impressions("empty_day"))
    assert "check that the upstream export ran" in str(err.value)


def test_a_blocked_day_says_what_broke_in_fields_its_message_is_made_of():
    with pytest.raises(ContractError) as err:
        check(impressions("schema_change"))
    exc = err.value
    assert (exc.extract, exc.day, exc.kind) == ("impressions", DAY, "schema changed")
    assert exc.detail == (
        "schema changed: missing columns ['page_load_ms'], unexpected columns ['page_load_time_ms']"
    )
    assert exc.fix == FIX
    assert str(exc) == f"impressions {DAY.isoformat()}: {exc.detail}; {FIX}"


def test_an_empty_labels_extract_is_a_labels_problem_of_its_own_kind():
    with pytest.raises(ContractError) as err:
        check_labels(data.generate_day(SEED, N, DAY).labels.iloc[0:0], DAY)
    assert (err.value.extract, err.value.kind) == ("labels", "the extract has no rows")
    assert err.value.detail == "the extract has no rows"


def test_labels_that_break_their_contract_are_counted_in_the_detail():
    labels = data.generate_day(SEED, N, DAY).labels
    with pytest.raises(ContractError) as err:
        check_labels(labels.assign(viewable=labels["viewable"] * 2), DAY)
    assert (err.value.extract, err.value.kind) == ("labels", "contract failures")
    assert err.value.detail.split(",")[0].endswith("contract failures")


def test_the_quarantine_threshold_error_carries_its_counts():
    placements = data.generate_placements(SEED)
    raw = data.generate_day(SEED, N, DAY, "out_of_range", placements=placements)
    with pytest.raises(QuarantineThresholdError) as err:
        etl.transform_day(raw, placements, max_quarantine_fraction=0.02)
    exc = err.value
    assert (exc.extract, exc.day, exc.kind) == ("impressions", DAY, "over the quarantine threshold")
    assert (exc.rows_in, exc.threshold) == (len(raw.impressions), 0.02)
    assert exc.fraction == len(exc.quarantine) / len(raw.impressions) > 0.02
    assert exc.detail == (
        f"{len(exc.quarantine)} of {exc.rows_in} rows quarantined ({exc.fraction:.1%}), "
        "over the threshold of 2.0%"
    )


def test_contract_errors_keep_their_fields_through_pickle():
    """A day checked in a worker process reaches the caller with its fields intact."""
    with pytest.raises(ContractError) as err:
        check(impressions("empty_day"))
    copy = pickle.loads(pickle.dumps(err.value))
    assert (copy.extract, copy.day, copy.kind, copy.detail, str(copy)) == (
        err.value.extract,
        err.value.day,
        err.value.kind,
        err.value.detail,
        str(err.value),
    )
    placements = data.generate_placements(SEED)
    raw = data.generate_day(SEED, N, DAY, "out_of_range", placements=placements)
    with pytest.raises(QuarantineThresholdError) as over:
        etl.transform_day(raw, placements, max_quarantine_fraction=0.02)
    again = pickle.loads(pickle.dumps(over.value))
    assert (str(again), again.rows_in, len(again.quarantine)) == (
        str(over.value),
        over.value.rows_in,
        len(over.value.quarantine),
    )


def test_check_columns_accepts_the_contract_columns_in_any_order():
    df = impressions()
    check_columns(df[list(reversed(df.columns))], data.IMPRESSION_COLUMNS, "impressions", DAY)


# --- row problems: quarantined with a reason ---------------------------------------------


@pytest.mark.parametrize(
    ("fault", "column", "reason"),
    [
        ("out_of_range", "scroll_depth", "scroll_depth out of range"),
        ("late_rows", "ts", "late row (event time not on this day)"),
        ("nulls", "placement_id", "placement_id is null"),
        ("nulls", "device", "device is null"),
        ("unknown_category", "placement_id", "placement_id unknown value"),
        ("unknown_category", "device", "device unknown value"),
    ],
)
def test_each_row_fault_quarantines_the_affected_rows_with_its_reason(fault, column, reason):
    clean, faulty = impressions(), impressions(fault)
    a, b = clean[column], faulty[column]
    hit = faulty.index[((a != b) & ~(a.isna() & b.isna())).to_numpy()]
    assert len(hit) > 0
    result = check(faulty)
    assert_partition(faulty, result)
    assert set(hit) <= set(result.quarantine.index)
    reasons = result.quarantine.loc[hit, "reason"]
    assert reasons.str.contains(reason, regex=False).all()
    # beyond the baseline mess of a clean day, nobody else gets this reason
    others = result.quarantine.drop(index=hit)["reason"]
    baseline = check(clean).quarantine["reason"]
    flagged = set(others.index[others.str.contains(reason, regex=False).to_numpy()])
    assert flagged <= set(baseline.index[baseline.str.contains(reason, regex=False).to_numpy()])


def test_duplicates_keep_the_first_copy_and_quarantine_the_rest():
    faulty = impressions("duplicates")
    result = check(faulty)
    assert_partition(faulty, result)
    repeated = faulty.index[faulty["impression_id"].duplicated(keep="first").to_numpy()]
    assert set(repeated) <= set(result.quarantine.index)
    assert (result.quarantine.loc[repeated, "reason"] == "duplicate impression_id").all()
    assert result.valid["impression_id"].is_unique
    ids = faulty["impression_id"]
    first = faulty.index[(ids.duplicated(keep=False) & ~ids.duplicated(keep="first")).to_numpy()]
    first_reasons = result.quarantine["reason"].reindex(first).fillna("")
    assert not first_reasons.str.contains("duplicate").any()  # the first copy is not lost
    assert set(first) & set(result.valid.index)
    assert set(result.valid["impression_id"]) == set(faulty["impression_id"]) - set(
        result.quarantine.drop(index=repeated)["impression_id"]
    )


def test_a_row_with_two_problems_lists_both_reasons():
    df = impressions()
    df.loc[0, "scroll_depth"] = 7.0
    df.loc[0, "device"] = "smart_tv"
    result = check(df)
    reason = result.quarantine.loc[0, "reason"]
    assert "scroll_depth out of range" in reason
    assert "device unknown value" in reason
    assert "; " in reason


def test_quarantine_summary_counts_rows_per_reason():
    result = check(impressions("out_of_range"))
    summary = quarantine_summary(result.quarantine)
    assert list(summary.columns) == ["reason", "rows"]
    assert summary["rows"].sum() == len(result.quarantine)
    assert summary.iloc[0]["reason"] == "scroll_depth out of range"
    assert summary["rows"].is_monotonic_decreasing


# --- the invariant, on messy frames hypothesis makes ---------------------------------------


ROW_FAULTS = {
    "scroll_percent": ("scroll_depth", 55.0),
    "negative_scroll": ("scroll_depth", -0.2),
    "null_scroll": ("scroll_depth", np.nan),
    "negative_time": ("time_on_page_s", -3.0),
    "zero_width": ("ad_width", 0),
    "null_id": ("impression_id", None),
    "slow_load": ("page_load_ms", 500_000.0),
    "unknown_device": ("device", "smart_tv"),
    "null_device": ("device", None),
    "unknown_placement": ("placement_id", "P999"),
    "null_placement": ("placement_id", None),
    "late": ("ts", pd.Timestamp(DAY) - pd.Timedelta(hours=3)),
    "early": ("ts", pd.Timestamp(DAY) + pd.Timedelta(days=1, hours=1)),
}


@st.composite
def messy_days(draw):
    """A generated day with random rows broken in random ways, duplicated and shuffled."""
    n_rows = draw(st.integers(20, 120))
    seed = draw(st.integers(0, 2**32 - 1))
    fault = draw(st.sampled_from(["none", "duplicates", "nulls", "late_rows", "out_of_range"]))
    df = data.generate_day(seed, n_rows, DAY, fault).impressions
    df = df.astype({"device": object, "placement_id": object})
    broken: dict[int, set[str]] = {}
    hits = draw(
        st.lists(
            st.tuples(st.integers(0, len(df) - 1), st.sampled_from(sorted(ROW_FAULTS))),
            max_size=15,
        )
    )
    for row, name in hits:
        column, value = ROW_FAULTS[name]
        df.loc[row, column] = value
        broken.setdefault(row, set()).add(column)
    copies = draw(st.lists(st.integers(0, len(df) - 1), max_size=5))
    df = pd.concat([df, df.iloc[copies]], ignore_index=True)
    order = draw(st.permutations(range(len(df))))
    df = df.iloc[list(order)]
    return df, broken


def row_failures(df: pd.DataFrame, schema) -> set[tuple[int, str, str]]:
    """(row, check, column) of every row-level failure pandera reports for ``df``."""
    try:
        schema.validate(df, lazy=True)
    except SchemaErrors as exc:
        rows = exc.failure_cases.dropna(subset=["index"])
        return set(zip(rows["index"].astype(int), rows["check"], rows["column"], strict=True))
    return set()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=messy_days())
def test_the_fast_contract_fails_the_same_rows_as_the_declared_one(case):
    df, _ = case
    contract = impressions_contract(DAY, PLACEMENT_IDS)
    assert row_failures(df, fast_contract(contract)) == row_failures(df, contract)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=messy_days())
def test_every_row_is_either_valid_or_quarantined_with_a_reason(case):
    df, broken = case
    result = check(df)
    assert_partition(df, result)
    # every deliberately broken row (and every copy of it) is in quarantine
    assert set(broken) <= set(result.quarantine.index)
    # what is left passes the contract and has unique ids
    assert result.valid["impression_id"].is_unique
    assert len(check(result.valid).quarantine) == 0


def test_the_declared_contract_keeps_its_uniqueness_rule():
    contract = impressions_contract(DAY, PLACEMENT_IDS)
    fast = fast_contract(contract)
    assert contract.columns["impression_id"].unique  # what notebook 03 shows
    assert not fast.columns["impression_id"].unique
    assert [c.name for c in fast.columns["impression_id"].checks] == ["field_uniqueness"]
    assert LABELS_CONTRACT.columns["impression_id"].unique


def test_a_retyped_column_gets_the_declared_contracts_own_message():
    df = impressions().astype({"scroll_depth": "str"})
    with pytest.raises(SchemaErrors) as declared:
        impressions_contract(DAY, PLACEMENT_IDS).validate(df, lazy=True)
    cases = declared.value.failure_cases
    whole = cases[cases["index"].isna()]
    detail = "; ".join(
        f"{c}: {chk} ({fc})"
        for c, chk, fc in whole[["column", "check", "failure_case"]].itertuples(index=False)
    )
    with pytest.raises(ContractError) as err:
        check(df)
    assert f"schema changed: {detail}; {FIX}" in str(err.value)


def test_valid_rows_are_the_checked_rows_minus_the_quarantine_in_order():
    df = impressions("duplicates")
    result = check(df)
    expected = df[~df.index.isin(result.quarantine.index)]
    pd.testing.assert_frame_equal(result.valid, expected)
    assert result.rows is df


# --- duplicates and sorting, as the contracts compute them ---------------------------------

SOME_IDS = st.lists(
    st.one_of(st.none(), st.sampled_from(["a", "b", "ab", "é", "ba", "z"])), max_size=30
)


@given(
    values=SOME_IDS,
    keep=st.sampled_from(["first", "last", False]),
    dtype=st.sampled_from(["str", "object"]),
)
def test_duplicated_matches_pandas(values, keep, dtype):
    series = pd.Series(values, dtype=dtype, index=np.arange(len(values)) * 3)
    pd.testing.assert_series_equal(duplicated(series, keep), series.duplicated(keep=keep))


@given(
    values=st.lists(
        st.one_of(st.none(), st.integers(0, 5), st.sampled_from(["a", "b"])), max_size=20
    )
)
def test_duplicated_matches_pandas_on_mixed_values(values):
    series = pd.Series(values, dtype=object)
    pd.testing.assert_series_equal(duplicated(series), series.duplicated())


def test_duplicated_on_sorted_ids_and_on_copies_far_apart():
    ids = pd.Series([f"{i:07d}" for i in range(1000)], dtype="str")
    assert not duplicated(ids).any()  # strictly increasing: nothing repeats
    with_copies = pd.concat([ids, ids.iloc[[5, 999, 5]]], ignore_index=True)
    assert list(np.flatnonzero(duplicated(with_copies))) == [1000, 1001, 1002]


@given(
    values=st.lists(
        st.one_of(st.none(), st.text(alphabet="ab\x00é", min_size=2, max_size=2)), max_size=40
    ),
    large=st.booleans(),
    chunks=st.integers(1, 3),
)
def test_sort_order_is_arrows_stable_sort(values, large, chunks):
    array = pa.array(values, type=pa.large_string() if large else pa.string())
    cut = len(values) // chunks
    pieces = pa.chunked_array(
        [array[i * cut : (i + 1) * cut if i < chunks - 1 else None] for i in range(chunks)]
    )
    for candidate in (array, array.slice(1), pieces):
        assert list(sort_order(candidate)) == pc.sort_indices(candidate).to_pylist()


# --- labels ----------------------------------------------------------------------------


def test_labels_pass_when_clean():
    labels = data.generate_day(SEED, N, DAY).labels
    pd.testing.assert_frame_equal(check_labels(labels, DAY), labels)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda df: df.assign(viewable=df["viewable"] * 2),
        lambda df: pd.concat([df, df.iloc[:3]], ignore_index=True),
    ],
    ids=["not-a-0-or-1", "duplicate-ids"],
)
def test_labels_that_break_the_contract_block_the_day(breakage):
    labels = breakage(data.generate_day(SEED, N, DAY).labels)
    with pytest.raises(ContractError) as err:
        check_labels(labels, DAY)
    message = str(err.value)
    assert f"labels {DAY.isoformat()}" in message
    assert "fix the label export before loading" in message


def test_duplicate_labels_get_pandera_s_own_uniqueness_failure():
    labels = data.generate_day(SEED, N, DAY).labels
    with pytest.raises(ContractError) as err:
        check_labels(pd.concat([labels, labels.iloc[:3]], ignore_index=True), DAY)
    assert "6 contract failures" in str(err.value)  # every copy, as pandera reports them
    assert "'check': 'field_uniqueness', 'check_number': None" in str(err.value)


def test_labels_with_a_missing_column_name_it():
    labels = data.generate_day(SEED, N, DAY).labels.rename(columns={"viewable": "is_viewable"})
    with pytest.raises(ContractError, match=r"missing columns \['viewable'\]"):
        check_labels(labels, DAY)
