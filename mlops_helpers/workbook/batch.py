"""Batch runs: one notebook or pipeline over a grid of parameters, in parallel on Dask.

Items run on a Dask distributed cluster: a ``LocalCluster`` on loopback sized to the
machine by default, or any scheduler address (``tcp://host:8786``). A failed item does
not stop the others. Each item's executed notebook is kept, rendered to HTML, and listed
in ``results.csv``, ``results.json`` and ``index.html``. Rerunning the same grid skips
items that already completed with the same parameters, so a killed batch resumes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlops_helpers import parameters
from mlops_helpers.config import HOME_ENV, TRACKING_URI_ENV, workspace_path
from mlops_helpers.parameters import (
    ParameterError,
    check_name,
    check_parameter,
)
from mlops_helpers.storage import atomic_write
from mlops_helpers.workbook import execute, page, report, workspace_lock
from mlops_helpers.workbook.processes import HOST
from mlops_helpers.workbook.specs import (
    SpecError,
    at,
    clean,
    file_name,
    file_text,
    load_spec,
    notebook_beside,
    where,
)

RESULT = "result.json"
PORT_RACE = "Address already in use"
GRID_KEYS = {"name", "notebook", "pipeline", "parameters", "grid"}
# A batch beyond this many items is almost always a typo (an axis of days times an axis of
# seeds times ...); a bigger backfill is split into grids, which also resume separately.
MAX_ITEMS = 1000
# How long an unreachable --scheduler may take to say so, instead of Dask's own retries.
SCHEDULER_TIMEOUT = 3.0
# What Dask's nanny sets before it spawns a worker, for the worker's own computations: one
# BLAS thread, malloc trimming, a fixed hash seed. It sets them in its own process, which
# for a LocalCluster is the caller's: cluster_client puts the caller's values back, so the
# kernels the caller starts later are set up as before. An item's kernel is not one of the
# worker's computations either: on a cluster of this machine it gets the caller's values
# too, so it is set up as the kernels the caller starts itself (notebook 06's by-hand loop)
# and forks from their warm template instead of starting one of its own (seconds of
# imports per worker set-up). On a remote scheduler the workers' own settings stand.
NANNY_ENV = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_",
    "PYTHONHASHSEED",
)  # fmt: skip


@dataclass(frozen=True)
class Item:
    """One run of a batch: a target and its parameters."""

    key: str
    target: str
    kind: str
    parameters: dict[str, Any]


@dataclass
class ItemResult:
    """How one item went."""

    key: str
    status: str
    seconds: float
    parameters: dict[str, Any]
    notebook: str = ""
    report: str = ""
    error: str = ""
    attempts: int = 1


@dataclass
class Batch:
    """A checked grid: where it writes and every item to run."""

    name: str
    path: Path
    items: list[Item]

    @property
    def out_dir(self) -> Path:
        """``<workspace>/batches/<name>``: stable, so a rerun finds finished items; refuses a
        name that could lead outside the workspace."""
        return workspace_path() / "batches" / check_name("grid name", self.name)


def _key(target: str, params: dict[str, Any]) -> str:
    text = json.dumps([target, params], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _axes(path: Path, grid: dict, cli_values: dict[str, str]) -> dict[str, list]:
    """The grid's axes, checked: non-empty lists without repeats, not also set by ``-p``,
    and a product of at most :data:`MAX_ITEMS` items (counted before it is built)."""
    axes = clean(grid)
    for name, values in axes.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"{where(path, grid)}: grid axis {name!r} must be a non-empty list")
        texts = [json.dumps(v, sort_keys=True, default=str) for v in values]
        twice = next((v for v, t in zip(values, texts, strict=True) if texts.count(t) > 1), None)
        if twice is not None:
            raise SpecError(
                f"{where(path, grid)}: grid axis {name!r} lists {twice!r} more than once; "
                "remove the repeat"
            )
        if name in cli_values:
            raise SpecError(
                f"{where(path, grid)}: -p {name} would give every item of grid axis {name!r} "
                f"the same value; drop -p {name}, or the axis"
            )
    count = math.prod(len(v) for v in axes.values())
    if count > MAX_ITEMS:
        sizes = " x ".join(f"{len(v)} {n}" for n, v in axes.items())
        raise SpecError(
            f"{where(path, grid)}: the grid makes {count} items ({sizes}), more than the "
            f"{MAX_ITEMS} a batch runs; split it into smaller grids"
        )
    return axes


def _unique(items: list[Item], path: Path, grid: dict) -> list[Item]:
    """``items``, or SpecError when two are the same run (same target and typed values)."""
    first: dict[str, int] = {}
    for i, item in enumerate(items, start=1):
        if item.key in first:
            raise SpecError(
                f"{where(path, grid)}: grid items {first[item.key]} and {i} are the same run "
                f"({item.parameters}); remove the values that repeat (1 and 1.0 are the same)"
            )
        first[item.key] = i
    return items


def load_grid(path: Path, cli_values: dict[str, str] | None = None) -> Batch:
    """Read and check a grid file: a notebook (or pipeline), fixed parameters, a grid."""
    path = Path(path)
    cli_values = cli_values or {}
    spec = load_spec(path, GRID_KEYS)
    name = file_name(path, spec, "grid")
    if ("notebook" in spec) == ("pipeline" in spec):
        raise SpecError(f"{where(path, spec)}: name exactly one of `notebook` or `pipeline`")
    fixed = spec.get("parameters") or {}
    grid = spec.get("grid") or {}
    for what, node in (("parameters", fixed), ("grid", grid)):
        if not isinstance(node, dict):
            raise SpecError(f"{where(path, spec)}: `{what}` must be a mapping")
    axes = _axes(path, grid, cli_values)
    combos = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
    combos = combos or [{}]
    if "notebook" in spec:
        items = _notebook_items(path, spec, fixed, grid, axes, combos, cli_values)
    else:
        items = _pipeline_items(path, spec, fixed, grid, combos, cli_values)
    return Batch(name, path, _unique(items, path, grid))


def _notebook_items(path, spec, fixed, grid, axes, combos, cli_values) -> list[Item]:
    """One item per combination, each value typed against the notebook's declaration."""
    try:
        notebook = notebook_beside(path, spec["notebook"])
    except ParameterError as exc:
        raise SpecError(f"{where(path, spec)}: {exc}") from None
    specs = parameters.notebook_parameters(notebook)
    for name in [*clean(fixed), *axes, *cli_values]:
        if name not in specs:
            node = grid if name in axes else fixed if name in fixed else spec
            raise SpecError(
                f"{where(path, node)}: parameter {name!r} is not declared by "
                f"{notebook.stem}; it declares: {', '.join(specs)}"
            )
    items = []
    for combo in combos:
        typed: dict[str, Any] = {}
        for n, v in {**clean(fixed), **combo}.items():  # an axis wins over a fixed value
            source = where(path, grid if n in axes else fixed)
            with at(source):
                typed[n] = parameters.check_value(n, v, specs[n], source)
        typed.update(parameters.text_values(cli_values, specs))  # -p wins
        items.append(Item(_key(notebook.name, typed), str(notebook), "notebook", typed))
    return items


def _pipeline_items(path, spec, fixed, grid, combos, cli_values) -> list[Item]:
    """One item per combination: the pipeline's values, typed by the steps that declare them
    (passed on typed, never turned back into ``-p`` text)."""
    from mlops_helpers.workbook import pipeline as pipelines

    try:
        given = file_text("pipeline", spec["pipeline"])
    except ParameterError as exc:
        raise SpecError(f"{where(path, spec)}: {exc}") from None
    target = (path.parent / given).resolve()
    if not target.is_file():
        target = Path(given).resolve()
    try:
        pipe = pipelines.load_pipeline(target, cli_values)
    except (SpecError, ParameterError) as exc:
        raise SpecError(f"{where(path, spec)}: pipeline {given}: {exc}") from None
    own = {n: v for n, v in clean(fixed).items() if n not in cli_values}  # -p wins
    pipe = pipelines.with_values(pipe, own, where(path, fixed))
    items = []
    for combo in combos:
        steps = pipelines.with_values(pipe, combo, where(path, grid)).steps
        typed = {
            n: next(s.parameters[n] for s in steps if n in s.parameters)
            for n in [*own, *combo, *cli_values]
        }
        items.append(Item(_key(str(target), typed), str(target), "pipeline", typed))
    return items


def _set_env(env: dict[str, str | None]) -> None:
    """Set ``env`` in this process; a None value unsets its variable."""
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def run_item(item: Item, item_dir: str, env: dict[str, str | None], retries: int = 3) -> dict:
    """Run one item (in a Dask worker); retry kernel port races; never raise."""
    _set_env(env)
    folder = Path(item_dir)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    attempts, error, notebook = 0, "", ""
    while attempts < retries:
        attempts += 1
        error = ""
        try:
            notebook = _execute(item, folder)
            break
        except Exception as exc:  # noqa: BLE001 - an item's failure is its result
            error = execute.describe_failure(exc)
            if PORT_RACE not in error:
                break
    status = "failed" if error else "ok"
    if not notebook and item.kind == "notebook" and (folder / Path(item.target).name).is_file():
        notebook = Path(item.target).name  # kept as papermill left it, with the failing cell
    page = (
        report.render_html(folder / notebook) if notebook and (folder / notebook).is_file() else ""
    )
    result = ItemResult(
        item.key, status, time.perf_counter() - start, item.parameters, notebook, page,
        error, attempts,
    )  # fmt: skip
    if status == "ok":  # the marker a rerun skips the item by: all of it, or none
        text = json.dumps(asdict(result), default=str)
        atomic_write(folder / RESULT, lambda tmp: tmp.write_text(text))
    return asdict(result)


def _execute(item: Item, folder: Path) -> str:
    if item.kind == "notebook":
        name = Path(item.target).name
        execute.execute_notebook(Path(item.target), folder / name, item.parameters)
        return name
    from mlops_helpers.workbook import pipeline as pipelines

    pipe = pipelines.load_pipeline(Path(item.target))
    pipe = pipelines.with_values(pipe, item.parameters, f"batch item {item.key}")
    results = pipelines.run_pipeline(pipe, folder, resume=True, progress=False)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise RuntimeError(f"step {failed[0].step}: {failed[0].error}")
    return results[-1].output


def check_scheduler(address: str, timeout: float = SCHEDULER_TIMEOUT) -> None:
    """ParameterError unless a TCP connection to the Dask scheduler ``address`` opens within
    ``timeout`` seconds (Dask itself retries for its whole connect timeout, then tracebacks)."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address
    if scheme not in ("tcp", "tls", "ws", "wss"):
        return  # not a TCP address (inproc://, ucx://): Dask checks it itself
    try:
        parts = urlsplit(f"{scheme}://{rest}")
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise ParameterError(
            f"--scheduler {address!r} is not a scheduler address; write it as "
            "tcp://HOST:PORT (e.g. tcp://127.0.0.1:8786)"
        )
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ParameterError(
            f"--scheduler {address}: nothing answers at {host}:{port} ({reason}, waited "
            f"{timeout:g} s); start the scheduler there (dask scheduler --port {port}), "
            "fix the address, or leave --scheduler out to run on a local cluster"
        ) from None
    if not _speaks_dask(f"{scheme}://{rest}", timeout):
        raise ParameterError(
            f"--scheduler {address}: {host}:{port} answers, but not as a Dask scheduler "
            "(its dashboard, often port 8787, is not the scheduler: that is usually 8786); "
            "pass the scheduler's own address"
        )


def _speaks_dask(address: str, timeout: float) -> bool:
    """True when ``address`` completes Dask's connection handshake within ``timeout``."""
    import asyncio

    from distributed.comm import connect

    async def handshake() -> None:
        comm = await connect(address, timeout=timeout)
        await comm.close()

    try:
        asyncio.run(asyncio.wait_for(handshake(), timeout + 1))
    except Exception:  # noqa: BLE001 - any failure (an HTTP server's reply read as a Dask
        return False  # frame fails as a MemoryError) means: not a scheduler we can use
    return True


def cluster_client(scheduler: str | None = None, n_workers: int | None = None):
    """A Dask client: on ``scheduler`` if given, else a LocalCluster of processes on loopback
    (whose workers start their kernels warm, :func:`mlops_helpers.workbook.warmstart.enable_here`)."""
    from dask.distributed import Client, LocalCluster

    from mlops_helpers.workbook import warmstart

    if scheduler:
        return Client(scheduler, timeout="10s")
    workers = n_workers or max(1, os.cpu_count() or 1)
    warmstart.enable_here()  # before the workers start: they inherit it
    caller = {key: os.environ.get(key) for key in NANNY_ENV}
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, host=HOST,
        dashboard_address=f"{HOST}:0", silence_logs=40,
    )  # fmt: skip
    _set_env(caller)  # the nannies set NANNY_ENV in this process as well: see there
    return Client(cluster)


def run_batch(
    batch: Batch,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool = True,
    client=None,
) -> list[ItemResult]:
    """Run every item not yet completed; write results.csv/json and index.html."""
    if scheduler and client is None:
        check_scheduler(scheduler)
    if n_workers is not None:
        check_parameter("n_workers", n_workers)
    out = batch.out_dir
    out.mkdir(parents=True, exist_ok=True)
    done: dict[str, ItemResult] = {}
    todo: list[Item] = []
    for item in batch.items:
        marker = out / item.key / RESULT
        if marker.is_file():
            done[item.key] = ItemResult(**{**json.loads(marker.read_text()), "status": "done"})
        else:
            todo.append(item)
    env = {HOME_ENV: str(workspace_path()), **workspace_lock.inherited_env()}
    for key in (TRACKING_URI_ENV, *_mlflow_keys()):
        if key in os.environ:
            env[key] = os.environ[key]
    if todo:
        for result in _run_on_dask(
            todo,
            out,
            env,
            scheduler,
            n_workers,
            client,
            progress,
            len(batch.items),
            len(done),
            batch.name,
        ):
            done[result.key] = result
    results = [done[item.key] for item in batch.items]
    write_reports(batch, results)
    return results


def _run_on_dask(todo, out, env, scheduler, n_workers, client, progress, total, initial, name):
    """Submit the items to Dask and yield their results as they complete."""
    from dask.distributed import as_completed

    tqdm = execute.progress_bar()
    own = client is None
    client = cluster_client(scheduler, n_workers) if own else client
    if client.cluster is not None:  # a LocalCluster: see NANNY_ENV
        env = {**env, **{key: os.environ.get(key) for key in NANNY_ENV}}
    try:
        # Workers start their kernels' template while they import papermill for the first item.
        client.run(_prestart_template, env)  # returns at once: it does not wait for imports
        tag = secrets.token_hex(4)  # a new key per submission: never a cached earlier result
        futures = {
            client.submit(
                run_item, item, str(out / item.key), env, key=f"item-{item.key}-{tag}", pure=False
            ): item
            for item in todo
        }
        with tqdm(
            total=total, initial=initial, desc=name, unit="item", disable=not progress
        ) as bar:
            for future in as_completed(futures):
                bar.update(1)
                try:
                    yield ItemResult(**future.result())
                except Exception as exc:  # noqa: BLE001 - e.g. its worker died: one failed item
                    item = futures[future]
                    yield ItemResult(item.key, "failed", 0.0, item.parameters, error=repr(exc))
    finally:
        if own:
            cluster = client.cluster
            client.close()
            if cluster is not None:
                cluster.close()


def _prestart_template(env: dict[str, str | None]) -> None:
    """In a worker: start the warm template its items' kernels will use (see
    :func:`mlops_helpers.workbook.warmstart.prestart`), with the environment :func:`run_item` sets."""
    from mlops_helpers.config import apply_mlflow_env, mark_headless
    from mlops_helpers.workbook import warmstart

    _set_env(env)
    apply_mlflow_env()
    mark_headless()
    warmstart.prestart()


def _mlflow_keys() -> tuple[str, ...]:
    from mlops_helpers.config import MLFLOW_ENV

    return tuple(MLFLOW_ENV)


def write_reports(batch: Batch, results: list[ItemResult]) -> None:
    """results.csv, results.json and index.html (linking each executed notebook's HTML)."""
    import pandas as pd

    out = batch.out_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "key": r.key, **r.parameters, "status": r.status, "seconds": round(r.seconds, 2),
            "attempts": r.attempts, "notebook": f"{r.key}/{r.notebook}" if r.notebook else "",
            "report": f"{r.key}/{r.report}" if r.report else "", "error": r.error,
        }
        for r in results
    ]  # fmt: skip
    table = pd.DataFrame(rows)
    table.to_csv(out / "results.csv", index=False)
    (out / "results.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
    cells = []
    for row in rows:
        executed = page.link(row["report"], "notebook") if row["report"] else ""
        params = ", ".join(f"{k}={v}" for k, v in row.items() if k in results[0].parameters)
        cells.append(
            page.Row([params, row["status"], row["seconds"], executed, row["error"]], row["status"])
        )
    ok = sum(r["status"] != "failed" for r in rows)
    body = (
        page.paragraph(f"{len(rows)} items, {ok} ok"),
        page.table(["parameters", "status", "seconds", "executed", "error"], cells),
    )
    page.write_page(out / "index.html", page.page(f"batch {batch.name}", *body))
