"""A backfill on Dagster: N days of R rows, pipelined over 2 processes against one day
after another in one.

    .venv/bin/python benchmarks/orchestrator_backfill.py [--days 30] [--rows 100000] [--repeats 1]

What ``mlops-workbook backfill`` does (:func:`mlops_helpers.orchestration.backfill.run_backfill`),
each mode in a fresh workspace: the window days before the range published first, then
every day, oldest first. ``--workers 2``: a second process runs published_day[D] and
trained_model[D] (trained on the days before D) for day after day, while the first runs
champion[D] in day order (it gates against what D-1 left). ``--workers 1``: the whole job
for one day, then the next. Prints the wall clock of each mode (median of the repeats),
seconds per day, and the speed-up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

START = "2026-01-05"
WINDOW = 3


def one_backfill(days: int, rows: int, workers: int) -> tuple[float, list]:
    """Seconds of one backfill in a fresh workspace, and each day's (status, champion)."""
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
    try:
        start = time.perf_counter()
        results = backfill.run_backfill(
            settings, first.isoformat(), last.isoformat(), workers, say=lambda line: None,
            instance=instance,
        )  # fmt: skip
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(root, ignore_errors=True)
    failed = [r for r in results if not r.success]
    assert not failed, failed[0].error
    jobs = [r for r in results if r.what == "job"]
    assert len(jobs) == days
    outcome = [(r.day, r.outputs.get("champion", {}).get("status", "-"),
                r.outputs.get("champion", {}).get("champion", "-")) for r in jobs]  # fmt: skip
    return seconds, outcome


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
    walls, outcomes = {}, {}
    for workers, label in ((2, "2 workers (pipelined over 2 processes)"),
                           (1, "1 worker (one day after another)")):  # fmt: skip
        runs = [one_backfill(args.days, args.rows, workers) for _ in range(args.repeats)]
        walls[workers] = [seconds for seconds, _ in runs]
        outcomes[workers] = runs[0][1]
        median = statistics.median(walls[workers])
        print(f"{label:<44} {median:7.1f} s  ({median / args.days:.2f} s a day; "
              f"runs {', '.join(f'{w:.1f}' for w in walls[workers])})", flush=True)  # fmt: skip
    ratio = statistics.median(walls[1]) / statistics.median(walls[2])
    same = outcomes[1] == outcomes[2]
    print(f"same outcome day by day (gate status, champion version): {'yes' if same else 'NO'}")
    print(f"speed-up of 2 workers: {ratio:.2f}x")


if __name__ == "__main__":
    main()
