"""The whole workbook headless (`mlops-workbook run`) against its floor.

    .venv/bin/python benchmarks/workbook_run.py [--repeats 3] [--jobs 2]

The workbook side is the command as a user runs it (two notebooks at a time by default).
Floor: the same notebooks' code exported with nbconvert and run as plain Python scripts
one after another (no kernel protocol, no papermill), plus one kernel start each. Each
repeat uses a fresh workspace for both sides. Prints total and per-notebook medians,
min, max, and the ratio workbook / floor; and the workbook's CPU time (user + system, of
every process it started, kernels forked from a warm template included), which divided by
the cores is the least wall time any schedule of the same work can reach. Each workbook
run starts with no kernel template process, as on a fresh machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlops_helpers.workbook import warmstart

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def workbook(home: str, jobs: int) -> dict[str, float]:
    """Seconds per notebook of one `mlops-workbook run --jobs N`, from its summary table."""
    env = {**os.environ, "MLOPS_WORKBOOK_HOME": home}
    warmstart.drain_all(wait=30)  # each run starts its own templates, as a first run does
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "mlops-workbook"), "run", "--no-progress", "--jobs", str(jobs)],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    total = time.perf_counter() - start
    seconds = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "ok":
            seconds[parts[0]] = float(parts[2])
    seconds["total (wall)"] = total
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # Kernels forked from a template process are its children, not ours: add the templates'
    # CPU, their own (the imports) and their ended kernels'.
    seconds["cpu"] += sum(warmstart.cpu_seconds(pid) for pid in warmstart.templates())
    return seconds


def export_scripts(folder: Path) -> list[Path]:
    """Each notebook's code as a script (nbconvert's PythonExporter)."""
    from nbconvert import PythonExporter

    from mlops_helpers.workbook.curriculum import list_notebooks

    scripts = []
    for nb in list_notebooks():
        body, _ = PythonExporter().from_filename(str(nb))
        script = folder / f"{nb.stem}.py"
        script.write_text(body)
        scripts.append(script)
    return scripts


def kernel_start() -> float:
    """Seconds to start a python3 kernel and get its first reply, then stop it."""
    from jupyter_client.manager import start_new_kernel

    start = time.perf_counter()
    km, kc = start_new_kernel(kernel_name="python3")
    elapsed = time.perf_counter() - start
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    return elapsed


def floor(home: str, scripts: list[Path]) -> dict[str, float]:
    """Seconds per script run by Python in the notebooks folder, plus one kernel start."""
    env = {**os.environ, "MLOPS_WORKBOOK_HOME": home, "MPLBACKEND": "Agg"}
    seconds = {}
    boot = kernel_start()
    for script in scripts:
        start = time.perf_counter()
        # run_name keeps it from being __main__: Dask's spawned workers re-import __main__.
        code = (
            "import runpy; from IPython.display import display; "
            f"runpy.run_path({str(script)!r}, {{'display': display}}, run_name='floor')"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT / "notebooks", env=env, capture_output=True,
            text=True,
        )  # fmt: skip
        if done.returncode:
            raise SystemExit(f"{script.name} failed as a script:\n{done.stderr[-2000:]}")
        seconds[script.stem] = time.perf_counter() - start + boot
    seconds["total (wall)"] = sum(seconds.values())
    return seconds


def main() -> int:
    """Alternate workbook and floor runs; print medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--jobs", type=int, default=2, help="notebooks at once (the command's default)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scripts = export_scripts(Path(tmp))
        runs_wb, runs_fl = [], []
        for i in range(args.repeats):
            runs_wb.append(workbook(tempfile.mkdtemp(dir=tmp, prefix=f"wb{i}-"), args.jobs))
            runs_fl.append(floor(tempfile.mkdtemp(dir=tmp, prefix=f"fl{i}-"), scripts))
    print(f"command: {' '.join(sys.argv)}  (repeats {args.repeats}, workbook --jobs {args.jobs})")
    print("per notebook: its own seconds (with --jobs 2 two notebooks share the cores);")
    print("total (wall): the workbook's wall clock against the floor's scripts run one by one")
    print(f"{'notebook':<28} {'workbook s':>10} {'min':>6} {'max':>6} {'floor s':>8} {'ratio':>6}")
    cpu = [r.pop("cpu") for r in runs_wb]
    for name in runs_wb[0]:
        wb = [r[name] for r in runs_wb]
        fl = [r.get(name, float("nan")) for r in runs_fl]
        mw, mf = statistics.median(wb), statistics.median(fl)
        print(f"{name:<28} {mw:10.1f} {min(wb):6.1f} {max(wb):6.1f} {mf:8.1f} {mw / mf:6.2f}")
    cores = os.cpu_count() or 1
    print(
        f"workbook CPU time (user + system, all its processes): median {statistics.median(cpu):.1f}"
        f" s (min {min(cpu):.1f}, max {max(cpu):.1f}); on {cores} cores no schedule of this work"
        f" finishes in less than {statistics.median(cpu) / cores:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
