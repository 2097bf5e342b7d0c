"""etl: published partitions, idempotent reruns, fail closed, atomic writes, nothing lost."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlops_helpers import data, etl
from mlops_helpers.validation import ContractError, QuarantineThresholdError

START = "2024-01-01"
N = 300
SEED = 21


def raw_dataset(root: Path, n_days: int = 2, fault: str = "none", seed: int = SEED) -> list:
    """Raw extracts in ``root``; ``fault`` hits the last day."""
    return data.write_raw_dataset(root, seed, N, START, n_days, fault)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (relative name -> bytes)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def one_day(tmp_path):
    """One clean day's raw extracts as read, and the placements table."""
    raw = tmp_path / "raw"
    day = raw_dataset(raw, n_days=1)[0]
    return etl.extract_day(raw, day), etl.extract_placements(raw)


@pytest.fixture
def published(tmp_path):
    """Two clean days, both run through the ETL once."""
    raw, out = tmp_path / "raw", tmp_path / "out"
    days = raw_dataset(raw)
    reports = etl.run_days(raw, out, days)
    return raw, out, days, reports


def test_a_day_is_published_with_its_manifest(published):
    raw, out, days, reports = published
    assert [r.status for r in reports] == ["published", "published"]
    assert etl.published_days(out) == [d.isoformat() for d in days]
    for day, report in zip(days, reports, strict=True):
        part = etl.partition_dir(out, day) / "part.parquet"
        manifest = etl.read_manifest(out, day)
        assert manifest["fingerprint"] == etl.file_sha256(part) == report.fingerprint
        assert manifest["code"] == etl.code_version() and len(manifest["code"]) == 64
        assert manifest["inputs"] == etl.input_fingerprints(raw, day)
        assert set(manifest["inputs"]) == {"placements.csv", "impressions.csv", "labels.csv"}
        assert manifest["rows_out"] == pq.read_metadata(part).num_rows == report.rows_out
        assert etl.quarantine_path(out, day).is_file()
    table = etl.read_partitions(out, days)
    assert list(table.columns) == list(etl.OUTPUT_COLUMNS)
    assert len(table) == sum(r.rows_out for r in reports)
    assert table["impression_id"].is_unique
    assert table.notna().all().all()
    assert not list(out.rglob("*.tmp"))


def test_rerunning_a_day_changes_nothing(published):
    raw, out, days, _ = published
    before = snapshot(out)
    reports = etl.run_days(raw, out, days)
    assert [r.status for r in reports] == ["unchanged", "unchanged"]
    assert snapshot(out) == before


def test_a_changed_transform_reruns_every_day_and_an_unchanged_one_skips_them(
    published, monkeypatch
):
    """Lineage hashes the code: a new add_features (here: page load in seconds) makes
    every published day out of date, with no version number to bump."""
    raw, out, days, first = published
    before = etl.code_version()
    original = etl.add_features

    def add_features(df):
        """The same features, and page load in seconds as well."""
        return original(df).assign(page_load_s=lambda d: d["page_load_ms"] / 1000.0)

    monkeypatch.setattr(etl, "add_features", add_features)
    assert etl.code_version() != before
    again = etl.run_days(raw, out, days)
    assert [r.status for r in again] == ["published", "published"]
    assert all(etl.read_manifest(out, d)["code"] == etl.code_version() for d in days)
    assert [r.status for r in etl.run_days(raw, out, days)] == ["unchanged", "unchanged"]
    monkeypatch.setattr(etl, "add_features", original)
    assert etl.code_version() == before
    assert [r.status for r in etl.run_days(raw, out, days)] == ["published", "published"]
    assert [r.fingerprint for r in etl.run_days(raw, out, days, force=True)] == [
        r.fingerprint for r in first
    ]


def test_the_contract_is_part_of_the_code_version(monkeypatch):
    """A changed rule of the contract (validation's source) is a new code version."""
    import inspect

    from mlops_helpers import validation

    before = etl.code_version()
    real = inspect.getsource

    def getsource(obj):
        text = real(obj)
        return text + "\n# a new rule\n" if obj is validation else text

    monkeypatch.setattr(inspect, "getsource", getsource)
    etl._CODE_VERSIONS.clear()
    try:
        assert etl.code_version() != before
    finally:
        etl._CODE_VERSIONS.clear()


def test_force_rerun_is_byte_identical(published):
    raw, out, days, first = published
    before = snapshot(out)
    again = etl.run_days(raw, out, days, force=True)
    assert [r.status for r in again] == ["published", "published"]
    assert [r.fingerprint for r in again] == [r.fingerprint for r in first]
    assert snapshot(out) == before


def test_same_raw_data_elsewhere_gives_the_same_fingerprints(published, tmp_path):
    _, _, days, first = published
    raw2, out2 = tmp_path / "raw2", tmp_path / "out2"
    raw_dataset(raw2)
    again = etl.run_days(raw2, out2, days)
    assert [r.fingerprint for r in again] == [r.fingerprint for r in first]


def test_changed_raw_input_is_reprocessed(published):
    raw, out, days, _ = published
    labels = data.raw_day_dir(raw, days[0]) / "labels.csv"
    lines = labels.read_text().splitlines(keepends=True)
    labels.write_text("".join(lines[:-10]))  # a corrected delivery with fewer labels
    report = etl.run_day(raw, out, days[0])
    assert report.status == "published"
    assert report.reasons["no viewability label"] >= 10
    assert etl.read_manifest(out, days[0])["inputs"]["labels.csv"] == etl.file_sha256(labels)


def test_over_the_quarantine_threshold_nothing_is_published(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    days = raw_dataset(raw, n_days=1, fault="out_of_range")  # ~5% bad rows
    with pytest.raises(QuarantineThresholdError) as err:
        etl.run_day(raw, out, days[0], max_quarantine_fraction=0.02)
    message = str(err.value)
    assert "over the threshold of 2.0%" in message
    assert "nothing was published" in message
    assert "max_quarantine_fraction" in message
    assert (err.value.quarantine["reason"] == "scroll_depth out of range").sum() > 0
    assert etl.published_days(out) == []
    assert not out.exists() or snapshot(out) == {}


def test_failed_rerun_leaves_the_published_partition_intact(published):
    raw, out, days, _ = published
    before = snapshot(out)
    with pytest.raises(QuarantineThresholdError):
        etl.run_day(raw, out, days[0], max_quarantine_fraction=0.0, force=True)
    assert snapshot(out) == before
    pd.testing.assert_frame_equal(
        etl.read_partitions(out, [days[0]]),
        pd.read_parquet(etl.partition_dir(out, days[0]) / "part.parquet"),
    )


def test_schema_change_fails_before_any_file_is_written(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    days = raw_dataset(raw, n_days=1, fault="schema_change")
    with pytest.raises(ContractError, match="page_load_time_ms"):
        etl.run_day(raw, out, days[0])
    assert not out.exists() or snapshot(out) == {}


def test_empty_day_fails_closed(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    days = raw_dataset(raw, n_days=1, fault="empty_day")
    with pytest.raises(ContractError, match="no rows"):
        etl.run_day(raw, out, days[0])
    assert etl.published_days(out) == []


def test_a_missing_raw_file_is_named(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    days = raw_dataset(raw, n_days=1)
    (data.raw_day_dir(raw, days[0]) / "impressions.csv").unlink()
    with pytest.raises(FileNotFoundError, match="impressions.csv.*write_raw_dataset"):
        etl.run_day(raw, out, days[0])


@pytest.mark.parametrize(
    "fault", ["none", *sorted(set(data.FAULTS) - {"schema_change", "empty_day"})]
)
def test_rows_in_equal_rows_out_plus_rows_quarantined(tmp_path, fault):
    raw, out = tmp_path / "raw", tmp_path / "out"
    days = raw_dataset(raw, n_days=1, fault=fault)
    report = etl.run_day(raw, out, days[0], max_quarantine_fraction=1.0)
    raw_rows = len(etl.extract_day(raw, days[0]).impressions)
    assert report.rows_in == raw_rows
    assert report.rows_in == report.rows_out + report.rows_quarantined
    assert pq.read_metadata(etl.partition_dir(out, days[0]) / "part.parquet").num_rows == (
        report.rows_out
    )
    quarantine = pd.read_parquet(etl.quarantine_path(out, days[0]))
    assert len(quarantine) == report.rows_quarantined
    assert sum(report.reasons.values()) == report.rows_quarantined
    assert quarantine["reason"].str.len().gt(0).all()
    manifest = etl.read_manifest(out, days[0])
    assert manifest["rows_in"] == manifest["rows_out"] + manifest["rows_quarantined"]
    if fault != "none":
        assert report.rows_quarantined >= 0.05 * N  # the fault's rows were caught


def test_published_rows_are_sorted_by_impression_id(published):
    _, out, days, _ = published
    for day in days:
        table = pd.read_parquet(etl.partition_dir(out, day) / "part.parquet")
        assert table["impression_id"].is_monotonic_increasing


def test_shuffled_extracts_give_the_same_table(tmp_path):
    raw = tmp_path / "raw"
    days = raw_dataset(raw, n_days=1, fault="duplicates")
    raw_day = etl.extract_day(raw, days[0])
    placements = etl.extract_placements(raw)
    shuffled = data.RawDay(
        days[0],
        raw_day.impressions.sample(frac=1.0, random_state=1).reset_index(drop=True),
        raw_day.labels.sample(frac=1.0, random_state=2).reset_index(drop=True),
    )
    first, again = etl.transform_day(raw_day, placements), etl.transform_day(shuffled, placements)
    pd.testing.assert_frame_equal(again.table, first.table)  # duplicates are exact copies
    assert sorted(again.quarantine["reason"]) == sorted(first.quarantine["reason"])


def test_a_broken_labels_extract_is_reported_before_broken_impressions(one_day):
    raw_day, placements = one_day
    broken = data.RawDay(
        raw_day.day,
        raw_day.impressions.assign(browser="firefox"),
        pd.concat([raw_day.labels, raw_day.labels.iloc[:2]], ignore_index=True),
    )
    with pytest.raises(ContractError, match="fix the label export"):
        etl.transform_day(broken, placements)


@pytest.mark.parametrize(
    ("which", "column"), [("impressions", "impression_id"), ("labels", "viewable")]
)
def test_a_missing_key_column_fails_closed_naming_it(one_day, which, column):
    raw_day, placements = one_day
    frames = {"impressions": raw_day.impressions, "labels": raw_day.labels}
    frames[which] = frames[which].drop(columns=column)
    with pytest.raises(ContractError, match=rf"missing columns \['{column}'\]"):
        etl.transform_day(data.RawDay(raw_day.day, **frames), placements)


def test_a_day_with_every_row_quarantined_fails_closed_or_gives_an_empty_table(one_day):
    raw_day, placements = one_day
    late = data.RawDay(
        raw_day.day,
        raw_day.impressions.assign(ts=raw_day.impressions["ts"] - pd.Timedelta(days=1)),
        raw_day.labels,
    )
    with pytest.raises(QuarantineThresholdError, match=r"\(100.0%\)"):
        etl.transform_day(late, placements)
    result = etl.transform_day(late, placements, max_quarantine_fraction=1.0)
    assert list(result.table.columns) == list(etl.OUTPUT_COLUMNS)
    assert len(result.table) == 0
    assert len(result.quarantine) == len(raw_day.impressions)


def test_add_features_keeps_row_order_and_leaves_its_input_alone(one_day):
    raw_day, placements = one_day
    table = etl.transform_day(raw_day, placements).table
    shuffled = table.sample(frac=1.0, random_state=3).assign(
        page_load_ms=lambda df: df["page_load_ms"].where(df.index % 7 != 0),
        viewable=lambda df: df["viewable"].astype(float),
    )
    before = shuffled.copy()
    out = etl.add_features(shuffled.drop(columns="hour"))
    pd.testing.assert_frame_equal(shuffled, before)
    assert list(out["impression_id"]) == list(shuffled["impression_id"])
    assert out["page_load_ms"].notna().all()
    assert out["viewable"].dtype == "int64"


# --- the sort-merge join ---------------------------------------------------------------------

KEYS = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "aa", "é"]))


@given(
    ids=st.lists(KEYS, max_size=25),
    labelled=st.lists(st.sampled_from(["a", "b", "c", "aa", "é", "zz"]), unique=True),
    dtype=st.sampled_from(["str", "object"]),
)
def test_sort_merge_join_finds_each_label_and_the_sorted_order(ids, labelled, dtype):
    ids = pd.Series(ids, dtype=dtype)
    label_ids = pd.Series(labelled, dtype=dtype)
    labels = pd.Series(np.arange(len(labelled)) % 2, dtype="int64")
    found, order = etl.sort_merge_join(ids, label_ids, labels)
    expected = ids.map(dict(zip(labelled, labels.astype(float), strict=True)))
    np.testing.assert_array_equal(found, expected.to_numpy(dtype=float))
    stable = ids.reset_index(drop=True).sort_values(kind="stable", na_position="last")
    assert list(order) == list(stable.index)


# --- interrupted writes ------------------------------------------------------------------


def partial_then_fail(tmp: Path) -> None:
    tmp.write_bytes(b"PAR1 half a file")
    raise OSError("disk full")


def test_atomic_write_interrupted_by_the_writer_leaves_the_old_file(tmp_path):
    path = tmp_path / "part.parquet"
    path.write_bytes(b"old complete file")
    with pytest.raises(OSError, match="disk full"):
        etl.atomic_write(path, partial_then_fail)
    assert path.read_bytes() == b"old complete file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part.parquet"]
    etl.atomic_write(path, lambda tmp: tmp.write_bytes(b"new file"))
    assert path.read_bytes() == b"new file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part.parquet"]


def test_atomic_write_interrupted_at_the_rename_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "part.parquet"
    path.write_bytes(b"old complete file")

    def failing_replace(src, dst):
        raise OSError("power cut during rename")

    monkeypatch.setattr(etl.os, "replace", failing_replace)
    with pytest.raises(OSError, match="power cut"):
        etl.atomic_write(path, lambda tmp: tmp.write_bytes(b"new file"))
    assert path.read_bytes() == b"old complete file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part.parquet"]
    monkeypatch.undo()
    etl.atomic_write(path, lambda tmp: tmp.write_bytes(b"new file"))
    assert path.read_bytes() == b"new file"


def test_atomic_write_creates_a_missing_folder(tmp_path):
    path = tmp_path / "a" / "b" / "x.txt"
    etl.atomic_write(path, lambda tmp: tmp.write_text("hi"))
    assert path.read_text() == "hi"


def test_interrupted_first_publish_is_not_published_and_reruns_cleanly(tmp_path, monkeypatch):
    raw, out = tmp_path / "raw", tmp_path / "out"
    days = raw_dataset(raw, n_days=1)
    real_replace = os.replace

    def fail_on_manifest(src, dst):
        if Path(dst).name == etl.MANIFEST:
            raise OSError("killed before the manifest")
        real_replace(src, dst)

    monkeypatch.setattr(etl.os, "replace", fail_on_manifest)
    with pytest.raises(OSError, match="killed"):
        etl.run_day(raw, out, days[0])
    monkeypatch.undo()
    assert etl.published_days(out) == []
    assert not list(out.rglob("*.tmp"))
    with pytest.raises(FileNotFoundError, match="not published"):
        etl.read_partitions(out, days)
    report = etl.run_day(raw, out, days[0])
    assert report.status == "published"
    assert etl.published_days(out) == [days[0].isoformat()]


def test_interrupted_republish_keeps_the_old_partition_and_reruns_cleanly(published, monkeypatch):
    raw, out, days, first = published
    before = snapshot(out)
    real_replace = os.replace

    def fail_on_data(src, dst):
        if Path(dst).name == "part.parquet":
            raise OSError("killed while publishing")
        real_replace(src, dst)

    monkeypatch.setattr(etl.os, "replace", fail_on_data)
    with pytest.raises(OSError, match="killed"):
        etl.run_day(raw, out, days[0], force=True)
    monkeypatch.undo()
    assert not list(out.rglob("*.tmp"))
    assert len(etl.read_partitions(out, days)) == sum(r.rows_out for r in first)
    report = etl.run_day(raw, out, days[0], force=True)
    assert report.fingerprint == first[0].fingerprint
    assert snapshot(out) == before


def test_files_are_published_quarantine_then_data_then_manifest(tmp_path, monkeypatch):
    raw, out = tmp_path / "raw", tmp_path / "out"
    days = raw_dataset(raw, n_days=1)
    real_replace = os.replace
    renamed = []

    def recording_replace(src, dst):
        renamed.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(etl.os, "replace", recording_replace)
    etl.run_day(raw, out, days[0])
    assert renamed == ["quarantine.parquet", "part.parquet", etl.MANIFEST]


def test_a_failure_to_fingerprint_the_inputs_publishes_nothing(published, monkeypatch):
    raw, out, days, _ = published
    before = snapshot(out)

    def unreadable(raw_root, day, labelled=True):
        raise OSError("raw extract unreadable")

    monkeypatch.setattr(etl, "input_fingerprints", unreadable)
    with pytest.raises(OSError, match="unreadable"):
        etl.run_day(raw, out, days[0], force=True)
    assert snapshot(out) == before
    assert not list(out.rglob("*.tmp"))


# --- reading back ------------------------------------------------------------------------


def test_read_partitions_refuses_a_tampered_partition(published):
    _, out, days, _ = published
    part = etl.partition_dir(out, days[1]) / "part.parquet"
    part.write_bytes(part.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="does not match its manifest") as err:
        etl.read_partitions(out, days)
    assert "day=" + days[1].isoformat() in str(err.value)
    assert "force=True" in str(err.value)


def test_read_partitions_refuses_a_published_day_whose_file_is_gone(published):
    _, out, days, _ = published
    (etl.partition_dir(out, days[0]) / "part.parquet").unlink()
    with pytest.raises(ValueError, match="part.parquet is missing") as err:
        etl.read_partitions(out, days)
    assert "force=True" in str(err.value)


def test_a_tampered_partition_is_rebuilt_by_the_next_run(published):
    raw, out, days, first = published
    part = etl.partition_dir(out, days[1]) / "part.parquet"
    part.write_bytes(b"garbage")
    report = etl.run_day(raw, out, days[1])
    assert report.status == "published"
    assert etl.file_sha256(part) == first[1].fingerprint


def test_a_changed_quarantine_file_is_refused_by_readers_and_republished(published):
    raw, out, days, first = published
    path = etl.quarantine_path(out, days[1])
    before = path.read_bytes()
    pd.read_parquet(path).iloc[1:].to_parquet(path, index=False)  # one quarantined row lost
    for read in (
        lambda: etl.read_partitions(out, days),
        lambda: etl.read_quarantine(out, days[1]),
        lambda: etl.read_manifest(out, days[1]),
    ):
        with pytest.raises(ValueError, match="quarantine.parquet does not match its manifest"):
            read()
    report = etl.run_day(raw, out, days[1])
    assert report.status == "published"
    assert path.read_bytes() == before
    assert len(etl.read_quarantine(out, days[1])) == first[1].rows_quarantined


def test_the_manifest_records_every_file_of_the_day(published):
    _, out, days, _ = published
    manifest = etl.read_manifest(out, days[0])
    files = etl.day_files(out, days[0])
    assert manifest["files"] == {name: etl.file_sha256(path) for name, path in files.items()}
    assert set(files) == {
        f"processed/day={days[0]}/part.parquet",
        f"quarantine/day={days[0]}/quarantine.parquet",
    }


def test_a_manifest_without_file_fingerprints_is_refused_and_republished(published):
    raw, out, days, _ = published
    path = etl.partition_dir(out, days[0]) / etl.MANIFEST
    before = path.read_text()
    older = json.loads(before)
    del older["files"]  # as the workbook wrote manifests before they listed every file
    path.write_text(json.dumps(older))
    with pytest.raises(etl.PartitionError, match=f"day {days[0]}: .*rerun the ETL for that day"):
        etl.read_partitions(out, days)
    assert etl.run_day(raw, out, days[0]).status == "published"
    assert path.read_text() == before


def test_every_published_file_is_fsynced_before_its_rename_and_its_folder_after(
    tmp_path, monkeypatch
):
    raw, out = tmp_path / "raw", tmp_path / "out"
    days = raw_dataset(raw, n_days=1)
    real_fsync, real_replace = os.fsync, os.replace
    events = []

    def recording_fsync(fd):  # records, then really syncs
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def recording_replace(src, dst):
        events.append(("replace", str(Path(src).resolve()), str(Path(dst).resolve())))
        real_replace(src, dst)

    monkeypatch.setattr(etl.os, "fsync", recording_fsync)
    monkeypatch.setattr(etl.os, "replace", recording_replace)
    etl.run_day(raw, out, days[0])
    renames = [(i, e) for i, e in enumerate(events) if e[0] == "replace"]
    assert [Path(e[2]).name for _, e in renames] == [
        "quarantine.parquet",
        "part.parquet",
        etl.MANIFEST,
    ]
    for i, (_, src, dst) in renames:
        assert ("fsync", src) in events[:i], f"{Path(dst).name} renamed before it was fsynced"
        assert ("fsync", str(Path(dst).parent)) in events[i + 1 :], (
            f"the folder of {Path(dst).name} was not fsynced after the rename"
        )


def test_read_partitions_refuses_a_day_that_is_not_published(published):
    _, out, days, _ = published
    with pytest.raises(FileNotFoundError, match="2023-12-31 is not published") as err:
        etl.read_partitions(out, ["2023-12-31"])
    assert "run the ETL" in str(err.value)


def test_manifest_is_plain_json_with_the_counts(published):
    _, out, days, reports = published
    text = (etl.partition_dir(out, days[0]) / etl.MANIFEST).read_text()
    manifest = json.loads(text)
    assert manifest["day"] == days[0].isoformat()
    assert manifest["status"] == "published"
    assert manifest["rows_quarantined"] == reports[0].rows_quarantined


def test_build_training_table_reads_published_clean_days(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_WORKBOOK_HOME", str(tmp_path))
    table = etl.build_training_table(SEED, 200, START, 2)
    assert table["ts"].dt.date.astype(str).isin(["2024-01-01", "2024-01-02"]).all()
    assert len(table) > 0.9 * 400
    again = etl.build_training_table(SEED, 200, START, 2)  # second call reuses what exists
    pd.testing.assert_frame_equal(table, again)
    assert len(list((tmp_path / "datasets").iterdir())) == 1
