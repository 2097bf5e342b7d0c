"""Run every benchmark and write benchmarks/RESULTS.md (what `make bench` does).

    .venv/bin/python benchmarks/run_all.py [--quick]

Each benchmark is a script that measures and prints its own numbers with the command
that produced them; this collects their output with the machine, date and versions.
``--quick`` passes fewer repeats (for a first look, not for quoting).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGES = (
    "mlflow",
    "papermill",
    "nbval",
    "pandas",
    "pandera",
    "scikit-learn",
    "dask",
    "distributed",
)

BENCHMARKS = [
    (
        "Whole workbook headless against its floor",
        "workbook_run.py",
        ["--repeats", "3"],
        ["--repeats", "1"],
    ),
    (
        "Automated ETL at 1,000,000 rows per day against bare pandas",
        "etl_throughput.py",
        ["--repeats", "3"],
        ["--repeats", "1", "--rows", "200000"],
    ),
    (
        "Batch of 8 runs on 2 workers against a sequential papermill loop",
        "batch_speedup.py",
        ["--repeats", "3"],
        ["--repeats", "1"],
    ),
    (
        "Deploy lead time and serving latency",
        "deploy_latency.py",
        ["--deploys", "3", "--requests", "500"],
        ["--deploys", "1", "--requests", "100"],
    ),
    ("Fresh set-up and make test", "setup_and_test.py", [], ["--skip-test"]),
]


def machine() -> list[str]:
    """A few lines that describe this machine and software."""
    mem = "?"
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        kb = int(meminfo.read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in PACKAGES)
    return [
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {mem} memory, {platform.system()} {platform.release()}",
        f"- python {platform.python_version()}; {versions}",
    ]


def main() -> int:
    """Run each benchmark in turn; write RESULTS.md even when one fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    out = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`benchmarks/run_all.py`)."
        " Medians of several runs, measured in one session on a shared, noisy machine:"
        " compare ratios within a run, not absolute seconds across runs.",
        "",
        *machine(),
        "",
    ]
    for title, script, full, quick in BENCHMARKS:
        argv = [sys.executable, str(HERE / script), *(quick if args.quick else full)]
        print(f"== {title}: {' '.join(argv[1:])}", flush=True)
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True)
        took = time.perf_counter() - start
        text = done.stdout.strip() or "(no output)"
        if done.returncode:
            text += f"\n\nFAILED with exit code {done.returncode}:\n{done.stderr.strip()[-1500:]}"
        print(text, flush=True)
        out += [
            f"## {title}",
            "",
            f"`.venv/bin/python benchmarks/{script} {' '.join(argv[2:])}` ({took:.0f} s)",
            "",
            "```",
            text,
            "```",
            "",
        ]
    (HERE / "RESULTS.md").write_text("\n".join(out))
    print(f"wrote {HERE / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
