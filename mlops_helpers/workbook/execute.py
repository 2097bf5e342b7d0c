"""Headless notebook execution with papermill: one notebook, or several side by side into
one run folder."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_helpers.config import (
    KERNEL,
    apply_mlflow_env,
    ensure_workspace,
    mark_headless,
    notebooks_dir,
)

# The kernel's own log goes to its stderr, which a notebook that runs notebooks shows in a
# cell. ipykernel 7 logs a warning about loopback TCP without encryption at every start
# (where warm starts are off and kernels talk TCP), and an error "KeyboardInterrupt caught
# in kernel" when jupyter_client's shutdown (interrupt, then shutdown request) finds it
# idle on a loaded machine. Neither is about the notebook: errors in cells still reach the
# caller through the messaging protocol.
KERNEL_ARGS = ["--IPKernelApp.log_level=CRITICAL"]


# The notebooks that take longest headless (their times: benchmarks/RESULTS.md). 06 and 05
# start first, 12 takes the first free job, so that both jobs end together on short
# notebooks: in curriculum order 12 began when the rest was nearly done and ran alone at
# the end. Started beside 06 at once, the two slowed each other most (RESULTS.md).
START_FIRST = ("06_notebook_pipeline", "05_automated_deployment", "12_live_endpoint")


@dataclass
class NotebookResult:
    """How one notebook's run went."""

    notebook: str
    status: str
    seconds: float
    output: Path | None = None
    error: str = ""
    page: str = ""  # the executed notebook rendered to HTML, beside it (file name)


def new_run_dir(parent: Path | None = None) -> Path:
    """A fresh folder for one run, named by time and a random tag, in ``parent`` (created if
    needed) or else ``<workspace>/runs``; every command's run folders are made here."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = (parent or ensure_workspace("runs")) / f"{stamp}-{secrets.token_hex(2)}"
    run_dir.mkdir(parents=True)
    return run_dir


def describe_failure(exc: Exception) -> str:
    cell = getattr(exc, "cell_index", None)
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    where = f"cell {cell}" if cell is not None else "before the first cell"
    return f"{where}: {ename}: {evalue}".strip()


# What jupyter_client raises when a kernel ends before answering, before any cell ran.
KERNEL_NEVER_READY = "Kernel died before replying to kernel_info"


class RetriedKernelStart(logging.Filter):
    """Drops nbclient's log line (through papermill's logger) for a kernel that died before
    it answered: :func:`execute_notebook` starts it once more, and a second failure raises
    with the same message, so the line only put a false error on the caller's stderr (a
    learner's cell that runs a pipeline, say)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return KERNEL_NEVER_READY not in record.getMessage()


def _quiet_retried_kernel_starts() -> None:
    log = logging.getLogger("papermill")
    if not any(isinstance(f, RetriedKernelStart) for f in log.filters):
        log.addFilter(RetriedKernelStart())


def execute_notebook(notebook: Path, output: Path, parameters: dict[str, Any]) -> None:
    """Execute one notebook with papermill (kernel ``python3``, cwd = notebooks folder),
    in a warm kernel unless warm starts are off (:func:`mlops_helpers.workbook.warmstart.enable_here`).

    A kernel that dies before it answers is started once more: where a kernel talks TCP
    (warm starts off: the workbook's provisioner gives kernels Unix sockets, see
    :mod:`mlops_helpers.workbook.warmstart.provisioner`), jupyter_client picks free ports in
    this process and the kernel binds them a moment later, so another process can take one
    first ("Address already in use"). No cell has run then; a kernel that fails twice raises
    as before.
    """
    import papermill

    from mlops_helpers.workbook import warmstart

    warmstart.enable_here()
    apply_mlflow_env()
    mark_headless()
    _quiet_retried_kernel_starts()
    for attempt in (1, 2):
        try:
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters=parameters,
                kernel_name=KERNEL,
                # The kernel starts in the notebooks folder. Not papermill's cwd=, which
                # chdirs the whole process: two notebooks run in threads would leave it in
                # the wrong folder.
                resources={"metadata": {"path": str(notebooks_dir())}},
                progress_bar=False,
                log_output=False,
                extra_arguments=KERNEL_ARGS,
            )
            return
        except RuntimeError as exc:
            if attempt == 2 or KERNEL_NEVER_READY not in str(exc):
                raise


def progress_bar():
    """tqdm's bar class: a widget in Jupyter when ipywidgets is installed, text otherwise.

    ``tqdm.auto`` in a kernel without ipywidgets warns on stderr ("IProgress not found")
    at import, and fails when a bar is shown; the text bar works everywhere.
    """
    import importlib.util

    if importlib.util.find_spec("ipywidgets") is None:
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm


def run_workbook(
    notebooks: list[Path],
    plan: dict[Path, dict[str, Any]],
    run_dir: Path,
    progress: bool = True,
    jobs: int = 1,
    render: bool = False,
) -> list[NotebookResult]:
    """Run notebooks into ``run_dir``, ``jobs`` at a time; results in the order given.

    The notebooks are independent (each makes its own data and models), so two can run
    at once: one waits on a server or a kernel while the other computes. With more than
    one job the notebooks of :data:`START_FIRST` start first, the rest in order. After a
    failure nothing new starts; the notebooks not started are reported as skipped. With
    ``render``, each executed notebook is rendered to HTML beside it (``page``) once it
    ends, for :func:`write_report`.
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    tqdm = progress_bar()
    results: dict[Path, NotebookResult] = {}
    bar = tqdm(total=len(notebooks), desc="workbook", unit="nb", disable=not progress)
    queue = list(notebooks)
    if jobs > 1:
        first = [nb for name in START_FIRST for nb in queue if nb.stem == name]
        queue = first + [nb for nb in queue if nb not in first]
    finished: list[NotebookResult] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        running: dict = {}
        while queue or running:
            failed = any(r.status == "failed" for r in results.values())
            while queue and len(running) < jobs and not failed:
                nb = queue.pop(0)
                running[pool.submit(_run_one, nb, run_dir / nb.name, plan.get(nb, {}))] = nb
            # Render what finished while the next notebooks already run, not all at the end
            # and not before a job takes its next notebook.
            _render(finished)
            if not running:
                break
            bar.set_postfix_str(", ".join(nb.stem for nb in running.values()))
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                results[running.pop(future)] = result = future.result()
                if render:
                    finished.append(result)
                bar.update(1)
    _render(finished)
    bar.close()
    for nb in queue:
        results[nb] = NotebookResult(nb.stem, "skipped", 0.0)
    return [results[nb] for nb in notebooks]


def _render(finished: list[NotebookResult]) -> None:
    """Render each finished notebook's executed copy to HTML, then forget them."""
    from mlops_helpers.workbook.report import render_html  # report imports this module

    for result in finished:
        if result.output is not None and result.output.is_file():
            result.page = render_html(result.output)
    finished.clear()


def _run_one(notebook: Path, output: Path, parameters: dict[str, Any]) -> NotebookResult:
    """Execute one notebook and time it; a failure is a result, not an exception."""
    start = time.perf_counter()
    try:
        execute_notebook(notebook, output, parameters)
        return NotebookResult(notebook.stem, "ok", time.perf_counter() - start, output)
    except Exception as exc:  # noqa: BLE001 - reported per notebook, run stops
        return NotebookResult(
            notebook.stem, "failed", time.perf_counter() - start, output, describe_failure(exc)
        )
