"""Where a command's CPU goes: its core-seconds by kind of process.

    .venv/bin/python benchmarks/cpu_by_process.py -- make test-lab
    .venv/bin/python benchmarks/cpu_by_process.py --interval 0.5 -- .venv/bin/pytest tests/unit

Runs the command and, once every ``--interval`` seconds until it ends, reads every process
of this user's in ``/proc``: its name (``/proc/PID/comm``, which a warm-forked kernel or
server sets: ``ipykernel``, ``uvicorn``, ``mlops-warmstart``) and its command line. A process
counts with the last CPU time seen of it, so one that lives less than an interval is
missed or undercounted: the total beside the machine's busy core-seconds says how much.
A process that ran before the command counts only with what it used meanwhile.
Each process is put in one kind (:data:`KINDS`, first match wins, on the name and the
command line); the rest are listed by name.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time
from pathlib import Path

from setup_and_test import busy_ticks  # a sibling script: benchmarks/ is sys.path[0]

HZ = os.sysconf("SC_CLK_TCK")
UID = os.getuid()

# (kind, text in "name | command line"), first match wins.
KINDS = (
    ("Chromium (the browser test)", "chrom"),
    ("JupyterLab's server", "jupyter-lab"),
    ("kernels started the usual way (ipykernel_launcher)", "ipykernel_launcher"),
    ("kernels forked from a warm template", "ipykernel |"),
    ("scoring servers forked from a warm template", "uvicorn | "),
    ("warm templates (their imports)", "mlops-warmstart |"),
    ("warm templates (their imports)", "-m mlops_helpers.workbook.warmstart"),
    ("MLflow tracking servers", "mlflow server"),
    ("MLflow tracking servers", "mlflow.server"),
    ("mlops-workbook commands", "mlops_helpers.workbook.cli"),
    ("mlops-workbook commands", "bin/mlops-workbook"),
    ("pytest-xdist workers (tests in-process)", "-c import sys;exec(eval(sys.stdin"),
    ("nginx", "nginx"),
    ("Dask and multiprocessing workers", "distributed"),
    ("Dask and multiprocessing workers", "multiprocessing"),
    ("pytest", "pytest"),
)


def kind_of(name: str, command: str) -> str:
    """The kind a process counts under (its name when none of KINDS matches)."""
    both = f"{name} | {command}"
    return next((kind for kind, text in KINDS if text in both), f"other: {name}")


def sample(seen: dict[tuple[int, int], list]) -> None:
    """Record the CPU seconds of every process of this user's that is running now, by
    (pid, start time): a pid the system reuses is another process."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if entry.stat().st_uid != UID:
                continue
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            cpu, key = (int(fields[11]) + int(fields[12])) / HZ, (pid, int(fields[19]))
            if key not in seen:
                name = Path(f"/proc/{pid}/comm").read_text().strip()
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                seen[key] = [cpu, kind_of(name, command.decode(errors="replace"))]
            else:
                seen[key][0] = cpu
        except (OSError, ValueError):
            continue


def main() -> int:
    """Run the command, sample, print the core-seconds by kind."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or args.interval <= 0:
        parser.error("give a positive --interval and a command after --")
    seen: dict[tuple[int, int], list] = {}
    sample(seen)  # what ran before the command counts only with what it uses meanwhile
    before = {key: cpu for key, (cpu, _) in seen.items()}
    ticks, start = busy_ticks(), time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as child:
        while child.poll() is None:
            sample(seen)
            time.sleep(args.interval)
    wall, busy = time.perf_counter() - start, (busy_ticks() - ticks) / HZ
    totals = collections.Counter()
    for key, (cpu, kind) in seen.items():
        if key[0] != os.getpid():
            totals[kind] += cpu - before.get(key, 0.0)
    print(f"command: {' '.join(sys.argv)}")
    print(f"{' '.join(command)}: exit {child.returncode}, {wall:.1f} s")
    print(f"machine busy {busy:.0f} core-s; counted below {sum(totals.values()):.0f} core-s")
    for kind, cpu in totals.most_common():
        if cpu >= 0.5:
            print(f"{cpu:8.1f}  {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
