"""This checkout against another one (a worktree of an earlier commit), in one run.

    git worktree add /tmp/before <commit> && make -C /tmp/before install
    .venv/bin/python benchmarks/against.py /tmp/before [--repeats 3]

What a restructure costs or saves, measured the same way on both sides, turns alternating
(before, after, before, after, ...) so that a busy spell of the shared machine hits both:
the whole workbook headless (`mlops-workbook run --no-report --no-progress`, each run in a
fresh workspace, warm templates drained first) and `mlops-workbook --help` (20 runs a
repeat). Prints the median of each side, its range and the ratio after / before.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def drain(tree: Path) -> None:
    """End the warm templates of earlier runs, so each run pays for its own, as a first does."""
    code = (
        "import importlib\n"
        "for name in ('mlops_helpers.workbook.warmstart', 'mlops_helpers.warmkernel'):\n"
        "    try:\n"
        "        importlib.import_module(name).drain_all(wait=30)\n"
        "        break\n"
        "    except ImportError:\n"
        "        pass\n"
    )
    subprocess.run([str(tree / ".venv/bin/python"), "-c", code], check=True, cwd=tree)


def workbook_seconds(tree: Path) -> float:
    """Wall time of the whole workbook headless in a fresh workspace of ``tree``."""
    drain(tree)
    with tempfile.TemporaryDirectory(prefix="bench-against-") as home:
        env = {**os.environ, "MLOPS_WORKBOOK_HOME": home}
        command = [str(tree / ".venv/bin/mlops-workbook"), "run", "--no-report", "--no-progress"]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{tree}: the workbook failed:\n{done.stderr[-2000:]}")
    return seconds


def help_seconds(tree: Path, runs: int = 20) -> float:
    """Median wall time of ``mlops-workbook --help`` in ``tree``."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([str(tree / ".venv/bin/mlops-workbook"), "--help"], capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def show(name: str, before: list[float], after: list[float], unit: str = "s") -> None:
    b, a = statistics.median(before), statistics.median(after)
    print(
        f"{name:<28} before {b:7.3f} {unit} ({min(before):.3f}-{max(before):.3f})   "
        f"after {a:7.3f} {unit} ({min(after):.3f}-{max(after):.3f})   after/before {a / b:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="the other checkout, with its .venv installed")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": ROOT}
    for tree in trees.values():
        if not (tree / ".venv/bin/mlops-workbook").is_file():
            sys.exit(f"{tree} has no .venv/bin/mlops-workbook: run make -C {tree} install")
    commit = {
        side: subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True
        ).stdout.strip()
        for side, tree in trees.items()
    }
    print(f"command: .venv/bin/python benchmarks/against.py {args.before} --repeats {args.repeats}")
    print(f"before: {commit['before']}   after: {commit['after']} (+ uncommitted changes, if any)")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    results: dict[str, dict[str, list[float]]] = {s: {"workbook": [], "help": []} for s in trees}
    for _ in range(args.repeats):
        for side, tree in trees.items():
            results[side]["workbook"].append(workbook_seconds(tree))
            results[side]["help"].append(help_seconds(tree))
    show("whole workbook headless", results["before"]["workbook"], results["after"]["workbook"])
    show("mlops-workbook --help", results["before"]["help"], results["after"]["help"])


if __name__ == "__main__":
    main()
