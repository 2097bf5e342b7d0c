"""etl under kill -9: a day is the old version, the new one, or a clear error; never a mix.

Each writer here is a real forked process. To stop it at an exact point, the child (and
only the child) wraps ``os.replace`` or ``input_fingerprints`` and kills itself with
SIGKILL or waits there; the parent then reads, reruns and compares what is on disk.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from mlops_helpers import data, etl, storage

START = "2024-01-01"
N = 300
SEED = 21
FORK = multiprocessing.get_context("fork")  # the child must share this test's patches
# Python 3.12+ warns that forking a multi-threaded process may deadlock the child. The
# threads are pytest-xdist's; the child only runs its body on files and leaves by os._exit.
pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded, use of fork:DeprecationWarning"
)
DAY_FILES = ("part.parquet", "quarantine.parquet")  # what a day publishes besides its manifest


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (relative name -> bytes)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def temps(folder: Path) -> list[str]:
    """The temporary files left below ``folder``."""
    return sorted(p.name for p in folder.rglob(".*.tmp"))


def make_raw(root: Path, corrected: bool = False):
    """One day of raw extracts; ``corrected`` is a later label delivery with 10 fewer labels,
    so both the data and the quarantine of the day change."""
    day = data.write_raw_dataset(root, SEED, N, START, 1, "none")[0]
    if corrected:
        labels = data.raw_day_dir(root, day) / "labels.csv"
        lines = labels.read_text().splitlines(keepends=True)
        labels.write_text("".join(lines[:-10]))
    return day


def published_alone(raw: Path, out: Path, day) -> dict[str, bytes]:
    """What an uninterrupted run of the day publishes."""
    etl.run_day(raw, out, day)
    return snapshot(out)


def in_child(body: Callable[[], None]) -> multiprocessing.Process:
    """Start ``body`` in a forked process that exits 0 when it returns."""

    def main() -> None:
        body()
        os._exit(0)

    child = FORK.Process(target=main)
    child.start()
    return child


def killed_after_renames(done: int, raw: Path, out: Path, day) -> None:
    """run_day, killed with SIGKILL once ``done`` of the day's renames have happened."""
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        if len(calls) == done:
            os.kill(os.getpid(), signal.SIGKILL)
        calls.append(dst)
        real_replace(src, dst)
        if len(calls) == done == 3:  # after the last rename: the manifest is in place
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace  # in this child only
    etl.run_day(raw, out, day)


def waits_for_a_lock(pid: int) -> bool:
    """True while ``pid`` waits for a file lock (a ``->`` line of /proc/locks)."""
    return any(
        "->" in line and f" {pid} " in line for line in Path("/proc/locks").read_text().splitlines()
    )


def readers(out: Path, day) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """What each reader of a published day returns."""
    return (
        etl.read_partitions(out, [day]),
        etl.read_quarantine(out, day),
        etl.read_manifest(out, day),
    )


@pytest.mark.parametrize("done", [0, 1, 2, 3], ids=lambda n: f"killed_after_{n}_renames")
@pytest.mark.parametrize("previous", [True, False], ids=["republish", "first_publish"])
def test_a_kill_at_any_point_of_publishing_never_shows_a_mix_and_the_rerun_repairs_it(
    tmp_path, done, previous
):
    raw, out = tmp_path / "raw", tmp_path / "out"
    day = make_raw(raw)
    if previous:
        etl.run_day(raw, out, day)
        old_table, old_manifest = etl.read_partitions(out, [day]), etl.read_manifest(out, day)
        old_quarantine = pd.read_parquet(etl.quarantine_path(out, day))
    make_raw(raw, corrected=True)  # the new version differs in data and quarantine
    expected = published_alone(raw, tmp_path / "uninterrupted", day)

    child = in_child(lambda: killed_after_renames(done, raw, out, day))
    child.join(60)
    assert child.exitcode == -signal.SIGKILL

    # what a reader sees after the kill: the old version, the new one, or a clear error
    if done == 3:  # the manifest was renamed: the new version is complete
        assert snapshot(out) == expected
    elif not previous:
        with pytest.raises(FileNotFoundError, match="is not published"):
            etl.read_partitions(out, [day])
    elif done == 0:  # nothing renamed yet: every reader sees the old version
        pd.testing.assert_frame_equal(etl.read_partitions(out, [day]), old_table)
        assert etl.read_manifest(out, day) == old_manifest
        pd.testing.assert_frame_equal(etl.read_quarantine(out, day), old_quarantine)
    else:  # new files beside the old manifest: every reader refuses, naming the day and fix
        with pytest.raises(ValueError, match=rf"day={day}/\S+ does not match its manifest"):
            etl.read_partitions(out, [day])
        for read in (etl.read_partitions, etl.read_quarantine, etl.read_manifest):
            with pytest.raises(etl.PartitionError) as err:
                read(out, [day] if read is etl.read_partitions else day)
            assert f"day {day}:" in str(err.value)
            assert "rerun the ETL for that day" in str(err.value)
            assert str(tmp_path) not in str(err.value)
    report = etl.run_day(raw, out, day)  # no force: a broken day is not "unchanged"
    assert report.status == ("unchanged" if done == 3 else "published")
    assert temps(out) == []
    assert snapshot(out) == expected  # byte-identical to an uninterrupted run
    table, quarantine, manifest = readers(out, day)
    assert (
        manifest["rows_in"]
        == len(table) + len(quarantine)
        == (len(etl.extract_day(raw, day).impressions))
    )
    assert (manifest["rows_out"], manifest["rows_quarantined"]) == (len(table), len(quarantine))


def test_two_writers_of_one_day_at_once_leave_one_complete_version(tmp_path):
    raw_a, raw_b, out = tmp_path / "raw_a", tmp_path / "raw_b", tmp_path / "out"
    day = make_raw(raw_a)
    make_raw(raw_b, corrected=True)
    versions = [
        published_alone(raw_a, tmp_path / "alone_a", day),
        published_alone(raw_b, tmp_path / "alone_b", day),
    ]
    paused, go = FORK.Event(), FORK.Event()

    def writer_a() -> None:  # stops after its first rename until told to go on
        real_replace = os.replace

        def replace(src, dst):
            real_replace(src, dst)
            paused.set()
            go.wait(60)

        os.replace = replace
        etl.run_day(raw_a, out, day)

    a = in_child(writer_a)
    assert paused.wait(60)
    b = in_child(lambda: etl.run_day(raw_b, out, day))
    deadline = time.monotonic() + 30
    while b.is_alive() and not waits_for_a_lock(b.pid):  # b is done, or held back
        assert time.monotonic() < deadline
        time.sleep(0.02)
    go.set()
    a.join(60)
    b.join(60)
    assert (a.exitcode, b.exitcode) == (0, 0)
    assert snapshot(out) in versions  # one writer's complete version, not a mix
    assert snapshot(out) == versions[1]  # the last to finish, b, wins
    readers(out, day)


def test_a_dead_writers_temp_files_go_with_the_next_write_and_a_live_writers_stay(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    day = make_raw(raw)
    expected = published_alone(raw, tmp_path / "alone", day)
    dead = in_child(lambda: killed_after_renames(0, raw, out, day))
    dead.join(60)
    assert dead.exitcode == -signal.SIGKILL
    dead_temps = temps(out)
    assert dead_temps and all(f".{dead.pid}" in name for name in dead_temps)
    folder = etl.partition_dir(out, day)
    (folder / f".part.parquet.{dead.pid}.tmp").write_bytes(b"PAR1 a half")  # older naming

    waiting, go = FORK.Event(), FORK.Event()

    def live_writer() -> None:  # alive, its files staged, while the other run publishes
        real = etl.input_fingerprints

        def slow_fingerprints(raw_root, day, labelled=True):
            waiting.set()
            go.wait(60)
            return real(raw_root, day, labelled)

        etl.input_fingerprints = slow_fingerprints
        etl.run_day(raw, out, day, force=True)

    live = in_child(live_writer)
    assert waiting.wait(60)

    def live_temps() -> list[str]:
        return [n for n in temps(out) if f".{live.pid}-" in n]

    deadline = time.monotonic() + 10  # until every file of its day is staged
    while len(live_temps()) < len(DAY_FILES) and time.monotonic() < deadline:
        time.sleep(0.02)
    staged = live_temps()

    assert etl.run_day(raw, out, day).status == "published"
    assert not [n for n in temps(out) if f".{dead.pid}" in n]  # the dead writer's are gone
    assert sorted(name.split(".")[1] for name in staged) == ["part", "quarantine"]
    assert live_temps() == staged  # the live writer's stay
    go.set()
    live.join(60)
    assert live.exitcode == 0
    assert temps(out) == []
    assert snapshot(out) == expected


def test_a_temp_file_whose_pid_now_belongs_to_another_process_is_removed(tmp_path):
    started = Path("/proc/self/stat").read_text().rpartition(")")[2].split()[19]
    pid = os.getpid()
    mine = tmp_path / f".part.parquet.{pid}-{started}-0a1b2c3d.tmp"
    reused = tmp_path / f".part.parquet.{pid}-{int(started) - 1}-0a1b2c3d.tmp"
    other = tmp_path / f".notes.txt.{pid}-{int(started) - 1}-0a1b2c3d.tmp"
    for path in (mine, reused, other):
        path.write_bytes(b"x")
    assert storage.remove_dead_temps(tmp_path, "part.parquet") == [reused.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, other.name])
