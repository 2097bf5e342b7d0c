"""Extract, transform and load one day of raw extracts into a published partition.

Publishing is atomic and idempotent. The day's manifest is its commit point: it records
the SHA-256 of every file of the day (data and quarantine), is renamed into place last
(a partition without a manifest is not published), and every reader checks each file
against it, so a write killed between two renames is reported, never read as a mix, and
the next ``run_day`` republishes the day. Each file is staged and renamed as
:mod:`mlops_helpers.storage` writes every file (a temporary name carrying its writer's pid,
fsynced, renamed, its folder fsynced), the renames under the day's lock; the next write of
the day removes the temporary files of writers that are gone.
Rerunning a day yields byte-identical files and fingerprints.

Speed (``benchmarks/etl_throughput.py --breakdown`` prints where the time goes; figures
in benchmarks/RESULTS.md): the labels are joined by one sort that also gives the published row
order (``sort_merge_join``); a second thread checks and joins the labels while pandera
checks the impressions, and hashes the raw files while the parquet file is written.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import inspect
import io
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mlops_helpers import validation
from mlops_helpers.config import ensure_workspace
from mlops_helpers.data import RawDay, as_day, raw_day_dir, write_raw_dataset
from mlops_helpers.errors import WorkbookInputError
from mlops_helpers.storage import (
    atomic_write,  # noqa: F401 - notebook 03 shows it as etl.atomic_write
    remove_dead_temps,
    rename_into_place,
    staged,
)
from mlops_helpers.validation import (
    QuarantineThresholdError,
    check_impressions,
    check_labels,
    sort_order,
)

# What builds a published day, hashed into its manifest as its code version (code_version):
# these functions' source, the output columns and the whole contract module, validation.
TRANSFORM_CODE = (
    "_read_csv",
    "extract_placements",
    "extract_day",
    "extract_impressions",
    "transform_day",
    "transform_impressions",
    "_join_labels",
    "sort_merge_join",
    "add_features",
    "_describe_placements",
)
MANIFEST = "_manifest.json"
DATA_FILE = "part.parquet"
QUARANTINE_FILE = "quarantine.parquet"
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

_PLACEMENT_COLUMNS = ("site_category", "ad_format", "position")  # from the placements table


class PartitionError(WorkbookInputError, ValueError):
    """A published day whose files do not match its manifest; rerunning the day repairs it."""


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


def code_version() -> str:
    """SHA-256 of the code that builds a day: the source of ``TRANSFORM_CODE``'s functions
    as this module holds them now, ``OUTPUT_COLUMNS`` and the contract (``validation``).

    Change any of it and every day's manifest is out of date, so the next run rebuilds the
    days; change anything else (a reader, a docstring elsewhere) and they are skipped. No
    version number to remember to bump. Kept per set of function objects: the code a process
    runs does not change under it, and a function swapped in (a test's patch) is new code."""
    functions = tuple(globals()[name] for name in TRANSFORM_CODE)
    if functions not in _CODE_VERSIONS:
        digest = hashlib.sha256()
        for function in functions:
            digest.update(inspect.getsource(function).encode())
        digest.update(repr(OUTPUT_COLUMNS).encode())
        digest.update(inspect.getsource(validation).encode())
        _CODE_VERSIONS[functions] = digest.hexdigest()
    return _CODE_VERSIONS[functions]


_CODE_VERSIONS: dict[tuple, str] = {}


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(content: bytes) -> str:
    """The SHA-256 of bytes already in memory."""
    return hashlib.sha256(content).hexdigest()


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


def extract_impressions(raw_root: Path, day: str | dt.date) -> RawDay:
    """Read one day's raw impressions only: what exists on the day itself, before any label
    (viewability is measured and delivered days later)."""
    folder = raw_day_dir(raw_root, as_day(day))
    return RawDay(as_day(day), _read_csv(folder / "impressions.csv"), None)


def transform_impressions(
    raw: RawDay, placements: pd.DataFrame, max_quarantine_fraction: float = 0.1
) -> Transformed:
    """The impressions side of ``transform_day``, for scoring: the same contract, quarantine,
    placements and features, with no label to join (the table has no ``viewable``)."""
    impressions = raw.impressions
    checked = check_impressions(impressions, raw.day, list(placements["placement_id"]))
    kept = impressions[~impressions.index.isin(checked.quarantine.index)]
    picked = kept.iloc[sort_order(pa.array(kept["impression_id"].astype(str)))]
    table = add_features(picked.assign(**_describe_placements(picked["placement_id"], placements)))
    quarantine = checked.quarantine
    if len(quarantine) / max(len(impressions), 1) > max_quarantine_fraction:
        raise QuarantineThresholdError(
            raw.day, quarantine, len(impressions), max_quarantine_fraction
        )
    return Transformed(table, quarantine.reset_index(drop=True))


def transform_day(
    raw: RawDay, placements: pd.DataFrame, max_quarantine_fraction: float = 0.1
) -> Transformed:
    """Validate, clean, join and add features; fail closed over the quarantine threshold."""
    impressions = raw.impressions
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The labels side runs on a second thread while pandera checks the impressions:
        # arrow and numpy sort without the GIL, so the two overlap.
        labels_checked = pool.submit(check_labels, raw.labels, raw.day)
        labelled = pool.submit(_join_labels, impressions, raw.labels)
        try:
            checked = check_impressions(impressions, raw.day, list(placements["placement_id"]))
        finally:
            labels_checked.result()  # a broken labels extract is reported first, as before
        viewable, in_id_order = labelled.result()
    quarantined = impressions.index.isin(checked.quarantine.index)
    unlabelled = np.flatnonzero(~quarantined & np.isnan(viewable))
    quarantine = pd.concat(
        [checked.quarantine, impressions.iloc[unlabelled].assign(reason="no viewability label")]
    ).sort_index()
    published = ~quarantined & ~np.isnan(viewable)
    rows = in_id_order[published[in_id_order]]  # sorted by impression_id
    picked = impressions.iloc[rows]
    joined = picked.assign(
        viewable=viewable[rows], **_describe_placements(picked["placement_id"], placements)
    )
    table = add_features(joined)
    if len(quarantine) / max(len(impressions), 1) > max_quarantine_fraction:
        raise QuarantineThresholdError(
            raw.day, quarantine, len(impressions), max_quarantine_fraction
        )
    return Transformed(table, quarantine.reset_index(drop=True))


def _join_labels(impressions: pd.DataFrame, labels: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``sort_merge_join`` on the id columns; read on the worker thread, so a missing
    column is reported by the contracts (on the other thread), not as a KeyError."""
    return sort_merge_join(
        impressions["impression_id"], labels["impression_id"], labels["viewable"]
    )


def _describe_placements(placement_ids: pd.Series, placements: pd.DataFrame) -> dict:
    """The reference columns of each placement id, taken by position from the reference.

    A lookup instead of a merge: the contract already guarantees known placements, and
    taking from the 40-row reference is much faster than a merge.
    """
    codes, ids = pd.factorize(placement_ids)
    reference = placements.set_index("placement_id").reindex(ids)
    if not len(codes):  # an empty day keeps the object columns (and parquet schema) it had
        return {column: reference[column].to_numpy() for column in _PLACEMENT_COLUMNS}
    return {column: reference[column].array.take(codes) for column in _PLACEMENT_COLUMNS}


def sort_merge_join(
    ids: pd.Series, label_ids: pd.Series, labels: pd.Series
) -> tuple[np.ndarray, np.ndarray]:
    """The label of each of ``ids`` (NaN where none), and the positions of ``ids`` sorted.

    One stable sort of both id columns puts equal ids side by side, ``ids`` first as
    they come first; a label belongs to the ids in its run of equal ids (a null id
    matches nothing). ``label_ids`` must be unique. The same sort gives the published
    row order, so it beats a hash lookup (``pyarrow.compute.index_in``) followed by a
    sort of the output.
    """
    n = len(ids)
    keys = pa.array(pd.concat([ids, label_ids], ignore_index=True))
    if pa.types.is_null(keys.type):  # nothing but nulls: no id matches any label
        keys = keys.cast(pa.large_string())
    order = sort_order(keys)
    ranked = keys.take(order)
    same = pc.fill_null(pc.equal(ranked[1:], ranked[:-1]), False)
    run = np.zeros(len(order), dtype=np.int64)  # run number of each sorted id
    run[1:] = np.cumsum(~same.to_numpy(zero_copy_only=False))
    is_id = order < n
    label_of_run = np.full(len(order), np.nan)
    label_of_run[run[~is_id]] = labels.to_numpy(dtype=float)[order[~is_id] - n]
    found = np.empty(n)
    found[order[is_id]] = label_of_run[run[is_id]]
    return found, order[is_id]


def add_features(df: pd.DataFrame) -> pd.DataFrame:
    """Impute the optional page load time, add the hour, fix types and column order.

    The rows keep their order (``transform_day`` passes them sorted by impression_id).
    ``assign`` instead of a copy with columns set one by one: that copy merged the
    numeric columns into blocks, a cost that grows with the day.
    """
    labelled = "viewable" in df.columns  # unlabelled impressions are published for scoring
    out = df.assign(
        page_load_ms=df["page_load_ms"].fillna(df["page_load_ms"].median()).fillna(0.0),
        hour=df["ts"].dt.hour.astype("int64"),
        **({"viewable": df["viewable"].astype("int64")} if labelled else {}),
        ts=df["ts"].astype("datetime64[us]"),
    )
    columns = OUTPUT_COLUMNS if labelled else OUTPUT_COLUMNS[:-1]
    return out[list(columns)].reset_index(drop=True)


def partition_dir(out_root: Path, day: str | dt.date, area: str = "processed") -> Path:
    """The folder of one day's partition in ``processed`` or ``quarantine``."""
    return Path(out_root) / area / f"day={as_day(day).isoformat()}"


@contextmanager
def _day_lock(out_root: Path, day: dt.date, exclusive: bool) -> Iterator[None]:
    """Hold a day's lock: a writer renames its files alone, readers read together."""
    fd = os.open(partition_dir(out_root, day), os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def day_files(out_root: Path, day: str | dt.date) -> dict[str, Path]:
    """Every file published for a day, keyed by its path from ``out_root`` (as in the manifest)."""
    paths = (partition_dir(out_root, day) / DATA_FILE, quarantine_path(out_root, day))
    return {p.relative_to(out_root).as_posix(): p for p in paths}


def _publish(
    result: Transformed, out_root: Path, day: dt.date, inputs: Callable[[], dict[str, str]]
) -> DayReport:
    """Publish a transformed day: quarantine, then data, then the manifest that commits it.

    ``inputs`` returns the input fingerprints, which may still be computing on another thread.

    Every file is staged first (the data while the fingerprints finish), so a failure
    publishes nothing; then, under the day's lock, the dead writers' temp files go and the
    quarantine, the data and last the manifest (with every file's SHA-256) are renamed.
    """
    out_root = Path(out_root)
    (data_name, data_path), (quarantine_name, quarantine_file) = day_files(out_root, day).items()
    manifest_path = data_path.parent / MANIFEST
    data = pa.Table.from_pandas(result.table, preserve_index=False)
    quarantine = pa.Table.from_pandas(
        result.quarantine.astype({"reason": "str"}), preserve_index=False
    )
    with (
        staged(data_path, lambda tmp: pq.write_table(data, tmp, compression="snappy")) as data_tmp,
        staged(
            quarantine_file, lambda tmp: pq.write_table(quarantine, tmp, compression="snappy")
        ) as quarantine_tmp,
    ):
        files = {data_name: file_sha256(data_tmp), quarantine_name: file_sha256(quarantine_tmp)}
        report = DayReport(
            day=day.isoformat(),
            status="published",
            rows_in=result.rows_in,
            rows_out=len(result.table),
            rows_quarantined=len(result.quarantine),
            fingerprint=files[data_name],
            inputs=inputs(),
            reasons=result.quarantine["reason"].value_counts().sort_index().to_dict(),
        )
        manifest = {"code": code_version(), **asdict(report), "files": files}
        if "viewable" not in result.table.columns:
            manifest["labelled"] = False  # impressions only (run_day(labelled=False))
        text = json.dumps(manifest, indent=2) + "\n"
        with (
            staged(manifest_path, lambda tmp: tmp.write_text(text)) as manifest_tmp,
            _day_lock(out_root, day, exclusive=True),
        ):
            for folder in (data_path.parent, quarantine_file.parent):
                remove_dead_temps(folder)
            rename_into_place(quarantine_tmp, quarantine_file)
            rename_into_place(data_tmp, data_path)
            rename_into_place(manifest_tmp, manifest_path)
    return report


def quarantine_path(out_root: Path, day: str | dt.date) -> Path:
    """Where a day's quarantined rows are kept, with their reasons."""
    return partition_dir(out_root, day, "quarantine") / "quarantine.parquet"


def input_fingerprints(raw_root: Path, day: dt.date, labelled: bool = True) -> dict[str, str]:
    """SHA-256 of each raw file a day depends on (its lineage); unlabelled, not the labels."""
    folder = raw_day_dir(raw_root, day)
    files = {
        "placements.csv": Path(raw_root) / "placements.csv",
        "impressions.csv": folder / "impressions.csv",
        **({"labels.csv": folder / "labels.csv"} if labelled else {}),
    }
    return {name: file_sha256(path) for name, path in files.items() if path.is_file()}


def _fix(day: dt.date) -> str:
    """What to do about a day whose files and manifest disagree."""
    return f"rerun the ETL for that day (etl.run_day for {day.isoformat()}, force=True)"


def _load_manifest(out_root: Path, day: dt.date) -> dict | None:
    """A day's manifest as written, or None when there is none."""
    path = partition_dir(out_root, day) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise PartitionError(
            f"day {day.isoformat()}: {path.parent.name}/{MANIFEST} is not a manifest this "
            f"workbook wrote (broken, or from an older version without file fingerprints); "
            f"{_fix(day)}"
        )
    return manifest


def _verified(out_root: Path, day: dt.date, keep: str = "") -> tuple[dict, bytes] | None:
    """A day's manifest, every file checked against it, and the bytes of file ``keep``.

    Read under the day's shared lock, so a live writer's renames are never seen halfway;
    a writer killed between two renames leaves files the manifest does not name.
    """
    if not partition_dir(out_root, day).is_dir():
        return None
    with _day_lock(out_root, day, exclusive=False):
        manifest = _load_manifest(out_root, day)
        if manifest is None:
            return None
        files, kept = day_files(out_root, day), b""
        if set(manifest["files"]) != set(files):
            raise PartitionError(
                f"day {day.isoformat()}: its manifest lists {sorted(manifest['files'])}, not "
                f"the day's files {sorted(files)}; {_fix(day)}"
            )
        for name, path in files.items():
            try:
                content = path.read_bytes() if name == keep else None
                digest = file_sha256(path) if content is None else sha256_bytes(content)
            except FileNotFoundError:
                raise PartitionError(
                    f"day {day.isoformat()}: {name} is missing although its manifest says the "
                    f"day is published; {_fix(day)}"
                ) from None
            if digest != manifest["files"][name]:
                raise PartitionError(
                    f"day {day.isoformat()}: {name} does not match its manifest fingerprint "
                    f"(a write was interrupted, or the file was changed); {_fix(day)}"
                )
            kept = kept if content is None else content
        return manifest, kept


def read_manifest(out_root: Path, day: str | dt.date) -> dict | None:
    """A published day's manifest, its files checked; None when the day is not published."""
    found = _verified(Path(out_root), as_day(day))
    return found[0] if found else None


def run_day(
    raw_root: Path,
    out_root: Path,
    day: str | dt.date,
    max_quarantine_fraction: float = 0.1,
    force: bool = False,
    labelled: bool = True,
) -> DayReport:
    """Run ETL for one day; skip it when its inputs and its code version are unchanged.

    ``labelled=False`` publishes the day's impressions without labels (no ``viewable``; the
    labels extract is neither read nor part of the lineage): what a batch scorer has on the
    day itself. Publish those into an ``out_root`` of their own.
    """
    day = as_day(day)
    _check_kind(out_root, day, labelled)
    manifest = None if force else _current_manifest(raw_root, out_root, day, labelled)
    if manifest:
        fields = {k: v for k, v in manifest.items() if k in DayReport.__dataclass_fields__}
        return DayReport(**{**fields, "status": "unchanged"})
    extract, transform = (
        (extract_day, transform_day) if labelled else (extract_impressions, transform_impressions)
    )
    result = transform(
        extract(raw_root, day), extract_placements(raw_root), max_quarantine_fraction
    )
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The raw files are hashed on another thread while the parquet writer keeps this
        # one busy; hashlib releases the GIL.
        inputs = pool.submit(input_fingerprints, raw_root, day, labelled)
        return _publish(result, out_root, day, inputs.result)


def _check_kind(out_root: Path, day: dt.date, labelled: bool) -> None:
    """Refuse to publish a day over its partition of the other kind (labelled or not):
    that would lose it. Each kind has an ``out_root`` of its own."""
    try:
        manifest = (
            _load_manifest(Path(out_root), day) if partition_dir(out_root, day).is_dir() else None
        )
    except PartitionError:
        return  # a broken manifest: the run repairs the day, as before
    if manifest is not None and manifest.get("labelled", True) != labelled:
        have, want = ("labelled", "unlabelled") if labelled is False else ("unlabelled", "labelled")
        raise PartitionError(
            f"day {day.isoformat()}: {Path(out_root).name} holds its {have} partition, so its "
            f"{want} one would replace it; publish {want} days into a folder of their own "
            "(nothing was changed)"
        )


def _current_manifest(
    raw_root: Path, out_root: Path, day: dt.date, labelled: bool = True
) -> dict | None:
    """The day's manifest when it came from these inputs and this code, every file intact.

    A day whose files do not match its manifest (a killed write) is not current: rerun it.
    """
    try:
        manifest = read_manifest(out_root, day)
    except PartitionError:
        return None
    current = (
        manifest is not None
        and manifest.get("inputs") == input_fingerprints(raw_root, day, labelled)
        and manifest.get("code") == code_version()
    )
    return manifest if current else None


def run_days(
    raw_root: Path,
    out_root: Path,
    days: list[dt.date],
    max_quarantine_fraction: float = 0.1,
    force: bool = False,
    labelled: bool = True,
) -> list[DayReport]:
    """Run (or backfill) several days in order; stops at the first day that fails closed."""
    return [run_day(raw_root, out_root, d, max_quarantine_fraction, force, labelled) for d in days]


def published_days(out_root: Path) -> list[str]:
    """Days that have a committed manifest, in order."""
    root = Path(out_root) / "processed"
    return sorted(p.parent.name.removeprefix("day=") for p in root.glob(f"day=*/{MANIFEST}"))


def read_checked(out_root: Path, day: str | dt.date) -> tuple[dict, bytes] | None:
    """A published day's manifest and the bytes of its data file, every file checked
    against the manifest once; None when the day is not published."""
    day = as_day(day)
    return _verified(Path(out_root), day, keep=next(iter(day_files(out_root, day))))


def _read_published(out_root: Path, day: str | dt.date, area: str) -> pd.DataFrame:
    """One file of a published day (``processed`` or ``quarantine``), checked first."""
    day, out_root = as_day(day), Path(out_root)
    name = next(n for n in day_files(out_root, day) if n.startswith(f"{area}/"))
    found = _verified(out_root, day, keep=name)
    if found is None:
        raise FileNotFoundError(
            f"day {day.isoformat()} is not published in {out_root.name}; "
            "run the ETL for it first (mlops_helpers.etl.run_days)"
        )
    return pd.read_parquet(io.BytesIO(found[1]))  # the very bytes that were checked


def read_partitions(out_root: Path, days: list[str | dt.date]) -> pd.DataFrame:
    """Read published days, checking every file of each against its manifest."""
    frames = [_read_published(out_root, day, "processed") for day in days]
    return pd.concat(frames, ignore_index=True)


def read_quarantine(out_root: Path, day: str | dt.date) -> pd.DataFrame:
    """A published day's quarantined rows with their reasons, checked against its manifest."""
    return _read_published(out_root, day, "quarantine")


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
    *,
    drift: float = 0.0,
) -> Dataset:
    """Generate (once) the raw extracts for these settings in the workspace; return their place."""
    name = (
        f"seed={seed}_rows={n_rows}_start={start_day}_days={n_days}_fault={fault}_drift={drift:g}"
    )
    root = ensure_workspace("datasets", name)
    days = write_raw_dataset(root / "raw", seed, n_rows, start_day, n_days, fault, drift=drift)
    return Dataset(root, days)


def build_training_table(
    seed: int, n_rows: int, start_day: str, n_days: int, *, drift: float = 0.0
) -> pd.DataFrame:
    """Generate clean days, run the automated ETL on them, and read the published table."""
    ds = dataset(seed, n_rows, start_day, n_days, "none", drift=drift)
    run_days(ds.raw, ds.out, ds.days)
    return read_partitions(ds.out, ds.days)
