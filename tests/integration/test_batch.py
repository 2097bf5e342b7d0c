"""Batches on a real Dask LocalCluster over TCP on loopback: a bad item does not stop the
others, reports are written, reruns skip finished items, a killed batch completes only
what was missing, and bad grid files are refused naming the file and line."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from mlops_helpers import config
from mlops_helpers.workbook import batch, execute, warmstart
from mlops_helpers.workbook.specs import SpecError
from tests.support import CLI, UNLUCKY, make_notebook, ran, write_notebook

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client():
    """A real Dask cluster: two worker processes, scheduler and workers on 127.0.0.1 TCP."""
    client = batch.cluster_client(n_workers=2)
    assert client.scheduler.address.startswith("tcp://127.0.0.1:")
    yield client
    cluster = client.cluster
    client.close()
    cluster.close()


@pytest.fixture
def workspace(monkeypatch, tmp_path) -> Path:
    ws = tmp_path / "ws"
    monkeypatch.setenv(config.HOME_ENV, str(ws))
    return ws


def grid_file(folder: Path, text: str) -> Path:
    """A grid file beside a tiny notebook ``tiny.ipynb``."""
    write_notebook(folder / "tiny.ipynb", "tiny")
    path = folder / "grid.yaml"
    path.write_text(text)
    return path


def by_rows(results: list[batch.ItemResult]) -> dict[int, str]:
    return {r.parameters["n_rows"]: r.status for r in results}


def test_bad_item_is_listed_others_complete_and_reruns_skip_finished(client, workspace, tmp_path):
    path = grid_file(
        tmp_path,
        f"name: rows\nnotebook: tiny.ipynb\nparameters: {{seed: 1}}\n"
        f"grid:\n  n_rows: [10, 11, {UNLUCKY}, 12]\n",
    )
    grid = batch.load_grid(path)
    assert len(grid.items) == 4

    results = batch.run_batch(grid, client=client, progress=False)

    assert by_rows(results) == {10: "ok", 11: "ok", UNLUCKY: "failed", 12: "ok"}
    bad = next(r for r in results if r.status == "failed")
    assert bad.error.startswith("cell ")
    assert "ValueError: n_rows 13 is unlucky: this step fails on purpose" in bad.error
    out = grid.out_dir
    table = pd.read_csv(out / "results.csv")
    assert list(table["n_rows"]) == [10, 11, UNLUCKY, 12]
    assert list(table["status"]) == ["ok", "ok", "failed", "ok"]
    assert json.loads((out / "results.json").read_text())[2]["error"] == bad.error
    index = (out / "index.html").read_text()
    assert "4 items, 3 ok" in index
    for r in results:
        assert r.report, f"every executed notebook is rendered, the failed one too: {r}"
        assert f'<a href="{r.key}/{r.report}">' in index
        page = (out / r.key / r.report).read_text()
        assert ("n_rows 13 is unlucky" if r.status == "failed" else "done: seed 1") in page

    lost = next(r for r in results if r.parameters["n_rows"] == 11)
    (out / lost.key / batch.RESULT).unlink()  # as if killed before this item finished
    again = batch.run_batch(grid, client=client, progress=False)

    assert by_rows(again) == {10: "done", 11: "ok", UNLUCKY: "failed", 12: "done"}
    assert ran(workspace) == {
        "tiny seed=1 n_rows=10": 1,
        "tiny seed=1 n_rows=11": 2,
        f"tiny seed=1 n_rows={UNLUCKY}": 2,
        "tiny seed=1 n_rows=12": 1,
    }, "only the lost item and the failed one run again"


def test_an_items_kernel_is_set_up_as_the_callers_own_and_shares_its_template(
    workspace, tmp_path, monkeypatch
):
    """Dask's nanny sets one BLAS thread and a fixed hash seed before it spawns a worker, in
    its own process: the caller's, for a LocalCluster. The caller keeps its own values, and
    an item's kernel gets them too (batch.NANNY_ENV), as a kernel the caller starts itself
    has them, so it forks from the same warm template instead of starting one of its own."""
    for key in batch.NANNY_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the caller's own, not the nanny's 1
    caller = {key: os.environ.get(key) for key in batch.NANNY_ENV}
    probe = make_notebook(
        tmp_path / "probe.ipynb",
        "seed: int = 1\n",
        f"import json, os\nprint(json.dumps({{k: os.environ.get(k) for k in {batch.NANNY_ENV!r}}}))",
        "print(os.getppid())",  # a forked kernel's parent is its template
    )
    own = batch.cluster_client(n_workers=1)
    try:
        now = {key: os.environ.get(key) for key in batch.NANNY_ENV}
        assert now == caller, "starting a cluster changed the caller's environment"
        execute.execute_notebook(probe, tmp_path / "by_hand.ipynb", {})  # the caller's kernel
        by_hand = nbformat.read(tmp_path / "by_hand.ipynb", as_version=4)
        callers_template = int(by_hand.cells[-1].outputs[0]["text"])
        grid_path = tmp_path / "grid.yaml"
        grid_path.write_text("name: probe\nnotebook: probe.ipynb\ngrid:\n  seed: [1, 2]\n")
        grid = batch.load_grid(grid_path)
        results = batch.run_batch(grid, client=own, progress=False)
        assert [r.status for r in results] == ["ok", "ok"], results
        for r in results:
            executed = nbformat.read(grid.out_dir / r.key / r.notebook, as_version=4)
            assert json.loads(executed.cells[-2].outputs[0]["text"]) == caller, r.key
            if warmstart.active():  # as in make test (other tests' templates may come and go)
                parent = int(executed.cells[-1].outputs[0]["text"])
                assert parent == callers_template, (
                    f"{r.key}: its kernel forked from another template"
                )
    finally:
        cluster = own.cluster
        own.close()
        cluster.close()


def _processes_of(workspace: Path) -> list[int]:
    """Live processes started with this workspace in their environment (workers, kernels)."""
    marker = f"{config.HOME_ENV}={workspace}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if marker in environ and state != "Z":
            found.append(int(proc.name))
    return found


def test_killed_batch_rerun_completes_only_what_was_missing(client, workspace, tmp_path):
    path = grid_file(
        tmp_path,
        "name: killed\nnotebook: tiny.ipynb\nparameters: {n_rows: 10, pause: 1.0}\n"
        "grid:\n  seed: [1, 2, 3, 4, 5, 6]\n",
    )
    env = {**os.environ, config.HOME_ENV: str(workspace)}
    command = [*CLI, "batch", "--grid", str(path), "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    out = workspace / "batches" / "killed"
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(f"*/{batch.RESULT}")):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no item finished in 120 s"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI, its scheduler and Dask workers
        proc.wait()
        proc.stderr.close()
    deadline = time.monotonic() + 15  # kernels notice their parent died within a second
    while (left := _processes_of(workspace)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"processes of the killed batch still running (now killed): {left}"
    finished = {p.parent.name for p in out.glob(f"*/{batch.RESULT}")}
    assert 1 <= len(finished) < 6, "killed midway"
    assert not (out / "results.csv").exists(), "the killed batch never got to its reports"

    results = batch.run_batch(batch.load_grid(path), client=client, progress=False)

    statuses = {r.key: r.status for r in results}
    assert {k for k, s in statuses.items() if s == "done"} == finished
    assert {s for k, s in statuses.items() if k not in finished} == {"ok"}
    counts = ran(workspace)
    for r in results:
        line = f"tiny seed={r.parameters['seed']} n_rows=10"
        if r.key in finished:
            assert counts[line] == 1, "a finished item is not run again"
        else:
            assert counts[line] in (1, 2), "run once more (twice if the kill cut it short)"
    assert len(pd.read_csv(out / "results.csv")) == 6


def test_batch_of_a_pipeline_runs_each_item_as_a_pipeline(client, workspace, tmp_path):
    for label in "ab":
        write_notebook(tmp_path / f"tiny_{label}.ipynb", label)
    (tmp_path / "two.yaml").write_text(
        "name: two\nparameters: {n_rows: 10}\nsteps:\n"
        "  - {name: a, notebook: tiny_a.ipynb}\n"
        "  - {name: b, notebook: tiny_b.ipynb, after: [a]}\n"
    )
    path = tmp_path / "grid.yaml"
    path.write_text("name: two_seeds\npipeline: two.yaml\ngrid:\n  seed: [1, 2]\n")

    results = batch.run_batch(batch.load_grid(path), client=client, progress=False)

    assert [r.status for r in results] == ["ok", "ok"]
    for r in results:
        folder = workspace / "batches" / "two_seeds" / r.key
        assert r.notebook == "02_b.ipynb" and (folder / "01_a.ipynb").is_file()
        assert (folder / r.report).is_file()
    assert ran(workspace) == {f"{s} seed={n} n_rows=10": 1 for s in "ab" for n in (1, 2)}


BAD_GRIDS = {
    "undeclared grid parameter": (
        "notebook: tiny.ipynb\nparameters:\n  seed: 1\ngrid:\n  colour: [red, blue]\n",
        5,
        "parameter 'colour' is not declared by tiny; it declares: seed, n_rows, pause",
    ),
    "undeclared fixed parameter": (
        "notebook: tiny.ipynb\nparameters:\n  seed: 1\n  fault: nulls\ngrid:\n  n_rows: [1]\n",
        3,
        "parameter 'fault' is not declared by tiny",
    ),
    "invalid YAML": ("notebook: tiny.ipynb\ngrid:\n  seed: [1, 2\n", 4, "not valid YAML"),
    "missing notebook": (
        "notebook: 99_nowhere\ngrid:\n  seed: [1]\n",
        1,
        "no notebook named '99_nowhere'",
    ),
    "wrong type": (
        "notebook: tiny.ipynb\ngrid:\n  seed: [1, two]\n",
        3,
        "parameter seed (" + "{path}:3) must be int, got 'two'",
    ),
    "a product above the cap": (
        f"notebook: tiny.ipynb\ngrid:\n  seed: {list(range(40))}\n  n_rows: {list(range(1, 31))}\n",
        3,
        "the grid makes 1200 items (40 seed x 30 n_rows), more than the 1000 a batch runs; "
        "split it into smaller grids",
    ),
    "a value twice on an axis": (
        "notebook: tiny.ipynb\ngrid:\n  seed: [1, 2, 1]\n",
        3,
        "grid axis 'seed' lists 1 more than once; remove the repeat",
    ),
    "two items that are the same run": (
        "notebook: tiny.ipynb\ngrid:\n  pause: [0, 0.0]\n",
        3,
        "grid items 1 and 2 are the same run ({{'pause': 0.0}})",
    ),
    "a key written twice": (
        "notebook: tiny.ipynb\ngrid:\n  seed: [1]\n  seed: [2]\n",
        4,
        "not valid YAML: key 'seed' is written twice (first on line 3); keep one of them",
    ),
    "notebook written as a number": (
        "notebook: 3\ngrid:\n  seed: [1]\n",
        1,
        "notebook must be text, but YAML reads it as the number 3; quote it: notebook: '03'",
    ),
    "grid name a path": (
        "name: ../../results\nnotebook: tiny.ipynb\ngrid:\n  seed: [1]\n",
        1,
        "grid name must be a name of 1 to 64 letters, digits, '-' and '_', starting with a "
        "letter or digit, got '../../results'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_GRIDS))
def test_bad_grid_file_names_file_and_line(workspace, tmp_path, case):
    text, line, message = BAD_GRIDS[case]
    path = grid_file(tmp_path, text)
    with pytest.raises(SpecError) as err:
        batch.load_grid(path)
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert message.format(path=path) in str(err.value)
    assert not workspace.exists(), "nothing may run or be written for a bad grid"


def test_p_on_a_grid_axis_is_refused_as_it_would_make_every_item_the_same(workspace, tmp_path):
    path = grid_file(tmp_path, "notebook: tiny.ipynb\ngrid:\n  seed: [1, 2]\n")
    with pytest.raises(SpecError) as err:
        batch.load_grid(path, {"seed": "3"})
    assert str(err.value).startswith(f"{path}:3: -p seed would give every item of grid axis")
    assert "drop -p seed, or the axis" in str(err.value)


def test_a_pipeline_grid_passes_typed_values_not_text(workspace, tmp_path):
    for label in "ab":
        write_notebook(tmp_path / f"tiny_{label}.ipynb", label)
    (tmp_path / "two.yaml").write_text(
        "name: two\nsteps:\n  - {name: a, notebook: tiny_a.ipynb}\n"
        "  - {name: b, notebook: tiny_b.ipynb, after: [a]}\n"
    )
    path = tmp_path / "grid.yaml"
    path.write_text(
        "name: typed\npipeline: two.yaml\nparameters: {pause: 0}\ngrid:\n  n_rows: [10, 11]\n"
    )
    grid = batch.load_grid(path, {"seed": "3"})
    assert [i.parameters for i in grid.items] == [
        {"pause": 0.0, "n_rows": 10, "seed": 3},
        {"pause": 0.0, "n_rows": 11, "seed": 3},
    ], "typed as the notebooks declare them, -p text converted once"
    path.write_text("name: typed\npipeline: two.yaml\ngrid:\n  n_rows: ['10']\n")
    with pytest.raises(SpecError) as err:
        batch.load_grid(path)
    assert str(err.value) == f"{path}:4: parameter n_rows ({path}:4) must be int, got '10'", (
        "a quoted number is text, as in a notebook grid; it is not silently converted"
    )


def _cli_batch(workspace: Path, path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, config.HOME_ENV: str(workspace)}
    command = [*CLI, "batch", "--grid", str(path), "--no-progress", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("workers", ["-1", "0", "65", "two"])
def test_workers_out_of_range_exit_2_at_once_instead_of_hanging(workspace, tmp_path, workers):
    path = grid_file(tmp_path, "name: w\nnotebook: tiny.ipynb\ngrid:\n  seed: [1]\n")
    done = _cli_batch(workspace, path, "--workers", workers)  # -1 hung forever before
    assert done.returncode == 2, done.stderr
    assert f"argument --workers: must be a whole number from 1 to 64, got '{workers}'" in (
        done.stderr
    )
    assert not workspace.exists()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_exits_2_naming_the_address_before_anything_is_written(
    workspace, tmp_path
):
    path = grid_file(tmp_path, "name: s\nnotebook: tiny.ipynb\ngrid:\n  seed: [1]\n")
    port = _closed_port()
    done = _cli_batch(workspace, path, "--scheduler", f"tcp://127.0.0.1:{port}")
    assert done.returncode == 2, done.stderr
    assert f"error: --scheduler tcp://127.0.0.1:{port}: nothing answers at 127.0.0.1:{port}" in (
        done.stderr
    )
    assert "leave --scheduler out to run on a local cluster" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (workspace / "batches").exists()


def test_a_scheduler_address_that_is_not_a_scheduler_exits_2(workspace, tmp_path):
    # A real HTTP server, as a dashboard (port 8787) is when given by mistake.
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        path = grid_file(tmp_path, "name: s\nnotebook: tiny.ipynb\ngrid:\n  seed: [1]\n")
        address = f"127.0.0.1:{server.server_address[1]}"
        done = _cli_batch(workspace, path, "--scheduler", address)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 2, done.stderr
    assert f"{address} answers, but not as a Dask scheduler" in done.stderr
    assert "Traceback" not in done.stderr and not (workspace / "batches").exists()
