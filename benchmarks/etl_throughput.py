"""Automated ETL on one day of N rows against a bare pandas read and write of the same data.

    .venv/bin/python benchmarks/etl_throughput.py [--rows 1000000] [--repeats 3] [--breakdown]

Both sides read the same raw CSV extracts (impressions, labels, placements) and write
parquet; the ETL adds contracts, quarantine, joins, features, fingerprints and atomic
publishing. Prints medians, min and max, rows per second, and the ratio ETL / bare.
``--breakdown`` also prints the seconds of each step of the ETL, run one after another.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from mlops_helpers import data, etl, validation

DAY = "2026-01-05"


def bare_pandas(raw: Path, out: Path) -> None:
    """The floor: read the day's raw CSVs with pandas and write them as parquet."""
    folder = data.raw_day_dir(raw, data.as_day(DAY))
    for name in ("impressions", "labels"):
        pd.read_csv(folder / f"{name}.csv").to_parquet(out / f"{name}.parquet")
    pd.read_csv(raw / "placements.csv").to_parquet(out / "placements.parquet")


def automated(raw: Path, out: Path) -> None:
    """The automated ETL for the day, forced (no skip by lineage)."""
    etl.run_day(raw, out, DAY, force=True)


def publish(result: etl.Transformed, out: Path, day, inputs: dict[str, str]) -> etl.DayReport:
    """``run_day``'s last step alone: publish a transformed day whose input hashes are known.

    ``run_day`` hashes the inputs on a second thread while it publishes; timed one after
    another, the step takes the hashes already computed.
    """
    return etl._publish(result, out, day, lambda: inputs)


def breakdown(raw: Path, out: Path) -> dict[str, float]:
    """Seconds of each step of one automated day, one after another.

    ``run_day`` overlaps some of them on a second thread: the labels side with the
    impressions contract, and the hashing of the inputs with the parquet writes.
    """
    day = data.as_day(DAY)
    steps: dict[str, float] = {}

    def timed(name, fn, *args):
        start = time.perf_counter()
        result = fn(*args)
        steps[name] = time.perf_counter() - start
        return result

    inputs = timed("sha256 of the input CSVs", etl.input_fingerprints, raw, day)
    raw_day = timed("read the CSVs (pyarrow)", etl.extract_day, raw, day)
    placements = timed("read the placements", etl.extract_placements, raw)
    ids = list(placements["placement_id"])
    timed("labels contract", validation.check_labels, raw_day.labels, day)
    timed("impressions contract", validation.check_impressions, raw_day.impressions, day, ids)
    timed(
        "join labels, order by id (one sort)",
        etl.sort_merge_join,
        raw_day.impressions["impression_id"],
        raw_day.labels["impression_id"],
        raw_day.labels["viewable"],
    )
    result = timed("transform_day (the 3 above + features)", etl.transform_day, raw_day, placements)
    timed("publish: parquet, sha256, manifest", publish, result, out, day, inputs)
    return steps


def measure(fn, raw: Path, out: Path, repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(raw, out)
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    """Generate the day once, then time both sides alternately."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--breakdown", action="store_true", help="also time each ETL step")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw, out_bare, out_etl = Path(tmp, "raw"), Path(tmp, "bare"), Path(tmp, "etl")
        out_bare.mkdir()
        data.write_raw_dataset(raw, 42, args.rows, DAY, 1)
        rows_in = etl.run_day(raw, out_etl, DAY).rows_in  # warm-up, and the row count
        bare, auto = [], []
        for _ in range(args.repeats):  # alternate so machine noise hits both sides
            bare += measure(bare_pandas, raw, out_bare, 1)
            auto += measure(automated, raw, out_etl, 1)
        steps = [breakdown(raw, out_etl) for _ in range(args.repeats)] if args.breakdown else []
    med_b, med_a = statistics.median(bare), statistics.median(auto)
    print(f"command: {' '.join(sys.argv)}  (rows per day {args.rows}, repeats {args.repeats})")
    print(f"{'side':<22} {'median s':>9} {'min s':>7} {'max s':>7} {'rows/s':>12}")
    for name, times, med in (("bare pandas r+w", bare, med_b), ("automated ETL", auto, med_a)):
        print(f"{name:<22} {med:9.2f} {min(times):7.2f} {max(times):7.2f} {rows_in / med:12,.0f}")
    print(f"ratio automated / bare: {med_a / med_b:.2f}x")
    if steps:
        print(f"\n{'ETL step, one after another (median)':<42} {'s':>6}")
        for name in steps[0]:
            print(f"{name:<42} {statistics.median(s[name] for s in steps):6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
