"""A backfill on Dagster: N days of R rows, 2 workers (each day's run on the multiprocess
executor, max_concurrent 2) against one after another (the in-process executor).

    .venv/bin/python benchmarks/orchestrator_backfill.py [--days 30] [--rows 100000] [--repeats 1]

What ``mlops-workbook backfill`` does (:func:`mlops_helpers.orchestration.backfill.run_backfill`),
each mode in a fresh workspace: the window days before the range published first, then one
run per day, oldest first (champion[D] gates against what D-1 left). With 2 workers,
published_day[D] and trained_model[D] (which trains on the days before D) run at once in
forkserver step processes; champion[D] waits for both. Prints the wall clock of each mode
(median of the repeats), seconds per day, and the speed-up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

START = "2026-01-05"
WINDOW = 3


def one_backfill(days: int, rows: int, workers: int) -> float:
    root = Path(tempfile.mkdtemp(prefix=f"bench-backfill-{workers}-"))
    os.environ["MLOPS_WORKBOOK_HOME"] = str(root / "ws")
    settings_file = root / "orchestrator.yaml"
    settings_file.write_text(
        f'seed: 1\nn_rows: {rows}\nmodel_name: bench-backfill\nstart_day: "{START}"\n'
        f"window: {WINDOW}\nretries: 0\n"
    )
    from mlops_helpers.orchestration import backfill, home
    from mlops_helpers.orchestration.settings import load_settings

    settings = load_settings(settings_file)
    first = dt.date.fromisoformat(START) + dt.timedelta(days=WINDOW)
    last = first + dt.timedelta(days=days - 1)
    instance = home.instance()
    start = time.perf_counter()
    results = backfill.run_backfill(
        settings, first.isoformat(), last.isoformat(), workers, say=lambda line: None,
        instance=instance,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    failed = [r for r in results if not r.success]
    assert not failed, failed[0].error
    assert sum(r.what == "job" for r in results) == days
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print(f"{sys.executable} benchmarks/orchestrator_backfill.py --days {args.days} "
          f"--rows {args.rows} --repeats {args.repeats}")  # fmt: skip
    print(f"backfill of {args.days} days of {args.rows} rows (window {WINDOW}: "
          f"{WINDOW} days published first), {os.cpu_count()} cores", flush=True)  # fmt: skip
    walls = {}
    for workers, label in ((2, "2 workers (multiprocess, max_concurrent 2)"),
                           (1, "one after another (in process)")):  # fmt: skip
        walls[workers] = [one_backfill(args.days, args.rows, workers) for _ in range(args.repeats)]
        median = statistics.median(walls[workers])
        print(f"{label:<44} {median:7.1f} s  ({median / args.days:.2f} s a day; "
              f"runs {', '.join(f'{w:.1f}' for w in walls[workers])})", flush=True)  # fmt: skip
    ratio = statistics.median(walls[1]) / statistics.median(walls[2])
    print(f"speed-up of 2 workers: {ratio:.2f}x")


if __name__ == "__main__":
    main()
