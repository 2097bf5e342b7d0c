"""Headless notebook execution with papermill: the whole workbook, in order, per run folder.

Parameters are checked against what each notebook declares (papermill's
``inspect_notebook``) and against :mod:`mlops_helpers.parameters` before anything runs.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_helpers.config import apply_mlflow_env, ensure_workspace, mark_headless, notebooks_dir
from mlops_helpers.parameters import RULES, ParameterError, check_parameter, coerce_text

KERNEL = "python3"
# The kernel's own log goes to its stderr, which a notebook that runs notebooks shows in a
# cell. ipykernel 7 logs a warning about loopback TCP without encryption at every start,
# and an error "KeyboardInterrupt caught in kernel" when jupyter_client's shutdown
# (interrupt, then shutdown request) finds it idle on a loaded machine. Neither is about
# the notebook: errors in cells still reach the caller through the messaging protocol.
KERNEL_ARGS = ["--IPKernelApp.log_level=CRITICAL"]


# The notebooks that take longest headless (about 40 and 20 s; benchmarks/RESULTS.md).
# Side by side they start first, so that both jobs end together: started in curriculum
# order, 06 begins when half the workbook is done and runs alone at the end.
START_FIRST = ("06_notebook_pipeline", "05_automated_deployment")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter a notebook declares in its ``parameters`` cell."""

    name: str
    kind: str
    default: str
    help: str


@dataclass
class NotebookResult:
    """How one notebook's run went."""

    notebook: str
    status: str
    seconds: float
    output: Path | None = None
    error: str = ""
    page: str = ""  # the executed notebook rendered to HTML, beside it (file name)


@dataclass(frozen=True)
class Chapter:
    """One notebook in the curriculum: its maturity level, minutes for a learner, its point."""

    title: str
    level: str
    minutes: int
    shows: str


# The map of the workbook, shown by notebook 00 and the README (a test keeps them in step).
# Levels: Google's "MLOps: continuous delivery and automation pipelines in ML" (0 manual,
# 1 pipeline automation and continuous training, 2 CI/CD). Minutes: reading, running and
# the exercises at a learner's pace; a headless run takes seconds.
CURRICULUM = {
    "00_start_here": Chapter(
        "Start here", "-", 10, "environment check, the data, parameters and papermill, this map"
    ),
    "01_manual_etl": Chapter(
        "Manual ETL",
        "0",
        20,
        "hand-run extract, clean and join; every injected fault passes silently",
    ),
    "02_manual_deployment": Chapter(
        "Manual deployment",
        "0",
        25,
        "train, pickle, copy, serve by hand: retrains differ, no gate, no rollback",
    ),
    "03_automated_etl": Chapter(
        "Automated ETL",
        "1",
        30,
        "data contracts, quarantine with reasons, atomic idempotent partitions, lineage, backfill",
    ),
    "04_tracked_training": Chapter(
        "Tracked training",
        "1",
        20,
        "reproducible training in MLflow: same seed, data and parameters, identical metrics",
    ),
    "05_automated_deployment": Chapter(
        "Automated deployment",
        "1-2",
        30,
        "registry aliases, evaluation gate, the candidate served and smoke-tested before promotion, rollback",
    ),
    "06_notebook_pipeline": Chapter(
        "Notebook pipeline",
        "1",
        20,
        "notebooks as pipeline steps under papermill; a parallel backfill on Dask",
    ),
    "07_monitoring_and_retraining": Chapter(
        "Monitoring and retraining",
        "1",
        25,
        "drift on new days triggers retraining; the champion changes only through the gate",
    ),
    "08_testing_in_ci": Chapter(
        "Testing in CI",
        "2",
        25,
        "how the workbook tests itself: nbval, papermill, data and behavioural model tests, CI",
    ),
    "09_proof_of_concept": Chapter(
        "Proof of concept",
        "-",
        20,
        "the business case, measured live: faults caught, time to detect and recover, steps",
    ),
}


def list_notebooks() -> list[Path]:
    """The workbook's notebooks (``NN_name.ipynb``), in order."""
    return sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))


def find_notebook(name: str) -> Path:
    """Resolve ``03``, ``03_automated_etl``, ``03_automated_etl.ipynb`` or a path to a notebook."""
    path = Path(name)
    if path.suffix == ".ipynb" and path.is_file():
        return path.resolve()
    stem = path.name.removesuffix(".ipynb")
    matches = [p for p in list_notebooks() if p.stem == stem or p.stem.split("_")[0] == stem]
    if len(matches) != 1:
        known = ", ".join(p.stem for p in list_notebooks())
        raise ParameterError(f"no notebook named {name!r}; choose one of: {known}")
    return matches[0]


def notebook_parameters(path: Path) -> dict[str, ParamSpec]:
    """The parameters a notebook declares: name, type, default and help."""
    import papermill

    found = papermill.inspect_notebook(str(path))
    return {
        name: ParamSpec(name, info["inferred_type_name"], info["default"], info["help"])
        for name, info in found.items()
    }


def typed_value(name: str, value: Any, spec: ParamSpec, source: str) -> Any:
    """Check one value against the notebook's declared type and the parameter's rule.

    Values from ``-p`` arrive as text and are converted to the declared type; values
    from a YAML file are already typed and must match it.
    """
    if source == "-p" and isinstance(value, str):
        value = coerce_text(name, value, spec.kind)
    expected = {"int": int, "float": (int, float), "bool": bool, "str": str}.get(spec.kind)
    wrong_bool = spec.kind != "bool" and isinstance(value, bool)
    if expected and (not isinstance(value, expected) or wrong_bool):
        raise ParameterError(f"parameter {name} ({source}) must be {spec.kind}, got {value!r}")
    if name in RULES:
        value = check_parameter(name, value)
    return float(value) if spec.kind == "float" else value


def plan_parameters(
    notebooks: list[Path],
    cli_values: dict[str, Any],
    file_values: dict[str, Any] | None = None,
    file_label: str = "-f",
) -> dict[Path, dict[str, Any]]:
    """Give each notebook the parameters it declares; reject names no notebook declares.

    ``cli_values`` (from ``-p``) win over ``file_values`` (from ``-f``).
    """
    sources = {name: file_label for name in file_values or {}}
    sources.update({name: "-p" for name in cli_values})
    values = {**(file_values or {}), **cli_values}
    specs = {nb: notebook_parameters(nb) for nb in notebooks}
    declared = {name for s in specs.values() for name in s}
    unknown = sorted(set(values) - declared)
    if unknown:
        names = ", ".join(p.stem for p in notebooks)
        where = ", ".join(f"{n} ({sources[n]})" for n in unknown)
        raise ParameterError(
            f"parameter(s) {where} not declared by any selected notebook ({names}); "
            "see `mlops-workbook params NOTEBOOK` for what each accepts"
        )
    return {
        nb: {
            name: typed_value(name, value, spec[name], sources[name])
            for name, value in values.items()
            if name in spec
        }
        for nb, spec in specs.items()
    }


def new_run_dir() -> Path:
    """A fresh folder for one run under ``<workspace>/runs``, named by time and a random tag."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return ensure_workspace("runs", f"{stamp}-{secrets.token_hex(2)}")


def describe_failure(exc: Exception) -> str:
    cell = getattr(exc, "cell_index", None)
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    where = f"cell {cell}" if cell is not None else "before the first cell"
    return f"{where}: {ename}: {evalue}".strip()


# What jupyter_client raises when a kernel ends before answering, before any cell ran.
KERNEL_NEVER_READY = "Kernel died before replying to kernel_info"


def execute_notebook(notebook: Path, output: Path, parameters: dict[str, Any]) -> None:
    """Execute one notebook with papermill (kernel ``python3``, cwd = notebooks folder),
    in a warm kernel unless warm starts are off (:func:`mlops_helpers.warmkernel.enable_here`).

    A kernel that dies before it answers is started once more: jupyter_client picks free
    TCP ports for a kernel in this process and the kernel binds them a moment later, so
    another process starting up at the same time (a Dask worker, another kernel) can take
    one first ("Address already in use"). No cell has run then; a kernel that fails twice
    raises as before.
    """
    import papermill

    from mlops_helpers import warmkernel

    warmkernel.enable_here()
    apply_mlflow_env()
    mark_headless()
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
            # Render what finished while the next notebooks already run (about 0.7 s each),
            # not all at the end and not before a job takes its next notebook.
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


def summary_table(results: list[NotebookResult], wall: float | None = None) -> str:
    """A plain-text table: notebook, status, seconds; the sum, and the wall clock if given."""
    width = max([len(r.notebook) for r in results] + [8])
    lines = [f"{'notebook':<{width}}  {'status':<7}  {'seconds':>7}"]
    for r in results:
        lines.append(f"{r.notebook:<{width}}  {r.status:<7}  {r.seconds:7.1f}")
    total = sum(r.seconds for r in results)
    lines.append(f"{'total':<{width}}  {'':<7}  {total:7.1f}")
    if wall is not None:  # notebooks run side by side: the wall clock is what one waits
        lines.append(f"{'wall clock':<{width}}  {'':<7}  {wall:7.1f}")
    return "\n".join(lines)


def render_html(notebook: Path) -> str:
    """Render an executed notebook to HTML beside it; return the HTML file's name."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(notebook))
    target = notebook.with_suffix(".html")
    target.write_text(body)
    return target.name


def write_report(results: list[NotebookResult], run_dir: Path) -> Path:
    """Render each executed notebook to HTML and write ``index.html`` linking them."""
    import html

    rows = []
    for r in results:
        link = ""
        if r.output is not None and r.output.is_file():
            page = r.page or render_html(r.output)
            link = f'<a href="{html.escape(page)}">{html.escape(r.notebook)}</a>'
        rows.append(
            f"<tr class={r.status}><td>{link or html.escape(r.notebook)}</td><td>{r.status}</td>"
            f"<td>{r.seconds:.1f}</td><td>{html.escape(r.error)}</td></tr>"
        )
    index = run_dir / "index.html"
    index.write_text(
        f"<!doctype html><meta charset=utf-8><title>workbook run {run_dir.name}</title>"
        "<style>body{font-family:sans-serif}td,th{padding:4px 8px;border-bottom:1px solid #ddd}"
        f".failed{{background:#fdd}}</style><h1>workbook run {html.escape(run_dir.name)}</h1>"
        "<table><tr><th>notebook</th><th>status</th><th>seconds</th><th>error</th></tr>"
        + "".join(rows)
        + "</table>\n"
    )
    return index


def refresh_notebook(path: Path, timeout: int = 600) -> None:
    """Re-execute a committed notebook in place, in a fresh empty workspace, with no timing
    metadata, so its stored outputs are exactly what nbval will compare against."""
    import nbformat
    from nbclient import NotebookClient

    from mlops_helpers import warmkernel

    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="mlops-refresh-") as home:
        previous = os.environ.get("MLOPS_WORKBOOK_HOME")
        os.environ["MLOPS_WORKBOOK_HOME"] = home
        apply_mlflow_env()
        mark_headless()
        try:
            with warmkernel.disabled():  # committed outputs come from fresh kernels
                NotebookClient(
                    nb,
                    kernel_name=KERNEL,
                    timeout=timeout,
                    record_timing=False,
                    extra_arguments=KERNEL_ARGS,
                    resources={"metadata": {"path": str(path.parent)}},
                ).execute()
        finally:
            if previous is None:
                os.environ.pop("MLOPS_WORKBOOK_HOME", None)
            else:
                os.environ["MLOPS_WORKBOOK_HOME"] = previous
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
    nbformat.write(nb, path)
