"""The whole workbook headless (`mlops-workbook run`) against the `papermill` command run
notebook by notebook, one after another, as a user without the workbook would.

    .venv/bin/python benchmarks/papermill_loop.py [--repeats 1]

Each side runs every notebook in a fresh workspace of its own, turn about (loop, run, loop,
run, ...) so that a busy spell of the shared machine hits both; warm templates of earlier
runs are ended first, so each side starts as on a fresh machine. The loop's kernels start
the usual way (the papermill command knows nothing of warm starts). Prints the median of
each side, its range, and how many times faster the workbook is (the goal: 2.5x).
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

from mlops_helpers.workbook import warmstart

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def timed(commands: list[list[str]]) -> float:
    """Wall time of ``commands`` run one after another in a fresh workspace."""
    warmstart.drain_all(wait=30)
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as home:
        env = {**os.environ, "MLOPS_WORKBOOK_HOME": home}
        env.pop(warmstart.SWITCH, None)
        start = time.perf_counter()
        for command in commands:
            command = [part.replace("{home}", home) for part in command]
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-2000:]}")
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    loop = [
        [str(BIN / "papermill"), "-k", "python3", "--cwd", "notebooks", str(nb),
         f"{{home}}/{nb.name}"]
        for nb in NOTEBOOKS
    ]  # fmt: skip
    run = [[str(BIN / "mlops-workbook"), "run", "--no-report", "--no-progress"]]
    print(f"command: {' '.join(sys.argv)}  ({len(NOTEBOOKS)} notebooks, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start)")  # fmt: skip
    sides: dict[str, list[float]] = {"papermill loop": [], "mlops-workbook run": []}
    for _ in range(args.repeats):
        sides["papermill loop"].append(timed(loop))
        sides["mlops-workbook run"].append(timed(run))
    for name, times in sides.items():
        print(f"{name:<20} median {statistics.median(times):6.1f} s "
              f"(min {min(times):.1f}, max {max(times):.1f})")  # fmt: skip
    ratio = statistics.median(sides["papermill loop"]) / statistics.median(
        sides["mlops-workbook run"]
    )
    print(f"mlops-workbook run is {ratio:.2f}x faster than the loop (goal: at least 2.5x)")


if __name__ == "__main__":
    main()
