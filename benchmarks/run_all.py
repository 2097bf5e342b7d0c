"""Run every benchmark and write benchmarks/RESULTS.md (what `make bench` does).

    .venv/bin/python benchmarks/run_all.py [--quick] [--only SCRIPT ...]

Each benchmark is a script that measures and prints its own numbers with the command
that produced them; this collects their output with the machine, date and versions.
``--quick`` passes fewer repeats (for a first look, not for quoting). ``--only`` runs the
named scripts and replaces just their sections of RESULTS.md, each marked with its own
date and machine, since it was not measured in the same session as the others.
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
        "Whole workbook headless against the papermill command, notebook by notebook",
        "papermill_loop.py",
        ["--repeats", "1"],
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
        "Where notebook 06's Dask backfill starts to pay",
        "dask_break_even.py",
        ["--repeats", "3"],
        ["--repeats", "1", "--sizes", "500x1,500x4"],
    ),
    (
        "Deploy lead time and serving latency",
        "deploy_latency.py",
        ["--deploys", "3", "--requests", "500"],
        ["--deploys", "1", "--requests", "100"],
    ),
    (
        "Scoring server under load: 1, 32 and 200 concurrent clients",
        "serving_load.py",
        ["--requests", "2000"],
        ["--requests", "300"],
    ),
    (
        "Dagster's overhead per step against calling the step directly",
        "orchestrator_overhead.py",
        ["--rows", "2000", "--repeats", "5"],
        ["--rows", "500", "--repeats", "1"],
    ),
    (
        "A 30-day backfill on Dagster: pipelined over 2 processes against one day after another",
        "orchestrator_backfill.py",
        ["--days", "30", "--rows", "100000"],
        ["--days", "3", "--rows", "2000"],
    ),
    (
        "Batch scoring of a 1,000,000-row day against an in-process pyfunc predict",
        "batch_scoring.py",
        ["--rows", "1000000", "--repeats", "5"],
        ["--rows", "20000", "--repeats", "1"],
    ),
    (
        "The production endpoint under load, through a switch and a rollback",
        "endpoint_load.py",
        ["--clients", "50", "--requests", "10000"],
        ["--clients", "8", "--requests", "300"],
    ),
    ("Fresh set-up and make test", "setup_and_test.py", ["--parts"], ["--skip-test"]),
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


def run(title: str, script: str, extra: list[str]) -> list[str]:
    """Run one benchmark, echo its output, and return its section of RESULTS.md."""
    argv = [sys.executable, str(HERE / script), *extra]
    print(f"== {title}: {' '.join(argv[1:])}", flush=True)
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    took = time.perf_counter() - start
    text = done.stdout.strip() or "(no output)"
    if done.returncode:
        text += f"\n\nFAILED with exit code {done.returncode}:\n{done.stderr.strip()[-1500:]}"
    print(text, flush=True)
    return [
        f"## {title}",
        "",
        f"`.venv/bin/python benchmarks/{script} {' '.join(extra)}` ({took:.0f} s)",
        "",
        "```",
        text,
        "```",
        "",
    ]


def replace_sections(text: str, sections: dict[str, list[str]]) -> str:
    """``text`` with each ``## title`` section in ``sections`` replaced (or appended)."""
    parts = text.split("\n## ")
    head, bodies = parts[0], parts[1:]
    out, done = [head.rstrip("\n") + "\n"], set()
    for body in bodies:
        title = body.split("\n", 1)[0]
        if title in sections:
            out.append("\n".join(sections[title]))
            done.add(title)
        else:
            out.append("## " + body.rstrip("\n") + "\n")
    out += ["\n".join(lines) for title, lines in sections.items() if title not in done]
    return "\n".join(out)


def main() -> int:
    """Run each benchmark in turn; write RESULTS.md even when one fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    scripts = [script for _, script, _, _ in BENCHMARKS]
    parser.add_argument("--only", nargs="+", choices=scripts, metavar="SCRIPT")
    args = parser.parse_args()
    chosen = [b for b in BENCHMARKS if not args.only or b[1] in args.only]
    results = HERE / "RESULTS.md"
    if args.only and results.is_file():
        sections = {}
        for title, script, full, quick in chosen:
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            lines = run(title, script, quick if args.quick else full)
            alone = f"Measured alone, not in the session above (load average before it: {load}):"
            sections[title] = [*lines[:2], alone, "", *machine(), "", *lines[2:]]
        results.write_text(replace_sections(results.read_text(), sections))
        print(f"updated {', '.join(args.only)} in {results}")
        return 0
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
    for title, script, full, quick in chosen:
        out += run(title, script, quick if args.quick else full)
    results.write_text("\n".join(out))
    print(f"wrote {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
