"""Data contracts for the raw extracts (pandera) and the quarantine report.

A contract problem with the *shape* of an extract (missing, extra or retyped columns,
an empty day) fails the whole day closed. A problem with *rows* (nulls, out-of-range
values, duplicates, late rows, unknown categories, missing labels) sends those rows to
quarantine with a reason each, and the rest goes on.

A day that fails closed raises :class:`ContractError`, whose fields (``extract``, ``day``,
``kind``, ``detail``, ``fix``) say what broke, so no caller parses its message.

Speed (``benchmarks/etl_throughput.py --breakdown``; figures in benchmarks/RESULTS.md):
pandera's built-in ``unique=True`` hashes the id column twice (``is_unique``, then
``duplicated``), most of each contract's time on a large day. The contracts are still
declared with ``unique=True`` (notebook 03 shows them), but they are validated with that
rule swapped for the same rule as a pandera check built on one stable sort
(``duplicated``). If that faster contract finds a whole column wrong, the declared
contract runs again, so every message is pandera's own. Every check still runs inside
pandera.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache, cached_property, partial
from typing import Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc
from pandera.errors import SchemaErrors

from mlops_helpers.scenario import DEVICES, IMPRESSION_COLUMNS, LABEL_COLUMNS

# What a day that fails closed can have wrong, in the words its message uses.
ContractKind = Literal[
    "schema changed",
    "the extract has no rows",
    "contract failures",
    "over the quarantine threshold",
]


class ContractError(ValueError):
    """An extract breaks its contract as a whole; nothing from that day is published.

    ``extract`` is "impressions" or "labels", ``kind`` one of :data:`ContractKind`, ``detail``
    the problem in full and ``fix`` what to do; the message is
    ``"{extract} {day}: {detail}; {fix}"``.
    """

    def __init__(self, extract: str, day: dt.date, kind: ContractKind, detail: str, fix: str):
        super().__init__(f"{extract} {day.isoformat()}: {detail}; {fix}")
        self.extract, self.day, self.kind, self.detail, self.fix = extract, day, kind, detail, fix

    def __reduce__(self):
        """Pickle by fields (a worker process may raise it), not by the message alone."""
        return type(self), (self.extract, self.day, self.kind, self.detail, self.fix)


class QuarantineThresholdError(ContractError):
    """Too many rows were quarantined to trust the rest; nothing is published.

    Besides the fields of :class:`ContractError`: the ``quarantine`` (its rows, with their
    reasons), ``rows_in`` (the day's impression rows) and the ``threshold`` it went over.
    """

    def __init__(self, day: dt.date, quarantine: pd.DataFrame, rows_in: int, threshold: float):
        self.quarantine, self.rows_in, self.threshold = quarantine, rows_in, threshold
        super().__init__(
            "impressions",
            day,
            "over the quarantine threshold",
            f"{len(quarantine)} of {rows_in} rows quarantined ({self.fraction:.1%}), "
            f"over the threshold of {threshold:.1%}",
            "nothing was published. Inspect the reasons, fix the extract, "
            "or raise max_quarantine_fraction if this is expected",
        )

    @property
    def fraction(self) -> float:
        """The share of the day's rows that were quarantined."""
        return len(self.quarantine) / max(self.rows_in, 1)

    def __reduce__(self):
        """Pickle by fields, as :class:`ContractError`."""
        return type(self), (self.day, self.quarantine, self.rows_in, self.threshold)


@dataclass(frozen=True)
class Checked:
    """Rows that passed the contract, and the quarantined rows with a ``reason`` column."""

    rows: pd.DataFrame  # every row that was checked
    quarantine: pd.DataFrame

    @cached_property
    def valid(self) -> pd.DataFrame:
        """The rows that passed, copied out when first asked for (the ETL never asks: it
        picks the rows it publishes directly, and skips this copy)."""
        return self.rows[~self.rows.index.isin(self.quarantine.index)]


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


_SCHEMA_FIX = "fix the upstream extract or update the contract in mlops_helpers.validation"


def check_columns(df: pd.DataFrame, expected: tuple[str, ...], extract: str, day: dt.date) -> None:
    """Fail closed when an extract's columns are not the contract's columns, or it is empty."""
    missing = [c for c in expected if c not in df.columns]
    extra = [c for c in df.columns if c not in expected]
    if missing or extra:
        raise ContractError(
            extract,
            day,
            "schema changed",
            f"schema changed: missing columns {missing}, unexpected columns {extra}",
            _SCHEMA_FIX,
        )
    if df.empty:
        raise ContractError(
            extract,
            day,
            "the extract has no rows",
            "the extract has no rows",
            "check that the upstream export ran for this day",
        )


def sort_order(values: pyarrow.Array | pyarrow.ChunkedArray) -> np.ndarray:
    """The positions that sort ``values`` (as arrow's ``sort_indices``: stable, nulls last).

    Ids usually all have the same length in bytes. Their bytes then form a fixed-width
    numpy array, and numpy's stable sort (fast on nearly sorted input) orders them
    several times faster than arrow's ``sort_indices``. Other values go to arrow.
    """
    if isinstance(values, pyarrow.ChunkedArray):
        values = values.combine_chunks()
    offset_type = {pyarrow.string(): np.int32, pyarrow.large_string(): np.int64}.get(values.type)
    if offset_type and values.null_count == 0 and len(values):
        lengths = pc.min_max(pc.binary_length(values))
        width = lengths["max"].as_py()
        if width and lengths["min"].as_py() == width:
            first = np.frombuffer(values.buffers()[1], dtype=offset_type)[values.offset]
            fixed = np.frombuffer(
                values.buffers()[2], dtype=f"S{width}", count=len(values), offset=first
            )
            return np.argsort(fixed, kind="stable")
    return pc.sort_indices(values).to_numpy()


def duplicated(values: pd.Series, keep: Literal["first", "last", False] = "first") -> pd.Series:
    """``values.duplicated(keep)`` (nulls count as equal), from one stable sort.

    Equal values sit side by side once sorted, and a stable sort keeps them in row
    order, so "same as the one before" marks every copy but the first. On nearly sorted
    string ids this beats pandas' hash-based ``duplicated``; ids that arrive sorted need
    one comparison pass.
    """
    try:
        array = pyarrow.array(values)
        if array.null_count == 0 and pc.all(pc.less(array[:-1], array[1:])).as_py():
            return pd.Series(False, index=values.index)  # strictly increasing: no copies
        order = sort_order(array)
        ranked = array.take(order)
        same = pc.equal(ranked[1:], ranked[:-1])
    except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError, pyarrow.ArrowNotImplementedError):
        return values.duplicated(keep=keep)  # mixed or null-only values arrow cannot compare
    both_null = pc.and_(ranked[1:].is_null(), ranked[:-1].is_null())
    same = pc.or_(pc.fill_null(same, False), both_null).to_numpy(zero_copy_only=False)
    repeated = np.zeros(len(values), dtype=bool)
    if keep in ("first", False):
        repeated[order[1:][same]] = True  # same as the one before it
    if keep in ("last", False):
        repeated[order[:-1][same]] = True  # same as the one after it
    return pd.Series(repeated, index=values.index)


def _unique_rows(values: pd.Series, keep: Literal["first", "last", False]) -> pd.Series:
    return ~duplicated(values, keep)


_KEEP = {"exclude_first": "first", "exclude_last": "last", "all": False}


def fast_contract(schema: pa.DataFrameSchema) -> pa.DataFrameSchema:
    """``schema`` with each ``unique=True`` swapped for the same rule as a sort-based check.

    The check keeps pandera's name for the rule (``field_uniqueness``), so failure
    cases, and the quarantine reasons made from them, are the same. Like pandera's
    rule, it reports no null as a duplicate: nulls are the not-null rule's business.
    """
    for name, column in schema.columns.items():
        if column.unique:
            keep = _KEEP[column.report_duplicates]
            unique = pa.Check(
                partial(_unique_rows, keep=keep),
                name="field_uniqueness",
                error="field_uniqueness",
            )
            schema = schema.update_column(name, unique=False, checks=[*column.checks, unique])
    return schema


def _failure_cases(df: pd.DataFrame, schema: pa.DataFrameSchema) -> pd.DataFrame | None:
    """Pandera's failure cases for ``df``, or None when it passes.

    The fast contract runs first; its row failures are the declared contract's. A
    whole-column failure (a retyped column, say) is left to the declared contract.
    """
    for contract in (fast_contract(schema), schema):
        try:
            contract.validate(df, lazy=True)
            return None
        except SchemaErrors as exc:
            cases = exc.failure_cases
        if cases["index"].notna().all():
            return cases
    return cases


@cache
def _reason(check: str, column: str) -> str:
    name = check.split("(")[0]
    if name in ("field_uniqueness", "late_row"):
        return _READABLE[name]
    return f"{column} {_READABLE.get(name, check)}"


def quarantine_rows(
    df: pd.DataFrame, schema: pa.DataFrameSchema, extract: str, day: dt.date
) -> Checked:
    """Validate ``df`` lazily; rows that fail go to quarantine with their reasons joined by '; '."""
    cases = _failure_cases(df, schema)
    if cases is None:
        return Checked(df, df.iloc[0:0].assign(reason=pd.Series(dtype="str")))
    whole = cases[cases["index"].isna()]
    if not whole.empty:
        detail = "; ".join(
            f"{c}: {chk} ({fc})"
            for c, chk, fc in whole[["column", "check", "failure_case"]].itertuples(index=False)
        )
        raise ContractError(
            extract, day, "schema changed", f"schema changed: {detail}", _SCHEMA_FIX
        ) from None
    rows = cases.dropna(subset=["index"])
    pairs = (
        pd.DataFrame(
            {
                "index": rows["index"].astype("int64").to_numpy(),
                "reason": [
                    _reason(str(chk), str(col))
                    for chk, col in zip(
                        rows["check"].tolist(), rows["column"].tolist(), strict=True
                    )
                ],
            }
        )
        .drop_duplicates()
        .sort_values(["index", "reason"])
    )
    reasons = _join_reasons(pairs)
    bad = df.index.isin(reasons.index)
    quarantined = df[bad].assign(reason=reasons.reindex(df.index[bad]).to_numpy())
    return Checked(df, quarantined)


def _join_reasons(pairs: pd.DataFrame) -> pd.Series:
    """Each row's reasons joined by '; ', by row index.

    Most rows have one reason, so only the others are grouped and joined: a groupby
    over every row would cost far more on a large day.
    """
    several = pairs["index"].duplicated(keep=False).to_numpy()
    joined = pairs[several].groupby("index")["reason"].agg("; ".join)
    return pd.concat([pairs[~several].set_index("index")["reason"], joined]).sort_index()


def check_impressions(df: pd.DataFrame, day: dt.date, placement_ids: list[str]) -> Checked:
    """Apply the impressions contract: fail closed on shape, quarantine bad rows."""
    check_columns(df, IMPRESSION_COLUMNS, "impressions", day)
    return quarantine_rows(df, impressions_contract(day, placement_ids), "impressions", day)


def check_labels(df: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """Apply the labels contract as a whole (labels are trusted or the day is blocked)."""
    check_columns(df, LABEL_COLUMNS, "labels", day)
    try:
        return fast_contract(LABELS_CONTRACT).validate(df, lazy=True)
    except SchemaErrors:
        pass  # validate again with the declared contract, for pandera's own message
    try:
        return LABELS_CONTRACT.validate(df, lazy=True)
    except SchemaErrors as exc:
        raise ContractError(
            "labels",
            day,
            "contract failures",
            f"{len(exc.failure_cases)} contract failures, first: "
            f"{exc.failure_cases.iloc[0].to_dict()}",
            "fix the label export before loading",
        ) from None


def quarantine_summary(quarantine: pd.DataFrame) -> pd.DataFrame:
    """Count quarantined rows per reason, most common first."""
    counts = quarantine["reason"].value_counts()
    return counts.rename_axis("reason").reset_index(name="rows")
