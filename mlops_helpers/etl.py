"""Extract, transform and load one day of raw extracts into a published partition.

Publishing is atomic and idempotent: every file is written to a temporary name and
renamed into place, the day's manifest is written last (a partition without a manifest
is not published), and rerunning a day yields byte-identical files and fingerprints.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mlops_helpers.config import ensure_workspace
from mlops_helpers.data import RawDay, as_day, raw_day_dir, write_raw_dataset
from mlops_helpers.validation import (
    QuarantineThresholdError,
    check_impressions,
    check_labels,
)

PIPELINE_VERSION = "1"
MANIFEST = "_manifest.json"
OUTPUT_COLUMNS = (
    "impression_id",
    "ts",
    "hour",
    "placement_id",
    "site_category",
    "ad_format",
    "position",
    "device",
    "ad_width",
    "ad_height",
    "page_load_ms",
    "scroll_depth",
    "time_on_page_s",
    "viewable",
)


@dataclass(frozen=True)
class Transformed:
    """A day's clean, joined, featured table and its quarantined rows."""

    table: pd.DataFrame
    quarantine: pd.DataFrame

    @property
    def rows_in(self) -> int:
        """Raw impression rows that went in."""
        return len(self.table) + len(self.quarantine)


@dataclass
class DayReport:
    """What a day's run did: counts, fingerprints, where it published."""

    day: str
    status: str
    rows_in: int
    rows_out: int
    rows_quarantined: int
    fingerprint: str
    inputs: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(
            f"raw extract {path.name} not found in {path.parent.name}; "
            "generate it with mlops_helpers.data.write_raw_dataset"
        )
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    return table.to_pandas()


def extract_placements(raw_root: Path) -> pd.DataFrame:
    """Read the placements reference table."""
    return _read_csv(Path(raw_root) / "placements.csv")


def extract_day(raw_root: Path, day: str | dt.date) -> RawDay:
    """Read one day's raw impressions and labels as they are (no cleaning)."""
    folder = raw_day_dir(raw_root, as_day(day))
    return RawDay(
        as_day(day), _read_csv(folder / "impressions.csv"), _read_csv(folder / "labels.csv")
    )


def transform_day(
    raw: RawDay, placements: pd.DataFrame, max_quarantine_fraction: float = 0.1
) -> Transformed:
    """Validate, clean, join and add features; fail closed over the quarantine threshold."""
    labels = check_labels(raw.labels, raw.day)
    checked = check_impressions(raw.impressions, raw.day, list(placements["placement_id"]))
    # Lookups instead of merges: the contracts already guarantee unique keys and known
    # placements, and a map is several times faster than a merge on 1M string keys.
    joined = checked.valid.copy()
    codes, ids = pd.factorize(joined["placement_id"])
    reference = placements.set_index("placement_id").reindex(ids)
    for column in ("site_category", "ad_format", "position"):
        joined[column] = reference[column].to_numpy()[codes]
    joined["viewable"] = _lookup(
        joined["impression_id"], labels["impression_id"], labels["viewable"]
    )
    unlabelled = joined["viewable"].isna()
    quarantine = pd.concat(
        [
            checked.quarantine,
            raw.impressions.loc[checked.valid.index[unlabelled.to_numpy()]].assign(
                reason="no viewability label"
            ),
        ]
    ).sort_index()
    table = add_features(joined[~unlabelled])
    fraction = len(quarantine) / max(len(raw.impressions), 1)
    if fraction > max_quarantine_fraction:
        raise QuarantineThresholdError(
            f"impressions {raw.day.isoformat()}: {len(quarantine)} of {len(raw.impressions)} "
            f"rows quarantined ({fraction:.1%}), over the threshold of "
            f"{max_quarantine_fraction:.1%}; nothing was published. Inspect the reasons, fix "
            "the extract, or raise max_quarantine_fraction if this is expected",
            quarantine,
        )
    return Transformed(table, quarantine.reset_index(drop=True))


def _lookup(keys: pd.Series, index: pd.Series, values: pd.Series) -> pd.Series:
    """``values`` at the position of each key in ``index`` (unique), NaN where it is absent.

    Arrow's hash lookup (``index_in``); ``Series.map`` on 1M string keys costs about four
    times as long, measured in benchmarks/etl_throughput.py.
    """
    where = pc.index_in(pa.array(keys), value_set=pa.array(index))
    found = where.is_valid().to_numpy(zero_copy_only=False)
    picked = np.full(len(keys), np.nan)
    picked[found] = values.to_numpy(dtype=float)[where.drop_null().to_numpy()]
    return pd.Series(picked, index=keys.index)


def add_features(df: pd.DataFrame) -> pd.DataFrame:
    """Impute the optional page load time, add the hour, fix types and row order."""
    out = df.copy()
    out["page_load_ms"] = out["page_load_ms"].fillna(out["page_load_ms"].median()).fillna(0.0)
    out["hour"] = out["ts"].dt.hour.astype("int64")
    out["viewable"] = out["viewable"].astype("int64")
    out["ts"] = out["ts"].astype("datetime64[us]")
    return out.loc[:, list(OUTPUT_COLUMNS)].sort_values("impression_id", ignore_index=True)


def partition_dir(out_root: Path, day: str | dt.date, area: str = "processed") -> Path:
    """The folder of one day's partition in ``processed`` or ``quarantine``."""
    return Path(out_root) / area / f"day={as_day(day).isoformat()}"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write via ``write(tmp)``, then rename over ``path``; on failure ``path`` is untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="snappy"))


def load_day(
    result: Transformed, out_root: Path, day: dt.date, inputs: dict[str, str]
) -> DayReport:
    """Publish a transformed day: quarantine, then data, then the manifest that commits it."""
    data_path = partition_dir(out_root, day) / "part.parquet"
    _write_parquet(result.quarantine.astype({"reason": "str"}), quarantine_path(out_root, day))
    _write_parquet(result.table, data_path)
    report = DayReport(
        day=day.isoformat(),
        status="published",
        rows_in=result.rows_in,
        rows_out=len(result.table),
        rows_quarantined=len(result.quarantine),
        fingerprint=file_sha256(data_path),
        inputs=inputs,
        reasons=result.quarantine["reason"].value_counts().sort_index().to_dict(),
    )
    manifest = json.dumps({"pipeline_version": PIPELINE_VERSION, **asdict(report)}, indent=2)
    atomic_write(data_path.parent / MANIFEST, lambda tmp: tmp.write_text(manifest + "\n"))
    return report


def quarantine_path(out_root: Path, day: str | dt.date) -> Path:
    """Where a day's quarantined rows are kept, with their reasons."""
    return partition_dir(out_root, day, "quarantine") / "quarantine.parquet"


def input_fingerprints(raw_root: Path, day: dt.date) -> dict[str, str]:
    """SHA-256 of each raw file a day depends on (its lineage)."""
    folder = raw_day_dir(raw_root, day)
    files = {
        "placements.csv": Path(raw_root) / "placements.csv",
        "impressions.csv": folder / "impressions.csv",
        "labels.csv": folder / "labels.csv",
    }
    return {name: file_sha256(path) for name, path in files.items() if path.is_file()}


def read_manifest(out_root: Path, day: str | dt.date) -> dict | None:
    """A published day's manifest, or None when the day is not published."""
    path = partition_dir(out_root, day) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def run_day(
    raw_root: Path,
    out_root: Path,
    day: str | dt.date,
    max_quarantine_fraction: float = 0.1,
    force: bool = False,
) -> DayReport:
    """Run ETL for one day; skip it when its inputs and pipeline version are unchanged."""
    day = as_day(day)
    inputs = input_fingerprints(raw_root, day)
    manifest = read_manifest(out_root, day)
    if (
        not force
        and manifest
        and manifest["inputs"] == inputs
        and manifest["pipeline_version"] == PIPELINE_VERSION
        and (partition_dir(out_root, day) / "part.parquet").is_file()
        and file_sha256(partition_dir(out_root, day) / "part.parquet") == manifest["fingerprint"]
    ):
        fields = {k: v for k, v in manifest.items() if k in DayReport.__dataclass_fields__}
        return DayReport(**{**fields, "status": "unchanged"})
    result = transform_day(
        extract_day(raw_root, day), extract_placements(raw_root), max_quarantine_fraction
    )
    return load_day(result, out_root, day, inputs)


def run_days(
    raw_root: Path,
    out_root: Path,
    days: list[dt.date],
    max_quarantine_fraction: float = 0.1,
    force: bool = False,
) -> list[DayReport]:
    """Run (or backfill) several days in order; stops at the first day that fails closed."""
    return [run_day(raw_root, out_root, d, max_quarantine_fraction, force) for d in days]


def published_days(out_root: Path) -> list[str]:
    """Days that have a committed manifest, in order."""
    root = Path(out_root) / "processed"
    return sorted(p.parent.name.removeprefix("day=") for p in root.glob(f"day=*/{MANIFEST}"))


def read_partitions(out_root: Path, days: list[str | dt.date]) -> pd.DataFrame:
    """Read published days, checking each file against its manifest's fingerprint."""
    frames = []
    for day in days:
        manifest = read_manifest(out_root, day)
        if manifest is None:
            raise FileNotFoundError(
                f"day {as_day(day).isoformat()} is not published in {Path(out_root).name}; "
                "run the ETL for it first (mlops_helpers.etl.run_days)"
            )
        path = partition_dir(out_root, day) / "part.parquet"
        if not path.is_file():
            raise ValueError(
                f"{path.parent.name}/part.parquet is missing although its manifest says the day "
                "is published; rerun the ETL for that day with force=True"
            )
        if file_sha256(path) != manifest["fingerprint"]:
            raise ValueError(
                f"{path.parent.name}/part.parquet does not match its manifest fingerprint; "
                "rerun the ETL for that day with force=True"
            )
        frames.append(pd.read_parquet(path))
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class Dataset:
    """Where a generated dataset lives: raw extracts in, published partitions out."""

    root: Path
    days: list[dt.date]

    @property
    def raw(self) -> Path:
        """The immutable raw extracts."""
        return self.root / "raw"

    @property
    def out(self) -> Path:
        """Published partitions and quarantine."""
        return self.root / "out"


def dataset(
    seed: int,
    n_rows: int,
    start_day: str,
    n_days: int,
    fault: str = "none",
    drift: float = 0.0,
) -> Dataset:
    """Generate (once) the raw extracts for these settings in the workspace; return their place."""
    name = (
        f"seed={seed}_rows={n_rows}_start={start_day}_days={n_days}_fault={fault}_drift={drift:g}"
    )
    root = ensure_workspace("datasets", name)
    days = write_raw_dataset(root / "raw", start_day, n_days, n_rows, seed, fault, drift)
    return Dataset(root, days)


def build_training_table(
    seed: int, n_rows: int, start_day: str, n_days: int, drift: float = 0.0
) -> pd.DataFrame:
    """Generate clean days, run the automated ETL on them, and read the published table."""
    ds = dataset(seed, n_rows, start_day, n_days, "none", drift)
    run_days(ds.raw, ds.out, ds.days)
    return read_partitions(ds.out, ds.days)
