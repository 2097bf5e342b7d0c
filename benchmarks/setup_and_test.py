"""Fresh set-up time and `make test` time, on a fresh clone of this repository's HEAD.

    .venv/bin/python benchmarks/setup_and_test.py [--skip-test] [--parts]

Set-up = `make install` in the clone: a new virtual environment and the locked install
(uv's package cache is warm after the first install on a machine; the first ever install
also downloads). Test = `make test` in the same clone, after install. ``--parts`` then
runs its two parts one after the other, each alone on the machine: the browser test
(`make test-lab`) and everything else (`make test` with ``PYTEST_ADDOPTS=--ignore=tests/lab``).

Beside each wall time: the core-seconds the machine was busy meanwhile (``/proc/stat``,
every process, so a shared machine's other work counts too) and the floor they set, busy
core-seconds over the cores: no schedule of that much work on these cores ends sooner. A
run near its floor is CPU-bound; only less work makes it faster.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORES = len(os.sched_getaffinity(0))


def busy_ticks() -> int:
    """Clock ticks every core has spent busy since boot (all of /proc/stat's cpu line but
    idle and iowait)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]


def timed(command: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float, str]:
    """Wall seconds of a command, the machine's busy core-seconds meanwhile, and its pytest
    summary line (else its last line)."""
    ticks, start = busy_ticks(), time.perf_counter()
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    elapsed = time.perf_counter() - start
    busy = (busy_ticks() - ticks) / os.sysconf("SC_CLK_TCK")
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    summary = [ln for ln in lines if " passed" in ln and ln.startswith("=")]
    return elapsed, busy, (summary or lines or [""])[-1]


def show(label: str, wall: float, busy: float, last: str) -> None:
    """One measured command: its wall time, the busy core-seconds and their floor."""
    print(
        f"{label:<48} {wall:6.1f} s  busy {busy:5.0f} core-s  floor {busy / CORES:5.0f} s"
        f"  ({last.strip('= ')})"
    )


def main() -> int:
    """Clone, install, test (and its parts); print the seconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-test", action="store_true")
    parser.add_argument("--parts", action="store_true", help="also time the two parts alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        install, _, _ = timed(["make", "install"], clone)
        print(f"command: {' '.join(sys.argv)}  ({CORES} cores)")
        print(f"fresh set-up (make install on a clean clone, warm package cache): {install:.1f} s")
        if args.skip_test:
            return 0
        show("make test after install", *timed(["make", "test"], clone))
        if args.parts:
            show("  its browser test alone (make test-lab)", *timed(["make", "test-lab"], clone))
            rest = timed(["make", "test"], clone, {"PYTEST_ADDOPTS": "--ignore=tests/lab"})
            show("  the rest alone (make test, tests/lab ignored)", *rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
