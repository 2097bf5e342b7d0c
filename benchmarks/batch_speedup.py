"""A batch of N notebook runs on a Dask LocalCluster against the same N runs as a sequential
loop of the ``papermill`` command; and the pipeline runner against papermill called directly.

    .venv/bin/python benchmarks/batch_speedup.py [--runs 8] [--workers 2] [--rows 500] [--repeats 1]

The runs are notebook 03 (automated ETL) for N consecutive days, one day each, as in a
backfill. The sequential side is what a person scripts by hand: one ``papermill`` process
per notebook, one after another. The batch side is ``batch.run_batch`` on a fresh
``LocalCluster`` (cluster start, worker warm-up and the HTML rendering of every executed
notebook included), with warm kernel starts as ``mlops-workbook batch`` has them (the
start of its own template included); the ``papermill`` commands start kernels the usual
way. Then the daily steps (03 -> 04) through ``pipeline.run_pipeline`` (parameter checks,
state file, MLflow runs and artifacts) against the same notebooks through
``papermill.execute_notebook``, both with warm kernel starts: that ratio is the runner's
own cost. Everything runs in a throw-away workspace.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from mlops_helpers import config
from mlops_helpers.workbook import batch, curriculum, execute, pipeline, warmstart

NOTEBOOK = "03_automated_etl"
FIRST_DAY = dt.date(2026, 2, 1)


def days(n: int, offset: int) -> list[str]:
    """``n`` consecutive days; ``offset`` keeps each repeat's days (and folders) apart."""
    return [(FIRST_DAY + dt.timedelta(days=offset + k)).isoformat() for k in range(n)]


def sequential_papermill(items: list[dict], out: Path) -> float:
    """The loop of ``papermill`` commands, one after another; wall seconds."""
    papermill = Path(sys.executable).with_name("papermill")
    notebook = curriculum.find_notebook(NOTEBOOK)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for params in items:
        command = [str(papermill), "-k", "python3", "--cwd", str(notebook.parent), str(notebook)]
        command += [str(out / f"{params['start_day']}.ipynb")]
        for name, value in params.items():
            command += ["-p", name, str(value)]
        with warmstart.disabled():  # the papermill command starts kernels the usual way
            subprocess.run(command, check=True, capture_output=True, env=os.environ.copy())
    return time.perf_counter() - start


def dask_batch(items: list[dict], workers: int, name: str, folder: Path) -> float:
    """The same runs as one batch on a new LocalCluster of ``workers``; wall seconds."""
    spec = {
        "name": name,
        "notebook": NOTEBOOK,
        "parameters": {k: v for k, v in items[0].items() if k != "start_day"},
        "grid": {"start_day": [p["start_day"] for p in items]},
    }
    grid_file = folder / f"{name}.yaml"
    grid_file.write_text(yaml.safe_dump(spec))
    grid = batch.load_grid(grid_file)
    warmstart.drain_all(wait=30)  # the batch starts its own warm templates, as a first one does
    start = time.perf_counter()
    results = batch.run_batch(grid, n_workers=workers, progress=False)
    seconds = time.perf_counter() - start
    failed = [r for r in results if r.status != "ok"]
    if failed:
        raise RuntimeError(f"batch items failed: {failed[0].error}")
    return seconds


def warm_template() -> None:
    """Start (and stop) one kernel, so that this process's warm template is running."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", extra_arguments=execute.KERNEL_ARGS)
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def pipeline_vs_papermill(rows: int, folder: Path, repeat: int) -> tuple[float, float]:
    """The daily steps 03 -> 04 through the pipeline runner, then through papermill."""
    import papermill

    spec = {
        "name": f"bench_{repeat}",
        "parameters": {"seed": 42, "n_rows": rows, "start_day": "2026-03-01", "n_days": 1},
        "steps": [
            {"name": "etl", "notebook": NOTEBOOK, "parameters": {"fault": "none"}},
            {
                "name": "train",
                "notebook": "04_tracked_training",
                "after": ["etl"],
                "parameters": {"experiment": "bench"},
            },
        ],
    }
    path = folder / f"pipeline_{repeat}.yaml"
    path.write_text(yaml.safe_dump(spec))
    warm_template()  # neither side pays for starting the template the other then uses
    start = time.perf_counter()
    pipe = pipeline.load_pipeline(path)  # checks included in the runner's time
    results = pipeline.run_pipeline(pipe, pipeline.new_run_dir(pipe), progress=False)
    piped = time.perf_counter() - start
    assert all(r.status == "ok" for r in results), results
    direct_dir = folder / f"direct_{repeat}"
    direct_dir.mkdir()
    start = time.perf_counter()
    for step in pipe.steps:
        papermill.execute_notebook(
            str(step.notebook),
            str(direct_dir / f"{step.name}.ipynb"),
            parameters=step.parameters,
            kernel_name="python3",
            cwd=str(step.notebook.parent),
            progress_bar=False,
            extra_arguments=execute.KERNEL_ARGS,  # the runner's quiet kernel, for parity
        )
    return piped, time.perf_counter() - start


def show(name: str, times: list[float], per: int) -> None:
    print(
        f"{name:<34} {statistics.median(times):8.1f} {min(times):7.1f} {max(times):7.1f}"
        f" {statistics.median(times) / per:9.2f}"
    )


def main() -> int:
    """Time both comparisons ``repeats`` times (alternating sides) and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    config.apply_mlflow_env()
    warmstart.enable()  # as `mlops-workbook batch` and `pipeline` do
    seq, par, piped, direct = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        os.environ[config.HOME_ENV] = str(Path(tmp, "ws"))
        folder = Path(tmp)
        for r in range(args.repeats):
            base = {"seed": 42, "n_rows": args.rows, "n_days": 1, "fault": "none"}
            # separate days per side, so neither finds the other's raw extracts cached
            seq_items = [{**base, "start_day": d} for d in days(args.runs, 2 * r * args.runs)]
            par_items = [{**base, "start_day": d} for d in days(args.runs, (2 * r + 1) * args.runs)]
            seq.append(sequential_papermill(seq_items, folder / f"seq_{r}"))
            par.append(dask_batch(par_items, args.workers, f"bench_{r}", folder))
            p, d = pipeline_vs_papermill(args.rows, folder, r)
            piped.append(p)
            direct.append(d)
    print(f"command: {' '.join(sys.argv)}")
    print(
        f"({args.runs} runs of {NOTEBOOK}, {args.rows} rows, 1 day each; {args.workers} "
        f"workers; {os.cpu_count()} cores; repeats {args.repeats})"
    )
    print(f"{'side':<34} {'median s':>8} {'min s':>7} {'max s':>7} {'s per run':>9}")
    show(f"sequential loop of papermill ({args.runs})", seq, args.runs)
    show(f"Dask batch, {args.workers} workers ({args.runs})", par, args.runs)
    print(f"batch speed-up over the loop: {statistics.median(seq) / statistics.median(par):.2f}x")
    show("pipeline runner (03 -> 04)", piped, 2)
    show("papermill.execute_notebook (same)", direct, 2)
    overhead = statistics.median(piped) - statistics.median(direct)
    print(
        f"pipeline runner overhead: {overhead:+.1f} s per pipeline "
        f"({statistics.median(piped) / statistics.median(direct):.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
