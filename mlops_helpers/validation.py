"""Data contracts for the raw extracts (pandera) and the quarantine report.

A contract problem with the *shape* of an extract (missing, extra or retyped columns,
an empty day) fails the whole day closed. A problem with *rows* (nulls, out-of-range
values, duplicates, late rows, unknown categories, missing labels) sends those rows to
quarantine with a reason each, and the rest goes on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from mlops_helpers.data import DEVICES, IMPRESSION_COLUMNS, LABEL_COLUMNS


class ContractError(ValueError):
    """An extract breaks its contract as a whole; nothing from that day is published."""


class QuarantineThresholdError(ContractError):
    """Too many rows were quarantined to trust the rest; nothing is published."""

    def __init__(self, message: str, quarantine: pd.DataFrame):
        super().__init__(message)
        self.quarantine = quarantine


@dataclass(frozen=True)
class Checked:
    """Rows that passed the contract, and the quarantined rows with a ``reason`` column."""

    valid: pd.DataFrame
    quarantine: pd.DataFrame


def impressions_contract(day: dt.date, placement_ids: list[str]) -> pa.DataFrameSchema:
    """The contract of one day's impressions extract."""
    start = pd.Timestamp(day)
    end = start + pd.Timedelta(days=1)
    return pa.DataFrameSchema(
        {
            "impression_id": pa.Column(
                str, nullable=False, unique=True, report_duplicates="exclude_first"
            ),
            "ts": pa.Column(
                "datetime64[ns]",
                pa.Check(
                    lambda s: (s >= start) & (s < end),
                    name="late_row",
                    error="late_row",
                ),
                coerce=True,
            ),
            "placement_id": pa.Column(str, pa.Check.isin(placement_ids), nullable=False),
            "device": pa.Column(str, pa.Check.isin(DEVICES), nullable=False),
            "ad_width": pa.Column(int, pa.Check.in_range(1, 4000)),
            "ad_height": pa.Column(int, pa.Check.in_range(1, 4000)),
            "page_load_ms": pa.Column(float, pa.Check.in_range(0, 120_000), nullable=True),
            "scroll_depth": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
            "time_on_page_s": pa.Column(float, pa.Check.ge(0.0)),
        },
        strict=True,
        ordered=False,
    )


LABELS_CONTRACT = pa.DataFrameSchema(
    {
        "impression_id": pa.Column(str, nullable=False, unique=True),
        "viewable": pa.Column(int, pa.Check.isin([0, 1])),
    },
    strict=True,
)

_READABLE = {
    "not_nullable": "is null",
    "field_uniqueness": "duplicate impression_id",
    "isin": "unknown value",
    "in_range": "out of range",
    "greater_than_or_equal_to": "negative",
    "late_row": "late row (event time not on this day)",
}


def check_columns(df: pd.DataFrame, expected: tuple[str, ...], what: str) -> None:
    """Fail closed when an extract's columns are not the contract's columns, or it is empty."""
    missing = [c for c in expected if c not in df.columns]
    extra = [c for c in df.columns if c not in expected]
    if missing or extra:
        raise ContractError(
            f"{what}: schema changed: missing columns {missing}, unexpected columns {extra}; "
            "fix the upstream extract or update the contract in mlops_helpers.validation"
        )
    if df.empty:
        raise ContractError(
            f"{what}: the extract has no rows; check that the upstream export ran for this day"
        )


def _reason(check: str, column: str) -> str:
    name = check.split("(")[0]
    if name in ("field_uniqueness", "late_row"):
        return _READABLE[name]
    return f"{column} {_READABLE.get(name, check)}"


def quarantine_rows(df: pd.DataFrame, schema: pa.DataFrameSchema, what: str) -> Checked:
    """Validate ``df`` lazily; rows that fail go to quarantine with their reasons joined by '; '."""
    try:
        schema.validate(df, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        whole = cases[cases["index"].isna()]
        if not whole.empty:
            detail = "; ".join(
                f"{c}: {chk} ({fc})"
                for c, chk, fc in whole[["column", "check", "failure_case"]].itertuples(index=False)
            )
            raise ContractError(
                f"{what}: schema changed: {detail}; fix the upstream extract "
                "or update the contract in mlops_helpers.validation"
            ) from None
        rows = cases.dropna(subset=["index"])
        reasons = (
            pd.DataFrame(
                {
                    "index": rows["index"].astype("int64").to_numpy(),
                    "reason": [
                        _reason(str(chk), str(col))
                        for chk, col in zip(rows["check"], rows["column"], strict=True)
                    ],
                }
            )
            .drop_duplicates()
            .sort_values(["index", "reason"])
            .groupby("index")["reason"]
            .agg("; ".join)
        )
        bad = df.index.isin(reasons.index)
        quarantined = df[bad].assign(reason=reasons.reindex(df.index[bad]).to_numpy())
        return Checked(df[~bad], quarantined)
    return Checked(df, df.iloc[0:0].assign(reason=pd.Series(dtype="str")))


def check_impressions(df: pd.DataFrame, day: dt.date, placement_ids: list[str]) -> Checked:
    """Apply the impressions contract: fail closed on shape, quarantine bad rows."""
    check_columns(df, IMPRESSION_COLUMNS, f"impressions {day.isoformat()}")
    return quarantine_rows(df, impressions_contract(day, placement_ids), f"impressions {day}")


def check_labels(df: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """Apply the labels contract as a whole (labels are trusted or the day is blocked)."""
    check_columns(df, LABEL_COLUMNS, f"labels {day.isoformat()}")
    try:
        return LABELS_CONTRACT.validate(df, lazy=True)
    except SchemaErrors as exc:
        raise ContractError(
            f"labels {day.isoformat()}: {len(exc.failure_cases)} contract failures, first: "
            f"{exc.failure_cases.iloc[0].to_dict()}; fix the label export before loading"
        ) from None


def quarantine_summary(quarantine: pd.DataFrame) -> pd.DataFrame:
    """Count quarantined rows per reason, most common first."""
    counts = quarantine["reason"].value_counts()
    return counts.rename_axis("reason").reset_index(name="rows")
