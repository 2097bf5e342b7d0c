"""Batch scoring against an in-process pyfunc predict on the same rows.

    .venv/bin/python benchmarks/batch_scoring.py [--rows 1000000] [--repeats 5]

One day of ``--rows`` impressions is published without labels in a temp workspace and a
model is registered. Then, ``--repeats`` times, alternating: ``scoring.score_day`` on that
day from scratch (its predictions folder removed first: read and check the published
partition, predict with the version's pyfunc model, write the prediction partition and its
manifest), and ``pyfunc_model.predict`` on the same rows already in memory (the model
loaded once, as score_day's cache does). Prints the median, min and max of each and the
ratio; the goal is a ratio of at most 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

DAY = "2026-01-08"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    os.environ["MLOPS_WORKBOOK_HOME"] = str(root / "ws")

    from mlops_helpers import data, etl, registry, scoring, tracking, training

    raw, unlabelled, predictions = root / "raw", root / "unlabelled", root / "predictions"
    data.write_raw_dataset(raw, 1, 2000, "2026-01-05", 3)
    data.write_raw_dataset(raw, 1, args.rows, DAY, 1)
    etl.run_days(raw, root / "published", data.day_range("2026-01-05", 3))
    start = time.perf_counter()
    report = etl.run_day(raw, unlabelled, DAY, labelled=False)
    print(f"published {report.rows_out} unlabelled rows in {time.perf_counter() - start:.1f} s")
    tracking.configure_tracking(experiment="bench-scoring")
    table = etl.read_partitions(root / "published", data.day_range("2026-01-05", 3))
    fit = training.fit_and_evaluate(table, 1)
    version = registry.register(tracking.log_training(fit, "bench"), "bench-scoring")
    rows = etl.read_partitions(unlabelled, [DAY]).loc[:, list(training.FEATURES)]
    model = scoring._load("bench-scoring", version)

    model.predict(rows)  # warm up both sides once: first touches of memory are not the job
    scoring.score_day(unlabelled, predictions, DAY, "bench-scoring", version)
    batch, direct = [], []
    for _ in range(args.repeats):
        shutil.rmtree(predictions, ignore_errors=True)
        start = time.perf_counter()
        scored = scoring.score_day(unlabelled, predictions, DAY, "bench-scoring", version)
        batch.append(time.perf_counter() - start)
        assert scored.status == "scored" and scored.rows == len(rows)
        start = time.perf_counter()
        model.predict(rows)
        direct.append(time.perf_counter() - start)
    b, d = statistics.median(batch), statistics.median(direct)
    print(f"score_day        {b:6.2f} s (min {min(batch):.2f}, max {max(batch):.2f})")
    print(f"pyfunc predict   {d:6.2f} s (min {min(direct):.2f}, max {max(direct):.2f})")
    print(f"ratio {b / d:.2f}x (goal: at most 2x) on {len(rows)} rows, {args.repeats} repeats")
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
