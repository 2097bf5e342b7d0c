"""Where notebook 06's Dask backfill starts to pay: the backfill run one after another
against the same items as a batch on a new 2-worker LocalCluster, at several sizes.

    .venv/bin/python benchmarks/dask_break_even.py [--sizes 500x1,500x2,500x4,500x6]
        [--workers 2] [--repeats 3] [--kernels warm|fresh]

A size ``ROWSxDAYS`` is a backfill of DAYS items, each notebook 03 (automated ETL) for one
day of ROWS impressions, exactly as notebook 06 section 5 builds it. The two sides are the
two of notebook 06: "one after another" is its section 6, ``execute.execute_notebook`` in a
loop in this process; "Dask" is its section 5, ``batch.cluster_client(n_workers=...)`` (a
new LocalCluster of worker processes on loopback) then ``batch.run_batch`` (each item run
with papermill and rendered to HTML, results.csv/json and index.html written), the
cluster's start and stop included, as the notebook's timing includes them. Both sides start
their kernels warm, as notebook 06 does in JupyterLab, under nbval and in ``mlops-workbook
run`` (``warmstart.enable_here``); two untimed notebook runs first start this process's
template, since the notebook's pipeline has run before its backfill. ``--kernels fresh``
starts every kernel the usual way instead, as ``make notebooks`` does when it writes the
committed outputs: each run then pays a Python start and the imports, which the workers
pay side by side. Every measurement uses days no earlier one used, so neither
side finds raw extracts or batch results cached, in a throw-away workspace. The two sides
alternate which goes first from repeat to repeat.

Prints the medians, the ratio (one after another / Dask: above 1 the batch is faster) and,
per row count, the break-even number of days from a straight-line fit of each side
(one after another ~ a * days, Dask ~ b + c * days: days = b / (a - c)).
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

import yaml

from mlops_helpers import config
from mlops_helpers.workbook import batch, curriculum, execute, warmstart

NOTEBOOK = "03_automated_etl"
FIRST_DAY = dt.date(2027, 1, 1)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"500x1,500x4"`` -> ``[(500, 1), (500, 4)]`` (rows per day, days in the backfill)."""
    sizes = []
    for part in text.split(","):
        rows, _, days = part.strip().partition("x")
        sizes.append((int(rows), int(days)))
    return sizes


class Days:
    """Hands out consecutive days never handed out before in this run."""

    def __init__(self) -> None:
        self.next = FIRST_DAY

    def take(self, n: int) -> list[str]:
        out = [(self.next + dt.timedelta(days=k)).isoformat() for k in range(n)]
        self.next += dt.timedelta(days=n)
        return out


def items_for(rows: int, days: list[str]) -> list[dict]:
    return [
        {"seed": 42, "n_rows": rows, "n_days": 1, "fault": "none", "start_day": d} for d in days
    ]


def one_after_another(items: list[dict], out: Path) -> float:
    """Notebook 06 section 6: each item with ``execute.execute_notebook``, in turn; seconds."""
    notebook = curriculum.find_notebook(NOTEBOOK)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for params in items:
        execute.execute_notebook(notebook, out / f"03_{params['start_day']}.ipynb", params)
    return time.perf_counter() - start


def on_dask(items: list[dict], workers: int, name: str, folder: Path) -> float:
    """Notebook 06 section 5: a new LocalCluster, the batch on it, the cluster closed; seconds."""
    spec = {
        "name": name,
        "notebook": NOTEBOOK,
        "parameters": {k: v for k, v in items[0].items() if k != "start_day"},
        "grid": {"start_day": [p["start_day"] for p in items]},
    }
    grid_file = folder / f"{name}.yaml"
    grid_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    grid = batch.load_grid(grid_file)
    start = time.perf_counter()
    client = batch.cluster_client(n_workers=workers)
    try:
        results = batch.run_batch(grid, client=client, progress=False)
    finally:
        client.close()
        client.cluster.close()
    seconds = time.perf_counter() - start
    failed = [r for r in results if r.status != "ok"]
    if failed:
        raise RuntimeError(f"batch item failed: {failed[0].error}")
    return seconds


def break_even(points: list[tuple[int, float, float]]) -> str:
    """Days at which the two fitted lines cross, from (days, seq median, dask median)."""
    if len({d for d, _, _ in points}) < 2:
        return "needs two day counts"
    a = sum(d * s for d, s, _ in points) / sum(d * d for d, _, _ in points)  # through 0
    mean_d = statistics.fmean(d for d, _, _ in points)
    mean_p = statistics.fmean(p for _, _, p in points)
    c = sum((d - mean_d) * (p - mean_p) for d, _, p in points) / sum(
        (d - mean_d) ** 2 for d, _, _ in points
    )
    b = mean_p - c * mean_d
    line = f"one after another ~ {a:.2f} s x days; Dask ~ {b:.1f} s + {c:.2f} s x days"
    if a <= c:
        return f"{line}: Dask never pays at this size"
    return f"{line}: break-even at {b / (a - c):.1f} days"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500x1,500x2,500x4,500x6", help="ROWSxDAYS,...")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--kernels",
        choices=("warm", "fresh"),
        default="warm",
        help="warm: forked from a template, as in JupyterLab, nbval and mlops-workbook run; "
        "fresh: started the usual way, as make notebooks does for the committed outputs",
    )
    args = parser.parse_args()
    sizes = parse_sizes(args.sizes)
    config.apply_mlflow_env()
    if args.kernels == "fresh":
        os.environ[warmstart.SWITCH] = "0"  # as warmstart.disabled(); the workers inherit it
    warmstart.enable_here()  # as notebook 06's kernel has it: templates end with this process
    seq: dict[tuple[int, int], list[float]] = {s: [] for s in sizes}
    par: dict[tuple[int, int], list[float]] = {s: [] for s in sizes}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-break-even-") as tmp:
        os.environ[config.HOME_ENV] = str(Path(tmp, "ws"))
        folder = Path(tmp)
        days = Days()
        for k in range(2):  # untimed: this process's template, and papermill's first import
            seconds = one_after_another(items_for(500, days.take(1)), folder / f"warm-up{k}")
            print(f"  warm-up {k + 1}: {seconds:.1f} s", file=sys.stderr, flush=True)
        for r in range(args.repeats):
            for rows, n in sizes:
                sides = [("seq", seq), ("dask", par)]
                for side, store in sides if r % 2 == 0 else sides[::-1]:
                    items = items_for(rows, days.take(n))
                    name = f"{side}_{rows}x{n}_{r}"
                    if side == "seq":
                        seconds = one_after_another(items, folder / name)
                    else:
                        seconds = on_dask(items, args.workers, name, folder)
                    store[(rows, n)].append(seconds)
                    print(f"  repeat {r + 1}: {rows} rows x {n} days, {side}: {seconds:.1f} s",
                          file=sys.stderr, flush=True)  # fmt: skip
    load = os.getloadavg()
    print(f"command: {' '.join(sys.argv)}")
    print(
        f"(notebook {NOTEBOOK}, one day per item; {args.kernels} kernel starts; Dask: a new "
        f"LocalCluster of {args.workers} workers per batch, its start included; "
        f"{os.cpu_count()} cores; repeats "
        f"{args.repeats}; load average at the end {load[0]:.1f}; "
        f"{time.perf_counter() - began:.0f} s in all)"
    )
    print(
        f"{'rows':>6} {'days':>4} {'one after another s':>20} {'Dask s':>8} "
        f"{'(min-max)':>13} {'ratio':>6}  faster"
    )
    lines: dict[int, list[tuple[int, float, float]]] = {}
    for rows, n in sizes:
        s, p = statistics.median(seq[(rows, n)]), statistics.median(par[(rows, n)])
        spread = f"{min(par[(rows, n)]):.1f}-{max(par[(rows, n)]):.1f}"
        print(
            f"{rows:>6} {n:>4} {s:>20.1f} {p:>8.1f} {spread:>13} {s / p:>6.2f}  "
            f"{'Dask' if p < s else 'one after another'}"
        )
        lines.setdefault(rows, []).append((n, s, p))
    print("ratio = one after another / Dask (median of each side): above 1 the batch is faster")
    for rows, points in lines.items():
        print(f"{rows} rows a day: {break_even(points)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
