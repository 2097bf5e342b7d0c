"""storage: one atomic write for every file the workbook keeps. Under kill -9 a file is the
old version or the new one, a dead writer's temp file goes with the next write (a live
writer's stays), and file and folder are fsynced around the rename.

Each writer that is killed here is a real forked process that kills itself with SIGKILL
at an exact point (inside its write, or at its rename); the parent reads what is on disk.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from mlops_helpers import data, storage, tracking
from mlops_helpers.workbook import pipeline

FORK = multiprocessing.get_context("fork")  # the child must share this test's patches
# Python 3.12+ warns that forking a multi-threaded process may deadlock the child. The
# threads are pytest-xdist's; the child only runs its body on files and leaves by os._exit.
pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded, use of fork:DeprecationWarning"
)


def in_child(body: Callable[[], None]) -> multiprocessing.Process:
    """Run ``body`` in a forked process that exits 0 when it returns; wait for it."""

    def main() -> None:
        body()
        os._exit(0)

    child = FORK.Process(target=main)
    child.start()
    child.join(60)
    return child


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*.tmp"))


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def killed_at_rename(write: Callable[[], None], after: bool = False) -> None:
    """``write()`` in this (child) process, killed just before its rename, or just after."""
    real_replace = os.replace

    def replace(src, dst):
        if not after:
            kill_self()
        real_replace(src, dst)
        kill_self()

    os.replace = replace  # in the child only
    write()


def test_a_writer_killed_halfway_through_leaves_the_old_file_and_its_temp_goes_next(tmp_path):
    path = tmp_path / "part.parquet"
    path.write_bytes(b"old complete file")

    def half_then_killed(tmp: Path) -> None:
        tmp.write_bytes(b"PAR1 half a")
        kill_self()

    child = in_child(lambda: storage.atomic_write(path, half_then_killed))
    assert child.exitcode == -signal.SIGKILL
    assert path.read_bytes() == b"old complete file"
    (left,) = temps(tmp_path)
    assert f".part.parquet.{child.pid}-" in left
    storage.atomic_write(path, lambda tmp: tmp.write_bytes(b"new file"))
    assert path.read_bytes() == b"new file"
    assert temps(tmp_path) == [], "the dead writer's temp file goes with the next write"


def test_a_writer_killed_right_after_its_rename_left_the_whole_new_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("old")

    def write() -> None:
        storage.atomic_write(path, lambda tmp: tmp.write_text("new, complete"))

    child = in_child(lambda: killed_at_rename(write, after=True))
    assert child.exitcode == -signal.SIGKILL
    assert path.read_text() == "new, complete" and temps(tmp_path) == []


def test_a_live_writers_temp_file_is_left_alone(tmp_path):
    path = tmp_path / "state.json"
    staged, go = FORK.Event(), FORK.Event()

    def slow(tmp: Path) -> None:
        tmp.write_text("from the slow writer")
        staged.set()
        go.wait(60)

    child = FORK.Process(target=lambda: (storage.atomic_write(path, slow), os._exit(0)))
    child.start()
    try:
        assert staged.wait(60)
        storage.atomic_write(path, lambda tmp: tmp.write_text("from the quick writer"))
        assert [n for n in temps(tmp_path) if f".{child.pid}-" in n], "a live writer's temp stays"
    finally:
        go.set()
        child.join(60)
    assert child.exitcode == 0
    assert path.read_text() == "from the slow writer" and temps(tmp_path) == []


def _state(folder: Path, version: str) -> None:
    pipeline._save_state(folder, {"steps": {}, "version": version})


def _csv(folder: Path, version: str) -> None:
    data._write_csv_once(pd.DataFrame({"version": [version]}), folder / "impressions.csv")


def _sqlite(folder: Path, version: str) -> None:
    source = folder.parent / f"source-{version}.db"
    with contextlib.closing(sqlite3.connect(source)) as con:
        con.execute("create table if not exists t (version text)")
        con.execute("insert into t values (?)", (version,))
        con.commit()
    tracking._sqlite_copy(source, folder / "mlflow.db")


def _read(folder: Path) -> str | None:
    """The version a writer's file holds, or None when there is no file."""
    if (folder / "pipeline.json").is_file():
        return json.loads((folder / "pipeline.json").read_text())["version"]
    if (folder / "impressions.csv").is_file():
        return pd.read_csv(folder / "impressions.csv")["version"][0]
    if (folder / "mlflow.db").is_file():
        with contextlib.closing(sqlite3.connect(folder / "mlflow.db")) as con:
            return con.execute("select version from t").fetchall()[-1][0]
    return None


# The files the workbook keeps besides the ETL's partitions: a pipeline run's state, a raw
# extract (written once: it never changes), and a sqlite store copied from the tests' template.
WRITERS = {"pipeline state": _state, "raw extract": _csv, "tracking store copy": _sqlite}


@pytest.mark.parametrize("write", WRITERS.values(), ids=WRITERS.keys())
def test_every_writer_killed_at_its_rename_leaves_the_old_file_and_the_next_write_cleans_up(
    tmp_path, write
):
    folder = tmp_path / "files"
    folder.mkdir()
    if write is not _csv:  # a raw extract is written once: there is no old version
        write(folder, "old")
        assert _read(folder) == "old"
    child = in_child(lambda: killed_at_rename(lambda: write(folder, "new")))
    assert child.exitcode == -signal.SIGKILL
    assert _read(folder) == (None if write is _csv else "old")
    assert [n for n in temps(folder) if f".{child.pid}-" in n], "killed before its rename"
    write(folder, "new")
    assert _read(folder) == "new"
    assert temps(folder) == [], "the killed writer's temp file went with the next write"


@pytest.mark.parametrize("write", WRITERS.values(), ids=WRITERS.keys())
def test_every_writer_fsyncs_its_file_before_the_rename_and_the_folder_after(
    tmp_path, monkeypatch, write
):
    folder = tmp_path / "files"
    folder.mkdir()
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def recording_fsync(fd):  # records, then really syncs
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def recording_replace(src, dst):
        events.append(("replace", str(Path(src).resolve())))
        real_replace(src, dst)
        events.append(("renamed", str(Path(dst).resolve().parent)))

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    write(folder, "new")
    (i,) = [i for i, e in enumerate(events) if e[0] == "replace"]
    assert ("fsync", events[i][1]) in events[:i], "the file is fsynced before its rename"
    assert ("fsync", str(folder.resolve())) in events[i + 1 :], "the folder after it"
